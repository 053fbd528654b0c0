"""SQLModel tables of the agent settings overrides (tenant, group, user) and their history.

Each override row holds a JSON object of only the fields that level sets (see
:mod:`realtime.protocol.agent_settings`); a level without overrides has no row. Every change is one
:class:`AgentSettingsChange` row per field. The user-level tables carry ``user_id`` (a foreign
key to ``tw_user``), so a person's export includes them and an erasure deletes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from storage.models import tz_column

LEVELS = ("tenant", "group", "user")


class TenantAgentSettings(SQLModel, table=True):
    """The fields a tenant overrides for all its agents."""

    __tablename__ = "tenant_agent_settings"
    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=63)
    overrides: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=tz_column())


class GroupAgentSettings(SQLModel, table=True):
    """The fields a group overrides for its members (over the tenant's)."""

    __tablename__ = "group_agent_settings"
    group_id: int = Field(foreign_key="tw_group.id", primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    overrides: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=tz_column())


class UserAgentSettings(SQLModel, table=True):
    """The fields one user overrides (over the tenant's and their groups')."""

    __tablename__ = "user_agent_settings"
    user_id: int = Field(foreign_key="tw_user.id", primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=63)
    overrides: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_column=tz_column())


class AgentSettingsChange(SQLModel, table=True):
    """One field of one level changed: who, when, where (level and target), old -> new.

    ``target``: the group's name or the user's login as they were at the time (empty for the
    tenant level); ``old`` / ``new`` None: not set at that level (inherited).
    """

    __tablename__ = "agent_settings_change"
    __table_args__ = (Index("ix_agent_settings_change_tenant", "tenant_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=63)
    level: str = Field(max_length=8)  # tenant | group | user
    group_id: int | None = None  # the group's id when level is group (kept after the group is gone)
    user_id: int | None = Field(default=None, foreign_key="tw_user.id")
    target: str = Field(default="", max_length=120)
    field: str = Field(max_length=64)
    old: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    new: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    actor: str = Field(max_length=200)
    changed_at: datetime = Field(sa_column=tz_column())
