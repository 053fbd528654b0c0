"""Sign-in, sign-out, password change and set-up: the flows, shared by the pages and the API.

:func:`sign_in` refuses at once when the account's or the address's failures are used up
(:mod:`web.ratelimit`); otherwise it verifies the password (argon2id; one verification is spent
for a login without a password too, so timing does not tell them apart), counts a failure, or
rehashes the password when the hashing parameters changed and begins a session. A disabled user
or a terminated tenant fails like a wrong password. Every outcome about an existing user is
audited (:mod:`web.audit`); a refusal for an unknown account is logged without its login (it may
be a password typed into the wrong field), at most one line per 10 s.

When the user's TOTP second factor is on (:mod:`web.second_factor`), the right password begins no
session: :func:`sign_in` raises :class:`CodeNeeded` carrying the token of a short wait in Redis
(:mod:`web.code_wait`); the application answers it (an API answer naming the wait, or a redirect
to the code page with a short-lived cookie), and :func:`complete_sign_in` begins the session for
a code accepted once (TOTP or recovery code), wrong codes counted by the same limits as
passwords. (An exception, so that the callers of :func:`sign_in` need no change for it.)
Actions that change how one signs in need a session, not an API token (:func:`session_only`).
A password change first asks the same limits as a sign-in (429 ``too_many`` before the current
password is looked at), and a wrong current password counts as a failure. A password change, a
password set with a set-up code and a sign-out everywhere also revoke the user's API tokens
(:func:`web.api_tokens.revoke_user_tokens`, audited).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from core.ids import SLUG_RE
from core.logs import LogThrottle
from storage.account_rules import refused_character
from storage.audit_trail import AuditAction
from web import api_tokens, code_wait, credentials, second_factor, session_store
from web.audit import record, user_actor
from web.console import Console
from web.deps import Problem
from web.passwords import MAX_LENGTH, check, password_problem, spend
from web.principal import Principal
from web.ratelimit import Blocked
from web.sessions import SessionRecord, plausible_token

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
refusals = LogThrottle(window_s=10.0)  # a flood of unknown logins is one line per 10 s, with a count

MAX_LOGIN = 120  # as tw_user.login allows


@dataclass(frozen=True)
class SignedIn:
    token: str
    record: SessionRecord


@dataclass(frozen=True)
class Refused:
    reason: str  # sign_in_failed | too_many
    retry_after_s: int = 0


class CodeNeeded(Problem):
    """The password was right and the second factor is on: the sign-in waits for a code."""

    def __init__(self, wait_token: str, expires_in_s: int) -> None:
        super().__init__(401, "second_factor_needed")
        self.wait_token = wait_token
        self.expires_in_s = expires_in_s


def session_only(token: str) -> None:
    """Refuse (403 ``api_token_forbidden``) an action made with an API token instead of a session:
    a token cannot change the password or the second factor, make tokens, or sign out."""
    if not plausible_token(token):
        raise Problem(403, "api_token_forbidden")


class PasswordRefused(ValueError):
    """A new password cannot be used; ``code`` is the message key (:mod:`web.i18n`)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


