"""Audit entries of the console's sign-in actions (``web.sign_in``, ``web.password_change`` ...: the
``WEB_*`` members of :class:`storage.audit_trail.AuditAction`).

The entry has the same shape as every other (:func:`storage.audit_trail.detail`: ``source`` is
the client address) and is appended through :func:`storage.hash_chain_store.append` in the
caller's transaction. Neither a password, a hash, a session token nor a set-up code is ever in
it; a refused sign-in of a login that does not exist has no user to name and is only logged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from storage import hash_chain_store
from storage.audit_trail import AuditAction, detail


def user_actor(user_id: int) -> str:
    """Who a console action is recorded as."""
    return f"user:{user_id}"


def at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def record(
    s: Session,
    action: AuditAction,
    *,
    actor: str,
    source: str,
    tenant_id: str,
    user_id: int,
    now: float,
    **facts: Any,
) -> None:
    """Append the entry of ``action`` about user ``user_id`` in ``s``'s transaction (the caller commits)."""
    hash_chain_store.append(
        s,
        actor=actor,
        action=str(action),
        target=f"user:{user_id}",
        tenant_id=tenant_id,
        detail=detail(source, **facts),
        at=at(now),
    )
