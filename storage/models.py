"""SQLModel tables of accounts: tenants, users, groups, memberships, agent devices.

Never sent on the wire: processes exchange protocol models only. The other tables
live one concept per module: :mod:`storage.activity` (events, intervals,
incidents), :mod:`storage.evidence_models` (evidence objects, data keys, face
templates), :mod:`storage.planning` (schedules, tasks, rollups) and
:mod:`storage.audit_models` (audit log). :data:`METADATA` names every constraint
(Alembic's batch mode on SQLite needs the names). The schema itself is created
only by the migrations in ``storage/migrations`` (``telework db upgrade``);
:data:`storage.db.TABLE_MODULES` lists every table module.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION
METADATA = SQLModel.metadata

ROLES = ("admin", "manager", "worker")
LANGUAGES = ("ja", "en")
MEMBERSHIP_ROLES = ("member", "manager")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored timestamp, aware in UTC: SQLite gives back naive UTC timestamps, PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def tz_column(nullable: bool = False, index: bool = False) -> Column[datetime]:
    """A timezone-aware timestamp column (SQLite keeps UTC text, PostgreSQL timestamptz)."""
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class Tenant(SQLModel, table=True):
    __tablename__ = "tenant"
    id: str = Field(primary_key=True, max_length=63)
    name: str
    time_zone: str = Field(default="Asia/Tokyo")
    created_at: datetime = Field(sa_column=tz_column())
    terminated_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))


class User(SQLModel, table=True):
    __tablename__ = "tw_user"
    __table_args__ = (UniqueConstraint("tenant_id", "login"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True)
    login: str = Field(max_length=120)
    name: str
    role: str = Field(default="worker")  # admin | manager | worker
    enabled: bool = True
    language: str = Field(default="ja", max_length=8)  # ja | en
    time_zone: str | None = Field(default=None, max_length=64)  # None: the tenant's
    password_hash: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(sa_column=tz_column())


class Group(SQLModel, table=True):
    """A group of users within a tenant; managers are assigned groups through Membership."""

    __tablename__ = "tw_group"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True)
    name: str = Field(max_length=120)
    created_at: datetime = Field(sa_column=tz_column())


class Membership(SQLModel, table=True):
    """A user in a group, as ``member`` or as one of its ``manager`` s (both rows may exist)."""

    __tablename__ = "membership"
    group_id: int = Field(foreign_key="tw_group.id", primary_key=True)
    user_id: int = Field(foreign_key="tw_user.id", primary_key=True, index=True)
    role: str = Field(default="member", primary_key=True, max_length=16)  # member | manager
    tenant_id: str = Field(foreign_key="tenant.id", index=True)
    created_at: datetime = Field(sa_column=tz_column())


class AgentDevice(SQLModel, table=True):
    __tablename__ = "agent_device"
    id: str = Field(primary_key=True, max_length=63)  # the agent id, unique across tenants
    tenant_id: str = Field(foreign_key="tenant.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="tw_user.id")
    name: str
    token_hash: str = Field(unique=True, max_length=64)  # sha256 hex of the token
    created_at: datetime = Field(sa_column=tz_column())
    revoked_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