async def hashing(console: Console, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run an argon2 computation in a worker thread, at most :attr:`Console.hash_slots` at once: each
    takes ``TELEWORK_WEB_ARGON2_MEMORY_KIB``, so a burst of sign-ins queues instead of taking the memory."""
    async with console.hash_slots:
        return await run_in_threadpool(fn, *args, **kwargs)


def _audit(
    console: Console, action: AuditAction, user_id: int, tenant: str, source: str, **facts: object
) -> None:
    with Session(console.engine) as s:
        record(
            s, action, actor=user_actor(user_id), source=source, tenant_id=tenant, user_id=user_id,
            now=console.clock(), **facts,
        )  # fmt: skip
        s.commit()


async def sign_in(
    console: Console, tenant: str, login: str, password: str, address: str
) -> SignedIn | Refused:
    """A session for ``login`` of ``tenant`` with ``password``, or why not."""
    blocked: Blocked | None = await console.limits.blocked(tenant, login, address)
    if blocked is not None:
        log.warning("sign-in refused: too many failures", extra={"limit": blocked.what, "address": address})
        return Refused("too_many", blocked.retry_after_s)
    # Only what could be a stored account is looked up (PostgreSQL refuses NUL in text, for one).
    well_formed = (
        bool(SLUG_RE.fullmatch(tenant))
        and 0 < len(login) <= MAX_LOGIN
        and refused_character(login) is None
        and len(password) <= MAX_LENGTH
    )
    account = (
        await run_in_threadpool(credentials.find_account, console.engine, tenant, login)
        if well_formed
        else None
    )
    matches = rehash = False
    if account is not None and account.password_hash is not None:
        matches, rehash = await hashing(console, check, console.hasher, account.password_hash, password)
    else:
        await hashing(console, spend, console.hasher, console.params)
    if account is None or not matches or not account.enabled or not account.tenant_open:
        await console.limits.failed(tenant, login, address)
        if account is None:
            # Not the login: a user who typed their password into the login field would have it logged.
            dropped = refusals.admit("no_account")
            if dropped is not None:
                known = tenant if SLUG_RE.fullmatch(tenant) else "?"
                log.warning(
                    "sign-in refused: no such account",
                    extra={"tenant": known, "address": address, "suppressed": dropped},
                )
        else:
            why = "password" if not matches else "disabled" if not account.enabled else "tenant_terminated"
            await run_in_threadpool(
                _audit,
                console,
                AuditAction.WEB_SIGN_IN_REFUSED,
                account.user_id,
                account.tenant,
                address,
                reason=why,
            )
        return Refused("sign_in_failed")
    if rehash and account.password_hash is not None:
        new_hash = await hashing(console, console.hasher.hash, password)
        await run_in_threadpool(
            credentials.replace_hash, console.engine, account.user_id, account.password_hash, new_hash
        )
    if account.second_factor:
        waiting = code_wait.Waiting(account.user_id, account.tenant, account.login, account.version, 0)
        wait_s = console.settings.web_code_wait_s
        raise CodeNeeded(await code_wait.begin(console.redis, waiting, wait_s), wait_s)
    token, session = await session_store.begin(
        console.redis, user_id=account.user_id, tenant=account.tenant, version=account.version,
        now=console.clock(), address=address, absolute_s=console.settings.web_session_absolute_s,
    )  # fmt: skip
    await run_in_threadpool(
        _audit, console, AuditAction.WEB_SIGN_IN, account.user_id, account.tenant, address, rehashed=rehash
    )
    return SignedIn(token, session)


async def complete_sign_in(console: Console, wait_token: str, code: str, address: str) -> SignedIn | Refused:
    """The session of a sign-in waiting for its code (:class:`CodeNeeded`), or why not
    (``second_factor_wait_over``: unknown or expired wait, ``too_many``, ``second_factor_wrong_code``)."""
    waiting = await code_wait.load(console.redis, wait_token) if plausible_token(wait_token) else None
    if waiting is None:
        return Refused("second_factor_wait_over")
    blocked = await console.limits.blocked(waiting.tenant, waiting.login, address)
    if blocked is not None:
        log.warning(
            "second factor refused: too many failures", extra={"limit": blocked.what, "address": address}
        )
        return Refused("too_many", blocked.retry_after_s)
    keyring = second_factor.keyring_for(console.settings, console.engine)
    used = await run_in_threadpool(
        lambda: second_factor.use_code(
            console.engine, keyring, waiting.tenant, waiting.user_id, code, now=console.clock()
        )
    )
    if used is None:
        await console.limits.failed(waiting.tenant, waiting.login, address)
        await code_wait.miss(console.redis, wait_token)
        await run_in_threadpool(
            _audit, console, AuditAction.WEB_SIGN_IN_REFUSED, waiting.user_id, waiting.tenant, address,
            reason="code",
        )  # fmt: skip
        return Refused("second_factor_wrong_code")
    if not await code_wait.take(console.redis, wait_token):
        return Refused("second_factor_wait_over")
    token, session = await session_store.begin(
        console.redis, user_id=waiting.user_id, tenant=waiting.tenant, version=waiting.version,
        now=console.clock(), address=address, absolute_s=console.settings.web_session_absolute_s,
    )  # fmt: skip
    await run_in_threadpool(
        _audit, console, AuditAction.WEB_SIGN_IN, waiting.user_id, waiting.tenant, address, second_factor=used
    )
    return SignedIn(token, session)


async def sign_out(console: Console, token: str, session: SessionRecord, address: str) -> None:
    session_only(token)
    await session_store.end(console.redis, token, session)
    await run_in_threadpool(
        _audit, console, AuditAction.WEB_SIGN_OUT, session.user_id, session.tenant, address
    )


async def _revoke_tokens(console: Console, tenant: str, user_id: int, address: str, reason: str) -> int:
    return await run_in_threadpool(
        lambda: api_tokens.revoke_user_tokens(
            console.engine, tenant, user_id, now=console.clock(), actor=user_actor(user_id),
            source=address, reason=reason,
        )
    )  # fmt: skip


async def sign_out_everywhere(console: Console, token: str, session: SessionRecord, address: str) -> int:
    """End every session of the user, this one included, and revoke their API tokens; returns how
    many sessions ended."""
    session_only(token)
    ended = await session_store.end_user_sessions(console.redis, session.tenant, session.user_id)
    await session_store.end(console.redis, token, session)
    await _revoke_tokens(console, session.tenant, session.user_id, address, "sign_out_everywhere")
    await run_in_threadpool(
        _audit,
        console,
        AuditAction.WEB_SIGN_OUT_EVERYWHERE,
        session.user_id,
        session.tenant,
        address,
        ended=ended,
    )
    return ended


def new_password_hash(console: Console, password: str, login: str = "") -> str:
    """The hash of an acceptable new password; PasswordRefused naming the problem."""
    problem = password_problem(password, login)
    if problem is not None:
        raise PasswordRefused(problem)
    return console.hasher.hash(password)


async def change_password(
    console: Console, token: str, principal: Principal, current: str, new: str, address: str
) -> None:
    """Replace the password (the current one required, limited as sign-ins: 429 ``too_many``); the
    user's other sessions end, this one stays; their API tokens are revoked."""
    session_only(token)
    blocked = await console.limits.blocked(principal.tenant, principal.login, address)
    if blocked is not None:
        log.warning(
            "password change refused: too many failures", extra={"limit": blocked.what, "address": address}
        )
        raise Problem(429, "too_many", seconds=blocked.retry_after_s)
    account = await run_in_threadpool(
        credentials.find_account, console.engine, principal.tenant, principal.login
    )
    stored = None if account is None else account.password_hash
    matches = False
    if stored is not None:
        matches, _ = await hashing(console, check, console.hasher, stored, current)
    if not matches:
        await console.limits.failed(principal.tenant, principal.login, address)
        raise PasswordRefused("wrong_password")
    new_hash = await hashing(console, new_password_hash, console, new, principal.login)
    version = await run_in_threadpool(
        lambda: credentials.set_password(
            console.engine, principal.tenant, principal.user_id, new_hash, now=console.clock(),
            action=AuditAction.WEB_PASSWORD_CHANGE, actor=user_actor(principal.user_id), source=address,
        )
    )  # fmt: skip
    await session_store.end_user_sessions(console.redis, principal.tenant, principal.user_id, keep=token)
    await session_store.set_version(console.redis, token, version)
    await _revoke_tokens(console, principal.tenant, principal.user_id, address, "password_change")


async def set_up(console: Console, code: str, password: str, address: str) -> None:
    """Set a password with a one-time set-up code; every session the user had ends, every API token
    of theirs is revoked.

    CredentialError for an invalid code, PasswordRefused for an unusable password."""
    new_hash = await hashing(console, new_password_hash, console, password)
    tenant, user_id = await run_in_threadpool(
        lambda: credentials.redeem_setup_code(
            console.engine, code, new_hash, now=console.clock(), source=address
        )
    )
    await session_store.end_user_sessions(console.redis, tenant, user_id)
    await _revoke_tokens(console, tenant, user_id, address, "password_set")
