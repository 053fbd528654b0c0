"""Work schedules of groups, dated exceptions and the tenant holiday calendar.

``group_schedule`` (weekly patterns and dated exceptions of a group), ``tenant_holiday`` (a
tenant's own holidays) and ``holiday_calendar`` (the built-in public holidays it observes).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("start_time", sa.Time(), nullable=True),
        sa.Column("end_time", sa.Time(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_group_schedule_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["tw_group.id"], name=op.f("fk_group_schedule_group_id_tw_group")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_schedule")),
    )
    with op.batch_alter_table("group_schedule", schema=None) as batch_op:
        batch_op.create_index("ix_group_schedule_group", ["tenant_id", "group_id"], unique=False)

    op.create_table(
        "tenant_holiday",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_tenant_holiday_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_holiday")),
        sa.UniqueConstraint("tenant_id", "day", name=op.f("uq_tenant_holiday_tenant_id_day")),
    )

    op.create_table(
        "holiday_calendar",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("country", sa.String(length=8), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_holiday_calendar_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_holiday_calendar")),
    )


def downgrade() -> None:
    op.drop_table("holiday_calendar")
    op.drop_table("tenant_holiday")
    with op.batch_alter_table("group_schedule", schema=None) as batch_op:
        batch_op.drop_index("ix_group_schedule_group")
    op.drop_table("group_schedule")
