"""API tokens for scripts: made by a signed-in user for themselves, shown once, stored as sha256, revocable.

A token is ``tws_`` + 43 URL-safe base64 characters (256 random bits), so a leaked one is easy to
recognise (secret scanners) and to tell apart from an agent's ``twa_`` token. The database keeps
only its sha256 (:func:`web.sessions.token_hash`). A request with ``Authorization: Bearer tws_...``
acts as the token's user with their role and scope, without a cookie or CSRF token
(:func:`resolve`, called by :func:`web.deps.caller`): a revoked or expired token, or one of a
disabled user or a terminated tenant, stops at once, as every request reads the row and the user.
Use is noted as ``last_used_at`` (at most once a minute per token). Creation and revocation are
audited; the token itself never is.

A token does not outlive the recovery of its account: :func:`revoke_user_tokens` revokes every live
token of the user (one audit entry naming them and why) when they change their password, set it
with a set-up code, sign out everywhere, or are disabled (:func:`storage.account_changes.update_user`);
and :func:`resolve` refuses, and revokes, a token made before the user's credential last changed
(``web_credential.updated_at``: a password change or an administrator's password reset), whatever
path changed it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.api_token_revocation import live_tokens, revoke_user_tokens_in
from storage.audit_trail import SYSTEM, AuditAction
from storage.models import as_utc
from storage.web_models import ApiToken, WebCredential
from web.audit import at, record
from web.sessions import TOKEN_BYTES, token_hash

PREFIX = "tws_"
MAX_NAME = 100
MAX_TOKENS = 50  # live tokens per user
LAST_USED_EVERY_S = 60.0  # last_used_at is written at most this often per token
_TOKEN = re.compile(r"tws_[A-Za-z0-9_-]{43}")
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+) *")


class TokenError(ValueError):
    """A token that cannot be made or revoked; ``code`` is the message key (:mod:`web.i18n`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class TokenView:
    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class TokenUser:
    """Who a presented token acts as: its id, user and tenant, and the user's credential version."""

    token_id: int
    user_id: int
    tenant: str
    version: int


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def parse_token(text: str) -> str | None:
    """Pure: ``text`` if it has the shape of an API token, else None."""
    return text if _TOKEN.fullmatch(text) else None


def parse_bearer(header: str) -> str | None:
    """Pure: the API token of an ``Authorization: Bearer tws_...`` header value, or None."""
    if len(header) > 200:
        return None
    match = _BEARER.fullmatch(header)
    return None if match is None else parse_token(match.group(1))


def name_problem(name: str) -> str | None:
    """Pure: why ``name`` cannot name a token (a message key), or None."""
    stripped = name.strip()
    if not stripped or len(stripped) > MAX_NAME:
        return "api_token_name_length"
    if any(not ch.isprintable() for ch in stripped):
        return "api_token_name_character"
    return None


def _view(row: ApiToken) -> TokenView:
    assert row.id is not None
    return TokenView(
        id=row.id,
        name=row.name,
        created_at=as_utc(row.created_at),
        expires_at=None if row.expires_at is None else as_utc(row.expires_at),
        last_used_at=None if row.last_used_at is None else as_utc(row.last_used_at),
        revoked_at=None if row.revoked_at is None else as_utc(row.revoked_at),
    )


def create(
    engine: Engine,
    tenant: str,
    user_id: int,
    name: str,
    expires_in_days: int | None,
    *,
    now: float,
    source: str,
) -> tuple[str, TokenView]:
    """A new token of the user (returned once, never stored) and its listing.

    TokenError: a bad name, or :data:`MAX_TOKENS` live tokens already."""
    problem = name_problem(name)
    if problem is not None:
        raise TokenError(problem)
    token = new_token()
    expires = None if expires_in_days is None else at(now) + timedelta(days=expires_in_days)
    with Session(engine) as s:
        live = s.execute(
            select(func.count())
            .select_from(ApiToken)
            .where(col(ApiToken.user_id) == user_id, live_tokens(now))  # type: ignore[arg-type]
        ).scalar_one()
        if live >= MAX_TOKENS:
            raise TokenError("api_token_too_many")
        row = ApiToken(
            token_hash=token_hash(token), user_id=user_id, tenant_id=tenant, name=name.strip(),
            created_at=at(now), expires_at=expires,
        )  # fmt: skip
        s.add(row)
        s.flush()
        record(
            s, AuditAction.WEB_API_TOKEN_CREATE, actor=f"user:{user_id}", source=source, tenant_id=tenant,
            user_id=user_id, now=now, api_token_id=row.id, expires_in_days=expires_in_days,
        )  # fmt: skip
        s.commit()
        s.refresh(row)
        return token, _view(row)


def listing(engine: Engine, tenant: str, user_id: int) -> list[TokenView]:
    """The user's tokens, newest first (revoked ones too, marked)."""
    with Session(engine) as s:
        rows = s.execute(
            select(ApiToken)
            .where(col(ApiToken.user_id) == user_id, col(ApiToken.tenant_id) == tenant)
            .order_by(col(ApiToken.id).desc())
        ).scalars()
        return [_view(r) for r in rows]


def revoke(engine: Engine, tenant: str, user_id: int, token_id: int, *, now: float, source: str) -> None:
    """Revoke one of the user's own tokens (it stops at once). TokenError ``api_token_not_found``:
    not theirs, or no such token; revoking a revoked token again changes nothing."""
    with Session(engine) as s:
        row = s.get(ApiToken, token_id)
        if row is None or row.user_id != user_id or row.tenant_id != tenant:
            raise TokenError("api_token_not_found")
        if row.revoked_at is not None:
            return
        row.revoked_at = at(now)
        s.add(row)
        record(
            s, AuditAction.WEB_API_TOKEN_REVOKE, actor=f"user:{user_id}", source=source, tenant_id=tenant,
            user_id=user_id, now=now, api_token_id=token_id,
        )  # fmt: skip
        s.commit()


def revoke_user_tokens(
    engine: Engine, tenant: str, user_id: int, *, now: float, actor: str, source: str, reason: str
) -> int:
    """:func:`revoke_user_tokens_in` in a transaction of its own."""
    with Session(engine) as s:
        revoked = revoke_user_tokens_in(
            s, tenant, user_id, now=now, actor=actor, source=source, reason=reason
        )
        s.commit()
    return revoked


def made_before_change(created_at: datetime, credential_changed_at: datetime | None) -> bool:
    """Pure: whether a token made at ``created_at`` predates the user's last credential change."""
    return credential_changed_at is not None and as_utc(created_at) < as_utc(credential_changed_at)


def resolve(engine: Engine, token: str, now: float) -> TokenUser | None:
    """Who a presented token acts as, or None (unknown, revoked, expired, or made before the user's
    credential last changed: then it is revoked, audited); notes its use."""
    with Session(engine) as s:
        row = s.execute(
            select(ApiToken, col(WebCredential.version), col(WebCredential.updated_at))
            .outerjoin(WebCredential, col(WebCredential.user_id) == col(ApiToken.user_id))
            .where(col(ApiToken.token_hash) == token_hash(token), live_tokens(now))  # type: ignore[arg-type]
        ).first()
        if row is None:
            return None
        found, version, changed_at = row
        assert found.id is not None
        if made_before_change(found.created_at, changed_at):
            s.execute(update(ApiToken).where(col(ApiToken.id) == found.id).values(revoked_at=at(now)))
            record(
                s, AuditAction.WEB_API_TOKEN_REVOKE, actor=SYSTEM, source=SYSTEM, tenant_id=found.tenant_id,
                user_id=found.user_id, now=now, api_token_ids=[found.id], reason="credential_changed",
            )  # fmt: skip
            s.commit()
            return None
        stale = at(now) - timedelta(seconds=LAST_USED_EVERY_S)
        if found.last_used_at is None or as_utc(found.last_used_at) <= stale:
            s.execute(update(ApiToken).where(col(ApiToken.id) == found.id).values(last_used_at=at(now)))
            s.commit()
        return TokenUser(found.id, found.user_id, found.tenant_id, 1 if version is None else int(version))
