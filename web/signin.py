"""Sign-in, sign-out, password change and set-up: the flows, shared by the pages and the API.

:func:`sign_in` refuses at once when the account's or the address's failures are used up
(:mod:`web.ratelimit`); otherwise it verifies the password (argon2id; one verification is spent
for a login without a password too, so timing does not tell them apart), counts a failure, or
rehashes the password when the hashing parameters changed and begins a session. A disabled user
or a terminated tenant fails like a wrong password. Every outcome about an existing user is
audited (:mod:`web.audit`); a refusal for an unknown account is logged without its login (it may
be a password typed into the wrong field), at most one line per 10 s.
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
from web import credentials, session_store
from web.audit import record, user_actor
from web.console import Console
from web.passwords import MAX_LENGTH, check, password_problem, spend
from web.principal import Principal
from web.ratelimit import Blocked
from web.sessions import SessionRecord

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
    token, session = await session_store.begin(
        console.redis, user_id=account.user_id, tenant=account.tenant, version=account.version,
        now=console.clock(), address=address, absolute_s=console.settings.web_session_absolute_s,
    )  # fmt: skip
    await run_in_threadpool(
        _audit, console, AuditAction.WEB_SIGN_IN, account.user_id, account.tenant, address, rehashed=rehash
    )
    return SignedIn(token, session)


async def sign_out(console: Console, token: str, session: SessionRecord, address: str) -> None:
    await session_store.end(console.redis, token, session)
    await run_in_threadpool(
        _audit, console, AuditAction.WEB_SIGN_OUT, session.user_id, session.tenant, address
    )


async def sign_out_everywhere(console: Console, token: str, session: SessionRecord, address: str) -> int:
    """End every session of the user, this one included; returns how many."""
    ended = await session_store.end_user_sessions(console.redis, session.tenant, session.user_id)
    await session_store.end(console.redis, token, session)
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
    """Replace the password (the current one required); the user's other sessions end, this one stays."""
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


async def set_up(console: Console, code: str, password: str, address: str) -> None:
    """Set a password with a one-time set-up code; every session the user had ends.

    CredentialError for an invalid code, PasswordRefused for an unusable password."""
    new_hash = await hashing(console, new_password_hash, console, password)
    tenant, user_id = await run_in_threadpool(
        lambda: credentials.redeem_setup_code(
            console.engine, code, new_hash, now=console.clock(), source=address
        )
    )
    await session_store.end_user_sessions(console.redis, tenant, user_id)
