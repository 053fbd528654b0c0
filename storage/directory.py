"""Read-only views of the accounts: tenants with their counts, a tenant's users and agent devices.

What ``telework admin tenant list | show``, ``user list`` and ``agent list`` print. Each
function taking a tenant raises :class:`~storage.account_rules.AccountError` when it does not
exist, so a list of an unknown tenant is an error, never an empty list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.accounts import get_tenant
from storage.models import AgentDevice, Tenant, User, as_utc
from storage.planning import Task


@dataclass(frozen=True)
class TenantSummary:
    id: str
    name: str
    time_zone: str
    created_at: datetime
    terminated_at: datetime | None
    users: int
    agents: int  # not revoked
    revoked_agents: int
    tasks: int  # offered


@dataclass(frozen=True)
class UserRow:
    id: int
    login: str
    name: str
    role: str
    language: str
    time_zone: str | None  # None: the tenant's
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class AgentRow:
    id: str
    user_id: int | None
    login: str | None
    created_at: datetime
    revoked_at: datetime | None


def _counts(s: Session, column: object, where: object) -> dict[str, int]:
    rows = s.execute(select(column, func.count()).where(where).group_by(column)).all()  # type: ignore[call-overload]
    return {str(k): int(n) for k, n in rows}


def tenants(engine: Engine, only: str | None = None) -> list[TenantSummary]:
    """Every tenant (or only ``only``), by id, with its counts of users, agents and offered tasks."""
    with Session(engine) as s:
        query = select(Tenant).order_by(col(Tenant.id))
        if only is not None:
            get_tenant(s, only)
            query = query.where(col(Tenant.id) == only)
        rows = list(s.execute(query).scalars())
        users = _counts(s, col(User.tenant_id), col(User.id).is_not(None))
        agents = _counts(s, col(AgentDevice.tenant_id), col(AgentDevice.revoked_at).is_(None))
        revoked = _counts(s, col(AgentDevice.tenant_id), col(AgentDevice.revoked_at).is_not(None))
        tasks = _counts(s, col(Task.tenant_id), col(Task.active).is_(True))
    return [
        TenantSummary(
            id=t.id,
            name=t.name,
            time_zone=t.time_zone,
            created_at=as_utc(t.created_at),
            terminated_at=None if t.terminated_at is None else as_utc(t.terminated_at),
            users=users.get(t.id, 0),
            agents=agents.get(t.id, 0),
            revoked_agents=revoked.get(t.id, 0),
            tasks=tasks.get(t.id, 0),
        )
        for t in rows
    ]


def users(engine: Engine, tenant_id: str) -> list[UserRow]:
    """The tenant's users, by login."""
    with Session(engine) as s:
        get_tenant(s, tenant_id)
        rows = list(
            s.execute(
                select(User).where(col(User.tenant_id) == tenant_id).order_by(col(User.login))
            ).scalars()
        )
    return [
        UserRow(
            id=u.id or 0,
            login=u.login,
            name=u.name,
            role=u.role,
            language=u.language,
            time_zone=u.time_zone,
            enabled=u.enabled,
            created_at=as_utc(u.created_at),
        )
        for u in rows
    ]


def agents(engine: Engine, tenant_id: str) -> list[AgentRow]:
    """The tenant's agent devices, by id, with their user's login."""
    with Session(engine) as s:
        get_tenant(s, tenant_id)
        rows = s.execute(
            select(AgentDevice, col(User.login))
            .outerjoin(User, col(AgentDevice.user_id) == col(User.id))
            .where(col(AgentDevice.tenant_id) == tenant_id)
            .order_by(col(AgentDevice.id))
        ).all()
    return [
        AgentRow(
            id=d.id,
            user_id=d.user_id,
            login=login,
            created_at=as_utc(d.created_at),
            revoked_at=None if d.revoked_at is None else as_utc(d.revoked_at),
        )
        for d, login in rows
    ]
