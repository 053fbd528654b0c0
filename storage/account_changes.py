"""Changes to existing tenants and users: update, terminate, reinstate; a person's data corrected.

Each function checks the new values (:mod:`storage.account_rules`), writes them and their audit
entry (old -> new, :mod:`storage.audit_trail`) in one transaction, and returns what changed
(empty: the values were already so, and nothing is written).

Termination sets ``Tenant.terminated_at``: from then on the tenant's agents are refused (as if
revoked), it takes no new users, agents or tokens, its rollups stop, and the retention job erases
its face templates, their images and its evidence images ``TELEWORK_TERMINATED_ERASE_DAYS`` (30)
after it (:func:`face_erase_at`). Reinstating clears ``terminated_at`` and lets the agents in again,
but only before that moment: from then on the face data is erased or due to be, and reinstating
would silently cancel an erasure that was promised, so it is refused (create a new tenant).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage import account_rules as rules
from storage.account_rules import AccountError
from storage.accounts import IDENTIFYING, find_user, get_tenant, unique
from storage.api_token_revocation import revoke_user_tokens_in
from storage.audit_trail import SYSTEM, AuditAction, audit
from storage.models import User, as_utc

TENANT_FIELDS = ("name", "time_zone")
USER_FIELDS = ("login", "name", "language", "time_zone", "role", "enabled")


def face_erase_at(terminated_at: datetime, erase_days: int) -> datetime:
    """Pure: when a tenant terminated at ``terminated_at`` has its face data erased (the moment
    :func:`workers.retention.face_erase_due` turns true for it)."""
    return as_utc(terminated_at) + timedelta(days=erase_days)


def tenant_values(changes: Mapping[str, Any]) -> dict[str, str]:
    """Pure: the checked new values of a tenant update (``name``, ``time_zone``)."""
    unknown = sorted(set(changes) - set(TENANT_FIELDS))
    if unknown:
        raise AccountError(f"tenant: expected fields {', '.join(TENANT_FIELDS)}, got {', '.join(unknown)}")
    out: dict[str, str] = {}
    if "name" in changes:
        out["name"] = rules.display_name("name", _text("name", changes["name"]))
    if "time_zone" in changes:
        out["time_zone"] = rules.time_zone(_text("time_zone", changes["time_zone"]))
    return out


def user_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Pure: the checked new values of a user update; ``time_zone`` None means the tenant's."""
    unknown = sorted(set(changes) - set(USER_FIELDS))
    if unknown:
        raise AccountError(f"user: expected fields {', '.join(USER_FIELDS)}, got {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "enabled":
            if not isinstance(value, bool):
                raise AccountError(f"enabled: expected true or false, got {value!r}")
            out[name] = value
        elif name == "time_zone":
            out[name] = None if value is None else rules.time_zone(_text(name, value))
        elif name == "name":
            out[name] = rules.display_name("name", _text(name, value))
        else:
            out[name] = {"login": rules.login, "language": rules.language, "role": rules.role}[name](
                _text(name, value)
            )
    return out


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise AccountError(f"{name}: expected text, got {type(value).__name__} {value!r}")
    return value


def update_tenant(
    engine: Engine,
    tenant_id: str,
    changes: Mapping[str, Any],
    *,
    actor: str = SYSTEM,
    source: str | None = None,
) -> dict[str, list[Any]]:
    """Set the tenant's ``name`` and/or ``time_zone``; returns ``{field: [old, new]}`` of what changed."""
    new = tenant_values(changes)
    with Session(engine) as s:
        tenant = get_tenant(s, tenant_id)
        old = {name: getattr(tenant, name) for name in new}
        done = {name: [old[name], value] for name, value in new.items() if old[name] != value}
        if not done:
            return {}
        for name, (_, value) in done.items():
            setattr(tenant, name, value)
        s.add(tenant)
        audit(
            s, AuditAction.TENANT_UPDATE, actor=actor, source=source, target=f"tenant:{tenant_id}",
            tenant_id=tenant_id, old=old, new=new,
        )  # fmt: skip
        s.commit()
    return done


def terminate_tenant(
    engine: Engine, tenant_id: str, now: datetime, *, actor: str = SYSTEM, source: str | None = None
) -> datetime:
    """Terminate the tenant as of ``now`` (naive: UTC); returns it. AccountError when it already is."""
    when = as_utc(now)
    with Session(engine) as s:
        tenant = get_tenant(s, tenant_id)
        if tenant.terminated_at is not None:
            since = as_utc(tenant.terminated_at).isoformat(timespec="seconds")
            raise AccountError(f"tenant {tenant_id!r} is already terminated (since {since})")
        tenant.terminated_at = when
        s.add(tenant)
        audit(
            s, AuditAction.TENANT_TERMINATE, actor=actor, source=source, target=f"tenant:{tenant_id}",
            tenant_id=tenant_id, old={"terminated_at": None}, new={"terminated_at": when.isoformat()},
            at=when,
        )  # fmt: skip
        s.commit()
    return when


def reinstate_tenant(
    engine: Engine,
    tenant_id: str,
    now: datetime,
    erase_days: int,
    *,
    actor: str = SYSTEM,
    source: str | None = None,
) -> datetime:
    """Lift the tenant's termination; returns when it had been terminated.

    AccountError when it is not terminated, or when its face data is erased or due to be as of
    ``now`` (``erase_days`` after the termination)."""
    when = as_utc(now)
    with Session(engine) as s:
        tenant = get_tenant(s, tenant_id)
        if tenant.terminated_at is None:
            raise AccountError(f"tenant {tenant_id!r} is not terminated")
        terminated = as_utc(tenant.terminated_at)
        erase = face_erase_at(terminated, erase_days)
        if when >= erase:
            raise AccountError(
                f"tenant {tenant_id!r} was terminated on {terminated.isoformat(timespec='seconds')} and its "
                f"face data was due for erasure on {erase.isoformat(timespec='seconds')} "
                f"(TELEWORK_TERMINATED_ERASE_DAYS={erase_days}); it cannot be reinstated: create a new tenant"
            )
        tenant.terminated_at = None
        s.add(tenant)
        audit(
            s, AuditAction.TENANT_REINSTATE, actor=actor, source=source, target=f"tenant:{tenant_id}",
            tenant_id=tenant_id, old={"terminated_at": terminated.isoformat()}, new={"terminated_at": None},
            at=when,
        )  # fmt: skip
        s.commit()
    return terminated


def update_user(
    engine: Engine,
    tenant_id: str,
    login: str,
    changes: Mapping[str, Any],
    *,
    actor: str = SYSTEM,
    source: str | None = None,
) -> tuple[int, dict[str, list[Any]]]:
    """Correct user ``login``'s data; returns their id and ``{field: [old, new]}`` of what changed.

    The audit entry records old -> new of role, language, time zone and enabled, and only the
    names of changed identifying fields (login, name: see :data:`storage.accounts.IDENTIFYING`)."""
    new = user_values(changes)
    with Session(engine) as s:
        get_tenant(s, tenant_id)
        user = find_user(s, tenant_id, login)
        if user.id is None:
            raise AccountError(f"user {login!r} has no id")
        user_id = user.id
        old = {name: getattr(user, name) for name in new}
        done = {name: [old[name], value] for name, value in new.items() if old[name] != value}
        if not done:
            return user_id, {}
        if "login" in done:
            taken = s.execute(
                select(col(User.id)).where(col(User.tenant_id) == tenant_id, col(User.login) == new["login"])
            ).first()
            if taken is not None:
                raise AccountError(f"user {new['login']!r} already exists in tenant {tenant_id!r}")
        for name, (_, value) in done.items():
            setattr(user, name, value)
        s.add(user)
        audit(
            s, AuditAction.USER_UPDATE, actor=actor, source=source, target=f"user:{user_id}",
            tenant_id=tenant_id, old=old, new=new, withheld=IDENTIFYING,
        )  # fmt: skip
        if done.get("enabled") == [True, False]:  # a disabled user's API tokens end, re-enabled or not
            revoke_user_tokens_in(
                s, tenant_id, user_id, now=time.time(), actor=actor, source=source or actor, reason="disabled"
            )
        with unique(s, f"user {new.get('login')!r} already exists in tenant {tenant_id!r}"):
            s.commit()
    return user_id, done
