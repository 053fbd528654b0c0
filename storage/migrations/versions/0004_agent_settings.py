"""Agent settings in the database: tenant, group and user overrides, and their change history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_agent_settings",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_tenant_agent_settings_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_agent_settings")),
    )
    op.create_table(
        "group_agent_settings",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["tw_group.id"], name=op.f("fk_group_agent_settings_group_id_tw_group")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_group_agent_settings_tenant_id_tenant")
        ),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_group_agent_settings")),
    )
    with op.batch_alter_table("group_agent_settings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_group_agent_settings_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "user_agent_settings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_user_agent_settings_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["tw_user.id"], name=op.f("fk_user_agent_settings_user_id_tw_user")
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_agent_settings")),
    )
    with op.batch_alter_table("user_agent_settings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_agent_settings_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "agent_settings_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(length=120), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_agent_settings_change_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["tw_user.id"], name=op.f("fk_agent_settings_change_user_id_tw_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_settings_change")),
    )
    with op.batch_alter_table("agent_settings_change", schema=None) as batch_op:
        batch_op.create_index("ix_agent_settings_change_tenant", ["tenant_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agent_settings_change", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_settings_change_tenant")
    op.drop_table("agent_settings_change")
    with op.batch_alter_table("user_agent_settings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_agent_settings_tenant_id"))
    op.drop_table("user_agent_settings")
    with op.batch_alter_table("group_agent_settings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_group_agent_settings_tenant_id"))
    op.drop_table("group_agent_settings")
    op.drop_table("tenant_agent_settings")
