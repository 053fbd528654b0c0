"""Authenticated audit entries: ``audit_log.mac`` (HMAC-SHA256 of seq and hash, ``h1:`` + hex).

Existing rows keep ``mac`` NULL: they verify by their plain hashes as before, and are accepted
only before the first authenticated entry. Downgrade drops the MACs (the chain stays valid as a
plain hash chain).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("mac")
