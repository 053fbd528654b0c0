"""Event identity per tenant: the ``event`` primary key becomes (tenant_id, id); ``seq`` 64-bit.

An event id is chosen by the agent, so two tenants may send the same one: keyed on the id
alone, one tenant's event was ignored as a "duplicate" of another's. ``seq`` goes from a
32-bit to a 64-bit integer (the protocol allows up to 2**63 - 1). SQLite: batch mode
(copy and move).

Downgrade: fails when two tenants hold the same event id (the old key cannot hold both);
``seq`` values above 2**31 - 1 cannot go back to 32 bits on PostgreSQL either.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_constraint("pk_event", type_="primary")
        batch_op.create_primary_key("pk_event", ["tenant_id", "id"])
        batch_op.alter_column(
            "seq", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.alter_column(
            "seq", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
        batch_op.drop_constraint("pk_event", type_="primary")
        batch_op.create_primary_key("pk_event", ["id"])
