"""A tenant's data policies in the database: its own retention period and legal holds.

* :func:`tenant_policy` reads what a tenant set (period, tenant hold, held users);
* :func:`set_retention` sets (or, with None, clears) the tenant's period within the bounds given;
* :func:`set_tenant_hold` and :func:`set_user_hold` place or release a legal hold.

Each change is one transaction with its audit entry (``policy.retention``,
``policy.tenant_hold``, ``policy.user_hold``: actor, source, target, old -> new); setting what
is already so changes nothing and records nothing. :func:`held` answers whether a user's data is
held by any hold (the tenant's, the user's); the retention job and the erasure ask it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from core.errors import OperatorError
from storage.audit_trail import AuditAction, audit
from storage.models import Tenant, User, utcnow
from storage.policy_models import TenantPolicy, UserLegalHold


class PolicyError(OperatorError, ValueError):
    """A policy change cannot be made; the message says what was expected."""


@dataclass(frozen=True)
class PolicyView:
    """What a tenant set: its own period (None: the service's), its hold, its held users."""

    tenant: str
    retention_days: int | None
    legal_hold: bool
    held_users: tuple[int, ...]


def _tenant(s: Session, tenant: str) -> None:
    if s.get(Tenant, tenant) is None:
        raise PolicyError(f"tenant {tenant!r} does not exist")


def tenant_policy(engine: Engine, tenant: str) -> PolicyView:
    """The tenant's policies (PolicyError for an unknown tenant)."""
    with Session(engine) as s:
        _tenant(s, tenant)
        row = s.get(TenantPolicy, tenant)
        users = s.execute(
            select(col(UserLegalHold.user_id))
            .where(col(UserLegalHold.tenant_id) == tenant)
            .order_by(col(UserLegalHold.user_id))
        ).scalars()
        return PolicyView(
            tenant=tenant,
            retention_days=None if row is None else row.retention_days,
            legal_hold=False if row is None else row.legal_hold,
            held_users=tuple(int(u) for u in users),
        )


def _policy_row(s: Session, tenant: str) -> TenantPolicy:
    row = s.get(TenantPolicy, tenant)
    return row if row is not None else TenantPolicy(tenant_id=tenant, updated_at=utcnow())


def set_retention(
    engine: Engine, tenant: str, days: int | None, low: int, high: int, *, actor: str, source: str | None
) -> bool:
    """The tenant's own period: ``days`` (``low``..``high``), or None for the service's. False: no change."""
    if days is not None and not low <= days <= high:
        raise PolicyError(f"retention_days: expected a whole number of days from {low} to {high}, got {days}")
    with Session(engine) as s:
        _tenant(s, tenant)
        row = _policy_row(s, tenant)
        if row.retention_days == days:
            return False
        old = row.retention_days
        row.retention_days = days
        row.updated_at = utcnow()
        s.add(row)
        audit(
            s, AuditAction.POLICY_RETENTION, actor=actor, source=source, target=f"tenant:{tenant}",
            tenant_id=tenant, old={"retention_days": old}, new={"retention_days": days},
        )  # fmt: skip
        s.commit()
    return True


def set_tenant_hold(engine: Engine, tenant: str, on: bool, *, actor: str, source: str | None) -> bool:
    """Place (``on``) or release the tenant's legal hold. False: it already was so."""
    with Session(engine) as s:
        _tenant(s, tenant)
        row = _policy_row(s, tenant)
        if row.legal_hold == on:
            return False
        row.legal_hold = on
        row.updated_at = utcnow()
        s.add(row)
        audit(
            s, AuditAction.POLICY_TENANT_HOLD, actor=actor, source=source, target=f"tenant:{tenant}",
            tenant_id=tenant, old={"legal_hold": not on}, new={"legal_hold": on},
        )  # fmt: skip
        s.commit()
    return True


def set_user_hold(
    engine: Engine, tenant: str, user_id: int, on: bool, *, actor: str, source: str | None
) -> bool:
    """Place (``on``) or release the legal hold of ``user_id`` of ``tenant``. False: it already was so."""
    with Session(engine) as s:
        user = s.get(User, user_id)
        if user is None or user.tenant_id != tenant:
            raise PolicyError(f"user {user_id} does not exist in tenant {tenant!r}")
        row = s.get(UserLegalHold, user_id)
        if (row is not None) == on:
            return False
        if on:
            s.add(UserLegalHold(user_id=user_id, tenant_id=tenant, placed_at=utcnow()))
        else:
            s.delete(row)
        audit(
            s, AuditAction.POLICY_USER_HOLD, actor=actor, source=source, target=f"user:{user_id}",
            tenant_id=tenant, old={"legal_hold": not on}, new={"legal_hold": on},
        )  # fmt: skip
        s.commit()
    return True


def held(conn: Connection | Session, tenant: str, user_id: int) -> str | None:
    """Which hold keeps the data of ``user_id`` (``tenant``, ``user``), or None."""
    hold = conn.execute(
        select(col(TenantPolicy.legal_hold)).where(col(TenantPolicy.tenant_id) == tenant)
    ).scalar_one_or_none()
    if hold:
        return "tenant"
    user = conn.execute(
        select(col(UserLegalHold.user_id)).where(col(UserLegalHold.user_id) == user_id)
    ).scalar_one_or_none()
    return None if user is None else "user"


def retention_periods(engine: Engine) -> dict[str, int | None]:
    """Every tenant that set its own period -> that period."""
    with Session(engine) as s:
        rows = s.execute(
            select(col(TenantPolicy.tenant_id), col(TenantPolicy.retention_days)).where(
                col(TenantPolicy.retention_days).is_not(None)
            )
        ).all()
    return {str(t): None if d is None else int(d) for t, d in rows}


def hold_sets(engine: Engine) -> tuple[frozenset[str], frozenset[int]]:
    """The tenants under legal hold, and the held users."""
    with Session(engine) as s:
        tenants = s.execute(
            select(col(TenantPolicy.tenant_id)).where(col(TenantPolicy.legal_hold).is_(True))
        ).scalars()
        users = s.execute(select(col(UserLegalHold.user_id))).scalars()
        return frozenset(str(t) for t in tenants), frozenset(int(u) for u in users)
