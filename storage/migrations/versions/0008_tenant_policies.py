"""Tenant data policies: retention period and legal hold.

``tenant_policy`` (a tenant's own retention period and legal hold) and ``user_legal_hold``
(users whose data is held).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_policy",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_tenant_policy_tenant_id_tenant")),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenant_policy")),
    )
    op.create_table(
        "user_legal_hold",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_user_legal_hold_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_user_legal_hold_user_id_tw_user")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_legal_hold")),
    )
    with op.batch_alter_table("user_legal_hold", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_legal_hold_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("user_legal_hold", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_legal_hold_tenant_id"))
    op.drop_table("user_legal_hold")
    op.drop_table("tenant_policy")
