"""Console credentials in the database: who may sign in, password set and changed, set-up codes.

A user's password lives in :class:`storage.web_models.WebCredential` (argon2id); every change
raises its ``version``, which ends the sessions that began before it. :func:`issue_setup_code`
gives an administrator (or ``telework admin``) a one-time link: its code is random (256 bits),
stored only as its sha256 with an expiry, replaces any earlier code of the user, and
:func:`redeem_setup_code` accepts it once, before it expires, to set the password. Each change is
audited (:mod:`web.audit`); no password, hash or code is ever logged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_trail import SYSTEM, AuditAction
from storage.models import Tenant, User, as_utc
from storage.web_models import SecondFactor, SetupCode, WebCredential
from web.audit import at, record, user_actor
from web.sessions import token_hash

SETUP_PATH = "/setup"


class CredentialError(ValueError):
    """A set-up code that is not valid, or a password that cannot be set; ``code`` names which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Account:
    """What sign-in needs to know about a login."""

    user_id: int
    tenant: str
    login: str
    enabled: bool
    tenant_open: bool
    password_hash: str | None
    version: int
    second_factor: bool = False  # a TOTP second factor is on: sign-in asks for a code


def find_account(engine: Engine, tenant: str, login: str) -> Account | None:
    """The account of ``login`` in ``tenant``, or None."""
    with Session(engine) as s:
        row = s.execute(
            select(User, col(Tenant.terminated_at), WebCredential, col(SecondFactor.enabled_at))
            .join(Tenant, col(User.tenant_id) == col(Tenant.id))
            .outerjoin(WebCredential, col(WebCredential.user_id) == col(User.id))
            .outerjoin(SecondFactor, col(SecondFactor.user_id) == col(User.id))
            .where(col(User.tenant_id) == tenant, col(User.login) == login)
        ).first()
    if row is None:
        return None
    user, terminated_at, credential, factor_on = row
    assert user.id is not None
    return Account(
        user_id=user.id,
        tenant=user.tenant_id,
        login=user.login,
        enabled=user.enabled,
        tenant_open=terminated_at is None,
        password_hash=None if credential is None else credential.password_hash,
        version=1 if credential is None else credential.version,
        second_factor=factor_on is not None,
    )


def _credential(s: Session, tenant: str, user_id: int, now: float) -> WebCredential:
    credential = s.get(WebCredential, user_id)
    if credential is None:
        credential = WebCredential(user_id=user_id, tenant_id=tenant, version=1, updated_at=at(now))
    return credential


def replace_hash(engine: Engine, user_id: int, old_hash: str, new_hash: str) -> bool:
    """The same password under new hashing parameters (no version change); False if it changed meanwhile."""
    with Session(engine) as s:
        credential = s.get(WebCredential, user_id)
        if credential is None or credential.password_hash != old_hash:
            return False
        credential.password_hash = new_hash
        s.add(credential)
        s.commit()
    return True


def set_password(
    engine: Engine,
    tenant: str,
    user_id: int,
    new_hash: str,
    *,
    now: float,
    action: AuditAction,
    actor: str,
    source: str,
) -> int:
    """Store a new password hash; returns the new credential version (older sessions end)."""
    with Session(engine) as s:
        credential = _credential(s, tenant, user_id, now)
        credential.password_hash = new_hash
        credential.version += 1
        credential.updated_at = at(now)
        s.add(credential)
        record(s, action, actor=actor, source=source, tenant_id=tenant, user_id=user_id, now=now)
        s.commit()
        return credential.version


def bump_version(engine: Engine, tenant: str, user_id: int, now: float) -> int:
    """Raise the credential version (every session that began before ends); returns it."""
    with Session(engine) as s:
        credential = _credential(s, tenant, user_id, now)
        credential.version += 1
        credential.updated_at = at(now)
        s.add(credential)
        s.commit()
        return credential.version


def issue_setup_code(
    engine: Engine,
    tenant: str,
    user_id: int,
    *,
    base_url: str,
    ttl_s: int,
    now: float,
    actor: str = SYSTEM,
    source: str | None = None,
) -> str:
    """A one-time link that lets user ``user_id`` of ``tenant`` set their password within ``ttl_s``.

    The code is in the link's fragment (``#``), which browsers never send to a server, so it stays
    out of access logs; earlier codes of the user stop working. CredentialError: no such user."""
    code = secrets.token_urlsafe(32)
    with Session(engine) as s:
        user = s.get(User, user_id)
        if user is None or user.tenant_id != tenant:
            raise CredentialError("no_user", f"user {user_id} does not exist in tenant {tenant!r}")
        s.execute(delete(SetupCode).where(col(SetupCode.user_id) == user_id))
        s.add(
            SetupCode(
                code_hash=token_hash(code),
                user_id=user_id,
                tenant_id=tenant,
                created_at=at(now),
                expires_at=at(now) + timedelta(seconds=ttl_s),
            )
        )
        record(
            s, AuditAction.WEB_SETUP_CODE_ISSUE, actor=actor, source=source or actor, tenant_id=tenant,
            user_id=user_id, now=now, expires_in_s=ttl_s,
        )  # fmt: skip
        s.commit()
    return f"{base_url.rstrip('/')}{SETUP_PATH}#{code}"


def redeem_setup_code(
    engine: Engine, code: str, new_hash: str, *, now: float, source: str
) -> tuple[str, int]:
    """Set the password of the code's user, once, before the code expires; returns (tenant, user id).

    CredentialError ``setup_invalid`` for a code that is unknown, used, expired, or whose user is
    disabled or whose tenant is terminated (one answer for all, so a code cannot be probed)."""
    invalid = CredentialError("setup_invalid", "the set-up code is not valid (unknown, used or expired)")
    if not code or len(code) > 128:
        raise invalid
    with Session(engine) as s:
        row = s.execute(
            select(SetupCode, col(User.enabled), col(Tenant.terminated_at))
            .join(User, col(SetupCode.user_id) == col(User.id))
            .join(Tenant, col(SetupCode.tenant_id) == col(Tenant.id))
            .where(col(SetupCode.code_hash) == token_hash(code))
        ).first()
        if row is None:
            raise invalid
        setup, enabled, terminated_at = row
        if setup.used_at is not None or as_utc(setup.expires_at) <= at(now) or not enabled or terminated_at:
            raise invalid
        # Used once, even by two requests at the same moment: only one UPDATE finds it unused.
        taken = s.execute(
            update(SetupCode)
            .where(col(SetupCode.code_hash) == setup.code_hash, col(SetupCode.used_at).is_(None))
            .values(used_at=at(now))
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            s.rollback()
            raise invalid
        credential = _credential(s, setup.tenant_id, setup.user_id, now)
        credential.password_hash = new_hash
        credential.version += 1
        credential.updated_at = at(now)
        s.add(credential)
        record(
            s, AuditAction.WEB_PASSWORD_SET, actor=user_actor(setup.user_id), source=source,
            tenant_id=setup.tenant_id, user_id=setup.user_id, now=now,
        )  # fmt: skip
        s.commit()
        return setup.tenant_id, setup.user_id
