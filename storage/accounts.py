"""Tenants, users and agent devices: creation, token issue, revocation, lookup."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.errors import OperatorError
from core.ids import SLUG_RE
from storage.models import AgentDevice, Tenant, User, utcnow

ROLES = ("admin", "manager", "worker")


class AccountError(OperatorError, ValueError):
    """A request to create or change an account cannot be carried out."""


@dataclass(frozen=True)
class AgentIdentity:
    """Who a valid agent token belongs to."""

    tenant: str
    agent_id: str
    user: str | None
    revoked: bool
    user_id: int | None = None  # the device's user (its agent settings inherit through them)
    token_hash: str = ""  # sha256 hex of the token it was found by (re-checked while a session is open)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _slug(kind: str, value: str) -> str:
    if not SLUG_RE.fullmatch(value):  # fullmatch: `$` alone would let a final newline through
        raise AccountError(
            f"{kind}: expected lowercase letters, digits, '-' or '_' (1-63 chars), got {value!r}"
        )
    return value


def create_tenant(engine: Engine, tenant_id: str, name: str, time_zone: str = "Asia/Tokyo") -> None:
    _slug("tenant", tenant_id)
    with Session(engine) as s:
        if s.get(Tenant, tenant_id) is not None:
            raise AccountError(f"tenant {tenant_id!r} already exists")
        s.add(Tenant(id=tenant_id, name=name, time_zone=time_zone, created_at=utcnow()))
        s.commit()


def create_user(engine: Engine, tenant_id: str, login: str, name: str, role: str = "worker") -> int:
    if role not in ROLES:
        raise AccountError(f"role: expected one of {', '.join(ROLES)}, got {role!r}")
    with Session(engine) as s:
        if s.get(Tenant, tenant_id) is None:
            raise AccountError(f"tenant {tenant_id!r} does not exist")
        existing = s.execute(
            select(User).where(User.tenant_id == tenant_id, User.login == login)  # type: ignore[arg-type]
        ).scalar_one_or_none()
        if existing is not None:
            raise AccountError(f"user {login!r} already exists in tenant {tenant_id!r}")
        user = User(tenant_id=tenant_id, login=login, name=name, role=role, created_at=utcnow())
        s.add(user)
        s.commit()
        s.refresh(user)
        if user.id is None:
            raise AccountError(f"user {login!r} was not given an id")
        return user.id


def create_agent(engine: Engine, tenant_id: str, agent_id: str, user_login: str | None = None) -> str:
    """Register an agent device; returns its token (only its hash is stored)."""
    _slug("agent", agent_id)
    token = "twa_" + secrets.token_urlsafe(32)
    with Session(engine) as s:
        if s.get(Tenant, tenant_id) is None:
            raise AccountError(f"tenant {tenant_id!r} does not exist")
        if s.get(AgentDevice, agent_id) is not None:
            raise AccountError(f"agent {agent_id!r} already exists")
        user_id = None
        if user_login is not None:
            user = s.execute(
                select(User).where(User.tenant_id == tenant_id, User.login == user_login)  # type: ignore[arg-type]
            ).scalar_one_or_none()
            if user is None:
                raise AccountError(f"user {user_login!r} does not exist in tenant {tenant_id!r}")
            user_id = user.id
        s.add(
            AgentDevice(
                id=agent_id,
                tenant_id=tenant_id,
                user_id=user_id,
                name=agent_id,
                token_hash=hash_token(token),
                created_at=utcnow(),
            )
        )
        s.commit()
    return token


def reissue_token(engine: Engine, agent_id: str) -> str:
    """A new token for an existing device; the old one stops working and a revocation is lifted."""
    token = "twa_" + secrets.token_urlsafe(32)
    with Session(engine) as s:
        device = s.get(AgentDevice, agent_id)
        if device is None:
            raise AccountError(f"agent {agent_id!r} does not exist")
        device.token_hash = hash_token(token)
        device.revoked_at = None
        s.add(device)
        s.commit()
    return token


def revoke_agent(engine: Engine, agent_id: str) -> None:
    with Session(engine) as s:
        device = s.get(AgentDevice, agent_id)
        if device is None:
            raise AccountError(f"agent {agent_id!r} does not exist")
        device.revoked_at = utcnow()
        s.add(device)
        s.commit()


def lookup_token(engine: Engine, token: str) -> AgentIdentity | None:
    """The identity behind ``token``, or None when no device has it."""
    with Session(engine) as s:
        row = s.execute(
            select(AgentDevice, User.name)  # type: ignore[call-overload]
            .outerjoin(User, AgentDevice.user_id == User.id)
            .where(AgentDevice.token_hash == hash_token(token))
        ).first()
    if row is None:
        return None
    device, user_name = row
    return AgentIdentity(
        tenant=device.tenant_id,
        agent_id=device.id,
        user=user_name,
        revoked=device.revoked_at is not None,
        user_id=device.user_id,
        token_hash=device.token_hash,
    )


BULK_LOOKUP_MAX = 10_000  # token hashes per query (SQLite allows 32,766 bound parameters)


def invalid_tokens(engine: Engine, token_hashes: Collection[str]) -> set[str]:
    """Which of ``token_hashes`` no longer open a session: revoked, reissued or deleted devices.

    One query per ``BULK_LOOKUP_MAX`` hashes (a gateway re-checks all its open sessions at once).
    """
    wanted = sorted(set(token_hashes))
    valid: set[str] = set()
    with Session(engine) as s:
        for start in range(0, len(wanted), BULK_LOOKUP_MAX):
            chunk = wanted[start : start + BULK_LOOKUP_MAX]
            query = select(col(AgentDevice.token_hash)).where(
                col(AgentDevice.token_hash).in_(chunk), col(AgentDevice.revoked_at).is_(None)
            )
            valid.update(s.execute(query).scalars())
    return set(wanted) - valid
