"""The schema of the first release: tenants, users, agent devices, events.

Databases created before the migrations existed (``create_all`` plus a
``schema_version`` row) hold exactly this schema; storage.db.upgrade stamps them
at this revision and continues from here.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "schema_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _ts("applied_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_version")),
    )
    op.create_table(
        "tenant",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("time_zone", sa.String(), nullable=False),
        _ts("created_at"),
        _ts("terminated_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
    )
    op.create_table(
        "tw_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("login", sa.String(length=120), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_tw_user_tenant_id_tenant")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tw_user")),
        sa.UniqueConstraint("tenant_id", "login", name=op.f("uq_tw_user_tenant_id_login")),
    )
    op.create_index(op.f("ix_tw_user_tenant_id"), "tw_user", ["tenant_id"])
    op.create_table(
        "agent_device",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_agent_device_tenant_id_tenant")),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_agent_device_user_id_tw_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_device")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_agent_device_token_hash")),
    )
    op.create_index(op.f("ix_agent_device_tenant_id"), "agent_device", ["tenant_id"])
    op.create_table(
        "event",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _ts("ts"),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        _ts("received_at"),
        _ts("stored_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    op.create_index("ix_event_tenant_agent_seq", "event", ["tenant_id", "agent_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_event_tenant_agent_seq", table_name="event")
    op.drop_table("event")
    op.drop_index(op.f("ix_agent_device_tenant_id"), table_name="agent_device")
    op.drop_table("agent_device")
    op.drop_index(op.f("ix_tw_user_tenant_id"), table_name="tw_user")
    op.drop_table("tw_user")
    op.drop_table("tenant")
    op.drop_table("schema_version")
