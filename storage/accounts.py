"""Tenants, users and agent devices: creation, token issue, revocation, lookup.

Every change is audited (:mod:`storage.audit_trail`) in the transaction that makes it; values are
checked by :mod:`storage.account_rules`. A tenant that is terminated takes no new users or agents
and issues no tokens. Changes to existing tenants and users: :mod:`storage.tenants`,
:mod:`storage.users`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from storage import account_rules as rules
from storage.account_rules import AccountError as AccountError
from storage.audit_trail import SYSTEM, TOKEN_PREFIX, AuditAction, audit
from storage.models import AgentDevice, Tenant, User, as_utc, utcnow

# Fields of a user whose values identify the person: never written into an audit entry (the audit
# log outlives an erasure); an entry names them in ``withheld`` when they changed.
IDENTIFYING = ("login", "name")


@dataclass(frozen=True)
class AgentIdentity:
    """Who a valid agent token belongs to."""

    tenant: str
    agent_id: str
    user: str | None
    revoked: bool  # the device is revoked, its user disabled or its tenant terminated
    user_id: int | None = None  # the device's user (its agent settings inherit through them)
    token_hash: str = ""  # sha256 hex of the token it was found by (re-checked while a session is open)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def get_tenant(s: Session, tenant_id: str) -> Tenant:
    """The tenant; AccountError when it does not exist."""
    tenant = s.get(Tenant, tenant_id)
    if tenant is None:
        raise AccountError(f"tenant {tenant_id!r} does not exist")
    return tenant


def open_tenant(s: Session, tenant_id: str) -> Tenant:
    """The tenant, if it exists and is not terminated; AccountError saying which it is not."""
    tenant = get_tenant(s, tenant_id)
    if tenant.terminated_at is not None:
        since = as_utc(tenant.terminated_at).isoformat(timespec="seconds")
        raise AccountError(f"tenant {tenant_id!r} is terminated (since {since}); reinstate it first")
    return tenant


def find_user(s: Session, tenant_id: str, login: str) -> User:
    user: User | None = s.execute(
        select(User).where(col(User.tenant_id) == tenant_id, col(User.login) == login)
    ).scalar_one_or_none()
    if user is None:
        raise AccountError(f"user {login!r} does not exist in tenant {tenant_id!r}")
    return user


@contextmanager
def unique(s: Session, conflict: str) -> Iterator[None]:
    """Inside, a unique constraint hit (a concurrent creation) rolls back and is ``conflict``."""
    try:
        yield
    except IntegrityError:
        s.rollback()
        raise AccountError(conflict) from None


def create_tenant(
    engine: Engine,
    tenant_id: str,
    name: str,
    time_zone: str = "Asia/Tokyo",
    *,
    actor: str = SYSTEM,
    source: str | None = None,
) -> None:
    rules.slug("tenant", tenant_id)
    values = {"name": rules.display_name("name", name), "time_zone": rules.time_zone(time_zone)}
    with Session(engine) as s:
        if s.get(Tenant, tenant_id) is not None:
            raise AccountError(f"tenant {tenant_id!r} already exists")
        now = utcnow()
        s.add(Tenant(id=tenant_id, name=values["name"], time_zone=values["time_zone"], created_at=now))
        with unique(s, f"tenant {tenant_id!r} already exists"):
            s.flush()
            audit(
                s, AuditAction.TENANT_CREATE, actor=actor, source=source, target=f"tenant:{tenant_id}",
                tenant_id=tenant_id, old={}, new=values, at=now,
            )  # fmt: skip
            s.commit()


def create_user(
    engine: Engine,
    tenant_id: str,
    login: str,
    name: str,
    role: str = "worker",
    *,
    language: str = "ja",
    time_zone: str | None = None,
    actor: str = SYSTEM,
    source: str | None = None,
) -> int:
    """A new user of ``tenant_id``; returns their id. ``time_zone`` None: the tenant's."""
    user = User(
        tenant_id=tenant_id,
        login=rules.login(login),
        name=rules.display_name("name", name),
        role=rules.role(role),
        language=rules.language(language),
        time_zone=None if time_zone is None else rules.time_zone(time_zone),
        enabled=True,
        created_at=utcnow(),
    )
    values = {
        name: getattr(user, name) for name in ("login", "name", "role", "language", "time_zone", "enabled")
    }
    taken = f"user {login!r} already exists in tenant {tenant_id!r}"
    with Session(engine) as s:
        open_tenant(s, tenant_id)
        existing = s.execute(
            select(col(User.id)).where(col(User.tenant_id) == tenant_id, col(User.login) == login)
        ).first()
        if existing is not None:
            raise AccountError(taken)
        s.add(user)
        with unique(s, taken):
            s.flush()
            if user.id is None:
                raise AccountError(f"user {login!r} was not given an id")
            user_id = user.id
            audit(
                s, AuditAction.USER_CREATE, actor=actor, source=source, target=f"user:{user_id}",
                tenant_id=tenant_id, old={}, new=values, withheld=IDENTIFYING, at=user.created_at,
            )  # fmt: skip
            s.commit()
        return user_id


