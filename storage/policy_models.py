"""SQLModel tables of each tenant's data policies: its own retention period and legal holds.

:class:`TenantPolicy`: a tenant's retention period (None: the service's ``retention_days``) and
its legal hold (on: retention and erasure delete none of the tenant's data). A tenant without a
row has neither. :class:`UserLegalHold`: one row per user whose data is held (retention and
erasure leave it alone); releasing the hold deletes the row. Who placed or released a hold and
when is in the audit log (``policy.*`` entries), not here.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from storage.models import tz_column


class TenantPolicy(SQLModel, table=True):
    """A tenant's retention period and legal hold."""

    __tablename__ = "tenant_policy"
    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=63)
    retention_days: int | None = None  # None: the service's TELEWORK_RETENTION_DAYS
    legal_hold: bool = False
    updated_at: datetime = Field(sa_column=tz_column())


class UserLegalHold(SQLModel, table=True):
    """A user whose data is under legal hold (the row exists while it is on)."""

    __tablename__ = "user_legal_hold"
    user_id: int = Field(foreign_key="tw_user.id", primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    placed_at: datetime = Field(sa_column=tz_column())
