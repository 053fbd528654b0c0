"""Dirty markers from the builder to the rollup worker (``rollup_dirty``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_dirty",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_rollup_dirty_user_id_tw_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollup_dirty")),
    )
    with op.batch_alter_table("rollup_dirty", schema=None) as batch_op:
        batch_op.create_index("ix_rollup_dirty_tenant", ["tenant_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rollup_dirty", schema=None) as batch_op:
        batch_op.drop_index("ix_rollup_dirty_tenant")
    op.drop_table("rollup_dirty")
