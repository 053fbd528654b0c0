"""SQLModel table of the audit log: a hash chain (each row's ``hash`` covers ``prev_hash``).

``mac`` authenticates the row's seq and hash under a key the database does not hold
(:func:`storage.hash_chain.link_mac`); None on rows written before revision 0006.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from storage.models import tz_column


class AuditEntry(SQLModel, table=True):
    """One audited action. ``seq`` orders the chain; ``tenant_id`` None: an ops/system action."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_at", "tenant_id", "at"),)
    seq: int | None = Field(default=None, primary_key=True)
    tenant_id: str | None = Field(default=None, max_length=63)
    actor: str = Field(max_length=200)  # user login, "system" or "ops:<name>"
    action: str = Field(max_length=64)  # e.g. incident.review, evidence.view, user.erase
    target: str = Field(max_length=255)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = Field(sa_column=tz_column())
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)
    mac: str | None = Field(default=None, max_length=80)  # "h1:" + HMAC-SHA256 hex
