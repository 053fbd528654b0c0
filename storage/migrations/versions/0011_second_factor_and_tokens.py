"""TOTP second factor and API tokens of console users: ``web_second_factor`` (the sealed TOTP
secret), ``web_recovery_code`` (sha256 of one-time recovery codes), ``web_api_token`` (sha256 of
bearer tokens for scripts).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _user_and_tenant(table: str) -> list[sa.Column[object] | sa.ForeignKeyConstraint]:
    return [
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f(f"fk_{table}_tenant_id_tenant")),
        sa.ForeignKeyConstraint(["user_id"], ["tw_user.id"], name=op.f(f"fk_{table}_user_id_tw_user")),
    ]


def upgrade() -> None:
    op.create_table(
        "web_second_factor",
        *_user_and_tenant("web_second_factor"),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_step", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_web_second_factor")),
    )
    with op.batch_alter_table("web_second_factor", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_second_factor_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "web_recovery_code",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        *_user_and_tenant("web_recovery_code"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_web_recovery_code")),
    )
    with op.batch_alter_table("web_recovery_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_recovery_code_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_recovery_code_user_id"), ["user_id"], unique=False)

    op.create_table(
        "web_api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        *_user_and_tenant("web_api_token"),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_api_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_api_token_token_hash")),
    )
    with op.batch_alter_table("web_api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_api_token_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_api_token_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_api_token_user_id"))
        batch_op.drop_index(batch_op.f("ix_web_api_token_tenant_id"))
    op.drop_table("web_api_token")
    with op.batch_alter_table("web_recovery_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_recovery_code_user_id"))
        batch_op.drop_index(batch_op.f("ix_web_recovery_code_tenant_id"))
    op.drop_table("web_recovery_code")
    with op.batch_alter_table("web_second_factor", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_second_factor_tenant_id"))
    op.drop_table("web_second_factor")
