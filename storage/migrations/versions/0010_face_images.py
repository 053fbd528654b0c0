"""Face images registered in the console or from an agent, stored encrypted.

Each ``face_template`` row is one registered image (its encrypted embedding, the image itself
encrypted in the evidence store under ``image_key``); this revision adds where it came from
(``source``: console or agent) and its size in pixels.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("face_template", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), nullable=False, server_default="console")
        )
        batch_op.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("height", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("face_template", schema=None) as batch_op:
        batch_op.drop_column("height")
        batch_op.drop_column("width")
        batch_op.drop_column("source")