def create_agent(
    engine: Engine,
    tenant_id: str,
    agent_id: str,
    user_login: str | None = None,
    *,
    actor: str = SYSTEM,
    source: str | None = None,
) -> str:
    """Register an agent device; returns its token (only its hash is stored, neither is audited)."""
    rules.slug("agent", agent_id)
    token = _new_token()
    taken = f"agent {agent_id!r} already exists"
    with Session(engine) as s:
        open_tenant(s, tenant_id)
        if s.get(AgentDevice, agent_id) is not None:
            raise AccountError(taken)
        user_id = None if user_login is None else find_user(s, tenant_id, user_login).id
        now = utcnow()
        s.add(
            AgentDevice(
                id=agent_id,
                tenant_id=tenant_id,
                user_id=user_id,
                name=agent_id,
                token_hash=hash_token(token),
                created_at=now,
            )
        )
        with unique(s, taken):
            s.flush()
            audit(
                s, AuditAction.AGENT_CREATE, actor=actor, source=source, target=f"agent:{agent_id}",
                tenant_id=tenant_id, old={}, new={"user_id": user_id}, at=now,
            )  # fmt: skip
            s.commit()
    return token


def _device(s: Session, agent_id: str) -> AgentDevice:
    device = s.get(AgentDevice, agent_id)
    if device is None:
        raise AccountError(f"agent {agent_id!r} does not exist")
    return device


def reissue_token(engine: Engine, agent_id: str, *, actor: str = SYSTEM, source: str | None = None) -> str:
    """A new token for an existing device; the old one stops working and a revocation is lifted."""
    token = _new_token()
    with Session(engine) as s:
        device = _device(s, agent_id)
        open_tenant(s, device.tenant_id)
        now = utcnow()
        was_revoked = device.revoked_at is not None
        device.token_hash = hash_token(token)
        device.revoked_at = None
        s.add(device)
        audit(
            s, AuditAction.AGENT_REISSUE, actor=actor, source=source, target=f"agent:{agent_id}",
            tenant_id=device.tenant_id, old={"revoked": was_revoked}, new={"revoked": False}, at=now,
        )  # fmt: skip
        s.commit()
    return token


def revoke_agent(engine: Engine, agent_id: str, *, actor: str = SYSTEM, source: str | None = None) -> bool:
    """Revoke the device's token. False (nothing written): it was already revoked."""
    with Session(engine) as s:
        device = _device(s, agent_id)
        if device.revoked_at is not None:
            return False
        now = utcnow()
        device.revoked_at = now
        s.add(device)
        audit(
            s, AuditAction.AGENT_REVOKE, actor=actor, source=source, target=f"agent:{agent_id}",
            tenant_id=device.tenant_id, old={"revoked": False}, new={"revoked": True}, at=now,
        )  # fmt: skip
        s.commit()
    return True


def reassign_agent(
    engine: Engine, agent_id: str, user_id: int, *, actor: str = SYSTEM, source: str | None = None
) -> tuple[int | None, int]:
    """Give the device to user ``user_id`` of its own tenant; returns (old user id, new user id).

    AccountError when the user is not of the device's tenant. Nothing is written (nor audited)
    when the device is already theirs. An open session of the agent keeps its user until it
    opens again."""
    with Session(engine) as s:
        device = _device(s, agent_id)
        open_tenant(s, device.tenant_id)
        user = s.get(User, user_id)
        if user is None or user.tenant_id != device.tenant_id:
            raise AccountError(f"user {user_id} does not exist in tenant {device.tenant_id!r}")
        old = device.user_id
        if old == user_id:
            return old, user_id
        device.user_id = user_id
        s.add(device)
        audit(
            s, AuditAction.AGENT_REASSIGN, actor=actor, source=source, target=f"agent:{agent_id}",
            tenant_id=device.tenant_id, old={"user_id": old}, new={"user_id": user_id}, at=utcnow(),
        )  # fmt: skip
        s.commit()
    return old, user_id


def lookup_token(engine: Engine, token: str) -> AgentIdentity | None:
    """The identity behind ``token``, or None when no device has it."""
    with Session(engine) as s:
        row = s.execute(
            select(AgentDevice, col(User.name), col(User.enabled), col(Tenant.terminated_at))
            .join(Tenant, col(AgentDevice.tenant_id) == col(Tenant.id))
            .outerjoin(User, col(AgentDevice.user_id) == col(User.id))
            .where(col(AgentDevice.token_hash) == hash_token(token))
        ).first()
    if row is None:
        return None
    device, user_name, enabled, terminated_at = row
    return AgentIdentity(
        tenant=device.tenant_id,
        agent_id=device.id,
        user=user_name,
        revoked=device.revoked_at is not None or enabled is False or terminated_at is not None,
        user_id=device.user_id,
        token_hash=device.token_hash,
    )


BULK_LOOKUP_MAX = 10_000  # token hashes per query (SQLite allows 32,766 bound parameters)


def invalid_tokens(engine: Engine, token_hashes: Collection[str]) -> set[str]:
    """Which of ``token_hashes`` no longer open a session: revoked, reissued or deleted devices, and
    devices of disabled users and of terminated tenants.

    One query per ``BULK_LOOKUP_MAX`` hashes (a gateway re-checks all its open sessions at once).
    """
    wanted = sorted(set(token_hashes))
    valid: set[str] = set()
    with Session(engine) as s:
        for start in range(0, len(wanted), BULK_LOOKUP_MAX):
            chunk = wanted[start : start + BULK_LOOKUP_MAX]
            query = (
                select(col(AgentDevice.token_hash))
                .join(Tenant, col(AgentDevice.tenant_id) == col(Tenant.id))
                .outerjoin(User, col(AgentDevice.user_id) == col(User.id))
                .where(
                    col(AgentDevice.token_hash).in_(chunk),
                    col(AgentDevice.revoked_at).is_(None),
                    col(Tenant.terminated_at).is_(None),
                    col(User.enabled).is_not(False),
                )
            )
            valid.update(s.execute(query).scalars())
    return set(wanted) - valid
