"""The full data model: groups, intervals, incidents, evidence, plans, rollups, audit log.

Also: users get language, time zone and password hash; events an index on (tenant, agent, ts);
the schema_version table of the create_all era goes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_tenant_at", ["tenant_id", "at"], unique=False)

    op.create_table(
        "data_key",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("master_key_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_data_key_tenant_id_tenant")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_key")),
    )
    with op.batch_alter_table("data_key", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_key_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_task_tenant_id_tenant")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_task_tenant_id_name")),
    )
    op.create_table(
        "tw_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_tw_group_tenant_id_tenant")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tw_group")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_tw_group_tenant_id_name")),
    )
    with op.batch_alter_table("tw_group", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tw_group_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "daily_rollup",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("first_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worked_s", sa.Float(), nullable=False),
        sa.Column("present_s", sa.Float(), nullable=False),
        sa.Column("away_s", sa.Float(), nullable=False),
        sa.Column("peeking_count", sa.Integer(), nullable=False),
        sa.Column("impersonation_count", sa.Integer(), nullable=False),
        sa.Column("camera_blocked_count", sa.Integer(), nullable=False),
        sa.Column("planned_s", sa.Float(), nullable=False),
        sa.Column("late_start_s", sa.Float(), nullable=False),
        sa.Column("early_end_s", sa.Float(), nullable=False),
        sa.Column("overtime_s", sa.Float(), nullable=False),
        sa.Column("absent", sa.Boolean(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_daily_rollup_tenant_id_tenant")),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_daily_rollup_user_id_tw_user")),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "day", name=op.f("pk_daily_rollup")),
    )
    with op.batch_alter_table("daily_rollup", schema=None) as batch_op:
        batch_op.create_index("ix_daily_rollup_tenant_day", ["tenant_id", "day"], unique=False)

    op.create_table(
        "face_template",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("engine", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("image_key", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_face_template_tenant_id_tenant")),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_face_template_user_id_tw_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_template")),
    )
    with op.batch_alter_table("face_template", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_face_template_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_face_template_user_id"), ["user_id"], unique=False)

    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("trace", sa.JSON(), nullable=False),
        sa.Column("source_event_ids", sa.JSON(), nullable=False),
        sa.Column("review_status", sa.String(length=16), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("worker_note", sa.Text(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["tw_user.id"], name=op.f("fk_incident_reviewer_id_tw_user")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_incident_user_id_tw_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident")),
    )
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.create_index(
            "ix_incident_agent_kind_start", ["tenant_id", "agent_id", "kind", "started_at"], unique=False
        )
        batch_op.create_index("ix_incident_tenant_review", ["tenant_id", "review_status"], unique=False)
        batch_op.create_index("ix_incident_user_start", ["tenant_id", "user_id", "started_at"], unique=False)

    op.create_table(
        "interval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("start_event_id", sa.String(length=36), nullable=False),
        sa.Column("end_event_id", sa.String(length=36), nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_interval_user_id_tw_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interval")),
    )
    with op.batch_alter_table("interval", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interval_agent_kind_start", ["tenant_id", "agent_id", "kind", "started_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_interval_ended_at"), ["ended_at"], unique=False)
        batch_op.create_index("ix_interval_user_start", ["tenant_id", "user_id", "started_at"], unique=False)

    op.create_table(
        "membership",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["tw_group.id"], name=op.f("fk_membership_group_id_tw_group")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_membership_tenant_id_tenant")),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_membership_user_id_tw_user")),
        sa.PrimaryKeyConstraint("group_id", "user_id", "role", name=op.f("pk_membership")),
    )
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_membership_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_membership_user_id"), ["user_id"], unique=False)

    op.create_table(
        "schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("start_time", sa.Time(), nullable=True),
        sa.Column("end_time", sa.Time(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_schedule_tenant_id_tenant")),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_schedule_user_id_tw_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule")),
    )
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.create_index("ix_schedule_user", ["tenant_id", "user_id"], unique=False)

    op.create_table(
        "task_rollup",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_task_rollup_tenant_id_tenant")),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_task_rollup_user_id_tw_user")),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", "day", "task", name=op.f("pk_task_rollup")),
    )
    with op.batch_alter_table("task_rollup", schema=None) as batch_op:
        batch_op.create_index("ix_task_rollup_tenant_day", ["tenant_id", "day"], unique=False)

    op.create_table(
        "evidence_object",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(length=512), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incident.id"], name=op.f("fk_evidence_object_incident_id_incident")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_evidence_object_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_evidence_object_user_id_tw_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_object")),
        sa.UniqueConstraint("tenant_id", "sha256", name=op.f("uq_evidence_object_tenant_id_sha256")),
    )
    with op.batch_alter_table("evidence_object", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evidence_object_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index("ix_evidence_object_tenant_created", ["tenant_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_evidence_object_user_id"), ["user_id"], unique=False)

    op.drop_table("schema_version")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index("ix_event_tenant_agent_ts", ["tenant_id", "agent_id", "ts"], unique=False)

    with op.batch_alter_table("tw_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=False, server_default="ja"))
        batch_op.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tw_user", schema=None) as batch_op:
        batch_op.drop_column("password_hash")
        batch_op.drop_column("time_zone")
        batch_op.drop_column("language")

    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index("ix_event_tenant_agent_ts")

    op.create_table(
        "schema_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_version")),
    )
    with op.batch_alter_table("evidence_object", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_object_user_id"))
        batch_op.drop_index("ix_evidence_object_tenant_created")
        batch_op.drop_index(batch_op.f("ix_evidence_object_incident_id"))

    op.drop_table("evidence_object")
    with op.batch_alter_table("task_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_task_rollup_tenant_day")

    op.drop_table("task_rollup")
    with op.batch_alter_table("schedule", schema=None) as batch_op:
        batch_op.drop_index("ix_schedule_user")

    op.drop_table("schedule")
    with op.batch_alter_table("membership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_membership_user_id"))
        batch_op.drop_index(batch_op.f("ix_membership_tenant_id"))

    op.drop_table("membership")
    with op.batch_alter_table("interval", schema=None) as batch_op:
        batch_op.drop_index("ix_interval_user_start")
        batch_op.drop_index(batch_op.f("ix_interval_ended_at"))
        batch_op.drop_index("ix_interval_agent_kind_start")

    op.drop_table("interval")
    with op.batch_alter_table("incident", schema=None) as batch_op:
        batch_op.drop_index("ix_incident_user_start")
        batch_op.drop_index("ix_incident_tenant_review")
        batch_op.drop_index("ix_incident_agent_kind_start")

    op.drop_table("incident")
    with op.batch_alter_table("face_template", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_face_template_user_id"))
        batch_op.drop_index(batch_op.f("ix_face_template_tenant_id"))

    op.drop_table("face_template")
    with op.batch_alter_table("daily_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_daily_rollup_tenant_day")

    op.drop_table("daily_rollup")
    with op.batch_alter_table("tw_group", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tw_group_tenant_id"))

    op.drop_table("tw_group")
    op.drop_table("task")
    with op.batch_alter_table("data_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_key_tenant_id"))

    op.drop_table("data_key")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_tenant_at")

    op.drop_table("audit_log")
