"""SQLModel tables. Never sent on the wire: processes exchange protocol models only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)



class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    id: int = Field(default=1, primary_key=True)
    version: int
    applied_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Tenant(SQLModel, table=True):
    __tablename__ = "tenant"
    id: str = Field(primary_key=True, max_length=63)
    name: str
    time_zone: str = Field(default="Asia/Tokyo")
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    terminated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class User(SQLModel, table=True):
    __tablename__ = "tw_user"
    __table_args__ = (UniqueConstraint("tenant_id", "login"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True)
    login: str = Field(max_length=120)
    name: str
    role: str = Field(default="worker")  # admin | manager | worker
    enabled: bool = True
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class AgentDevice(SQLModel, table=True):
    __tablename__ = "agent_device"
    id: str = Field(primary_key=True, max_length=63)  # the agent id, unique across tenants
    tenant_id: str = Field(foreign_key="tenant.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="tw_user.id")
    name: str
    token_hash: str = Field(unique=True, max_length=64)  # sha256 hex of the token
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class EventRecord(SQLModel, table=True):
    """One agent event, stored exactly once (primary key: the event's UUIDv7)."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_tenant_agent_seq", "tenant_id", "agent_id", "seq"),)
    id: str = Field(primary_key=True, max_length=36)
    tenant_id: str = Field(max_length=63)
    agent_id: str = Field(max_length=63)
    seq: int
    ts: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    type: str = Field(max_length=16)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    session_id: str = Field(max_length=64)
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    stored_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
