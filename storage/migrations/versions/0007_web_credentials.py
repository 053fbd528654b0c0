"""Web console sign-in: ``web_credential`` (argon2id password hash, credential version) and
``web_setup_code`` (one-time set-up codes, stored as their sha256).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_credential",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_web_credential_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_web_credential_user_id_tw_user")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_web_credential")),
    )
    with op.batch_alter_table("web_credential", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_credential_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "web_setup_code",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_web_setup_code_tenant_id_tenant")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f("fk_web_setup_code_user_id_tw_user")),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_web_setup_code")),
    )
    with op.batch_alter_table("web_setup_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_setup_code_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_setup_code_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_setup_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_setup_code_user_id"))
        batch_op.drop_index(batch_op.f("ix_web_setup_code_tenant_id"))
    op.drop_table("web_setup_code")
    with op.batch_alter_table("web_credential", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_credential_tenant_id"))
    op.drop_table("web_credential")
