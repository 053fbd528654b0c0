"""An administrator's changes to users from the console: create, edit, enable/disable, password reset.

The checks of values are :mod:`storage.account_rules`'; the writes and their audit entries are
:func:`storage.accounts.create_user` and :func:`storage.account_changes.update_user` (``user.create``,
``user.update`` with old -> new), so the console and ``telework admin`` change users the same way.
On top of them, :func:`admin_refusal` (pure) keeps a tenant from losing its last enabled
administrator, and :func:`reset_password` gives a user a new one-time set-up link and ends their
sessions (the credential version is raised: every open session is refused on its next request,
and the caller drops them from Redis at once with :func:`web.session_store.end_user_sessions`).
Nothing here returns or logs a password; a set-up link is returned once, to the administrator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from storage.account_changes import update_user, user_values
from storage.accounts import create_user
from storage.audit_trail import AuditAction
from storage.models import Tenant, User
from storage.web_models import WebCredential
from web.audit import at, record
from web.credentials import issue_setup_code
from web.sessions import Clock

EDITABLE = ("name", "role", "language", "time_zone", "enabled")


class LastAdmin(ValueError):
    """The change would leave the tenant without an enabled administrator."""


class LoginTaken(ValueError):
    """Another user of the tenant has this login."""


@dataclass(frozen=True)
class Actor:
    """Who changes users, from where: ``user:<id>`` and the client address."""

    actor: str
    source: str
    now: float


def admin_refusal(role: str, enabled: bool, changes: Mapping[str, Any], enabled_admins: int) -> str | None:
    """Pure: why ``changes`` to a user with ``role``/``enabled`` may not be made, or None.

    ``enabled_admins`` counts the tenant's enabled administrators, the user included. A change that
    demotes or disables the only one is refused (the tenant could not be administered any more)."""
    if role != "admin" or not enabled or enabled_admins > 1:
        return None
    if changes.get("role", "admin") != "admin":
        return "demote"
    if changes.get("enabled", True) is False:
        return "disable"
    return None


def _enabled_admins(s: Session, tenant: str) -> int:
    count = s.execute(
        select(func.count())
        .select_from(User)
        .where(col(User.tenant_id) == tenant, col(User.role) == "admin", col(User.enabled).is_(True))
    ).scalar_one()
    return int(count)


def create(
    engine: Engine,
    tenant: str,
    values: Mapping[str, Any],
    who: Actor,
    *,
    base_url: str,
    ttl_s: int,
) -> tuple[int, str]:
    """A new user of ``tenant`` (login, name, role, language, time_zone) and their one-time set-up link.

    AccountError: a value is refused; LoginTaken: the login is in use."""
    with Session(engine) as s:
        taken = s.execute(
            select(col(User.id)).where(col(User.tenant_id) == tenant, col(User.login) == values["login"])
        ).first()
    if taken is not None:
        raise LoginTaken(values["login"])
    user_id = create_user(
        engine, tenant, values["login"], values["name"], values["role"], language=values["language"],
        time_zone=values.get("time_zone"), actor=who.actor, source=who.source,
    )  # fmt: skip
    link = issue_setup_code(
        engine,
        tenant,
        user_id,
        base_url=base_url,
        ttl_s=ttl_s,
        now=who.now,
        actor=who.actor,
        source=who.source,
    )
    return user_id, link


def edit(
    engine: Engine, tenant: str, user_id: int, changes: Mapping[str, Any], who: Actor
) -> dict[str, list[Any]]:
    """Change the user's name, role, language, time zone (None: the tenant's) and/or enabled flag;
    returns ``{field: [old, new]}`` of what changed (audited as ``user.update``).

    AccountError: a value is refused; LastAdmin: it would leave the tenant without an administrator."""
    checked = user_values({k: v for k, v in changes.items() if k in EDITABLE})
    with engine.begin() as conn:  # one transaction: committed at the end, rolled back on a refusal
        # The check and the change are one transaction that no other change of the tenant's users can
        # interleave with. PostgreSQL: the tenant's row stays locked until the commit (FOR NO KEY UPDATE:
        # rows referring to it may still be written). SQLite has no row locks: BEGIN IMMEDIATE takes the
        # database's write lock before the count is read, so racing changes are judged one after the other.
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        with Session(conn) as s:  # sessions given a connection in a transaction join it (and leave it open)
            s.execute(select(Tenant).where(col(Tenant.id) == tenant).with_for_update(key_share=True))
            user = s.get(User, user_id)
            assert user is not None and user.tenant_id == tenant, "the caller's scope found this user"
            login, role, enabled = user.login, user.role, user.enabled
            reason = admin_refusal(role, enabled, checked, _enabled_admins(s, tenant))
        if reason is not None:
            raise LastAdmin(reason)
        _id, done = update_user(_bound(conn), tenant, login, checked, actor=who.actor, source=who.source)
    return done


def _bound(conn: Connection) -> Engine:
    """``conn`` where an engine is asked for: a session given a connection in a transaction joins it."""
    return cast(Engine, conn)


def reset_password(
    engine: Engine, tenant: str, user_id: int, who: Actor, *, base_url: str, ttl_s: int
) -> str:
    """A new one-time set-up link for the user; their password stops working and every session of
    theirs ends (credential version raised). Audited as ``web.password_reset`` and
    ``web.setup_code_issue``."""
    with Session(engine) as s:
        credential = s.get(WebCredential, user_id) or WebCredential(
            user_id=user_id, tenant_id=tenant, version=1, updated_at=at(who.now)
        )
        credential.password_hash = None  # the old password no longer signs in
        credential.version += 1  # every session that began before ends
        credential.updated_at = at(who.now)
        s.add(credential)
        record(
            s, AuditAction.WEB_PASSWORD_RESET, actor=who.actor, source=who.source, tenant_id=tenant,
            user_id=user_id, now=who.now,
        )  # fmt: skip
        s.commit()
    return issue_setup_code(
        engine,
        tenant,
        user_id,
        base_url=base_url,
        ttl_s=ttl_s,
        now=who.now,
        actor=who.actor,
        source=who.source,
    )


def actor_of(user_id: int, source: str, clock: Clock) -> Actor:
    return Actor(f"user:{user_id}", source, clock())
