"""The second factor's and API tokens' actions of a signed-in caller, shared by the pages and the API.

Each checks what the caller may do and raises :class:`~web.deps.Problem` otherwise: an API token
cannot change the second factor or make tokens (403 ``api_token_forbidden``); only
administrators and managers have a second factor (403 ``second_factor_role``); codes and
passwords proving who turns the second factor off are limited like sign-ins (429 ``too_many``);
an administrator resets the second factor of a user in their tenant (another tenant's user is
404, as missing), but not their own (409 ``second_factor_reset_self``: that is turning it off, with
the password or a code, on ``/profile/second-factor``). Database work runs in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from storage.audit_trail import AuditAction
from web import api_tokens, credentials, second_factor, totp
from web.audit import user_actor
from web.console import Console
from web.deps import Caller, Problem
from web.passwords import check
from web.scope import Scope
from web.second_factor import FactorError, FactorState
from web.signin import hashing, session_only


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str
    qr_svg: str


def enrolment_of(secret: str, who: Caller) -> Enrolment:
    uri = totp.otpauth_uri(secret, who.principal.tenant, who.principal.login)
    return Enrolment(secret, uri, totp.qr_svg(uri))


def _may_have_factor(who: Caller) -> None:
    session_only(who.token)
    if who.principal.role not in second_factor.ROLES_WITH_SECOND_FACTOR:
        raise Problem(403, "second_factor_role")


async def _not_blocked(c: Console, who: Caller, address: str) -> None:
    blocked = await c.limits.blocked(who.principal.tenant, who.principal.login, address)
    if blocked is not None:
        raise Problem(429, "too_many", seconds=blocked.retry_after_s)


async def state(c: Console, who: Caller) -> FactorState:
    p = who.principal
    return await run_in_threadpool(second_factor.state_of, c.engine, p.tenant, p.user_id)


async def start(c: Console, who: Caller, address: str) -> Enrolment:
    """A new secret for the caller (not on until confirmed); 409 when the second factor is on."""
    _may_have_factor(who)
    p = who.principal
    keyring = second_factor.keyring_for(c.settings, c.engine)
    try:
        secret = await run_in_threadpool(
            lambda: second_factor.begin_enrolment(
                c.engine, keyring, p.tenant, p.user_id, now=c.clock(), source=address
            )
        )
    except FactorError as exc:
        raise Problem(409, exc.code) from None
    return enrolment_of(secret, who)


async def enrolling(c: Console, who: Caller) -> Enrolment | None:
    """The caller's enrolment waiting for confirmation, or None."""
    p = who.principal
    keyring = second_factor.keyring_for(c.settings, c.engine)
    secret = await run_in_threadpool(second_factor.enrolling_secret, c.engine, keyring, p.tenant, p.user_id)
    return None if secret is None else enrolment_of(secret, who)


async def confirm(c: Console, who: Caller, code: str, address: str) -> list[str]:
    """Turn the enrolled secret on with one of its codes; returns the recovery codes (shown once)."""
    _may_have_factor(who)
    await _not_blocked(c, who, address)
    p = who.principal
    keyring = second_factor.keyring_for(c.settings, c.engine)
    try:
        return await run_in_threadpool(
            lambda: second_factor.confirm(
                c.engine, keyring, p.tenant, p.user_id, code, now=c.clock(), source=address
            )
        )
    except FactorError as exc:
        if exc.code == "second_factor_wrong_code":
            await c.limits.failed(p.tenant, p.login, address)
            raise Problem(422, exc.code) from None
        raise Problem(409, exc.code) from None


async def turn_off(c: Console, who: Caller, password: str, code: str, address: str) -> None:
    """Turn the caller's second factor off, proven by their password or a current code."""
    session_only(who.token)
    p = who.principal
    if not password and not code:
        raise Problem(422, "second_factor_proof_needed")
    await _not_blocked(c, who, address)
    current = await state(c, who)
    if current.state == "off":
        raise Problem(409, "second_factor_is_off")
    proven = False
    if password:
        account = await run_in_threadpool(credentials.find_account, c.engine, p.tenant, p.login)
        if account is not None and account.password_hash is not None:
            proven, _ = await hashing(c, check, c.hasher, account.password_hash, password)
    elif current.state == "on":
        keyring = second_factor.keyring_for(c.settings, c.engine)
        used = await run_in_threadpool(
            lambda: second_factor.use_code(c.engine, keyring, p.tenant, p.user_id, code, now=c.clock())
        )
        proven = used is not None
    if not proven:
        await c.limits.failed(p.tenant, p.login, address)
        raise Problem(422, "second_factor_proof_wrong")
    await run_in_threadpool(
        lambda: second_factor.remove(
            c.engine, p.tenant, p.user_id, action=AuditAction.WEB_SECOND_FACTOR_OFF,
            actor=user_actor(p.user_id), source=address, now=c.clock(),
            proof="password" if password else "code",
        )
    )  # fmt: skip


async def reset(c: Console, who: Caller, scope: Scope, user_id: int, address: str) -> bool:
    """An administrator removes the second factor of a user of their tenant; False if it had none."""
    view = await run_in_threadpool(scope.user, user_id)
    if view is None:
        raise Problem(404, "not_found")
    if who.principal.role != "admin":
        raise Problem(403, "forbidden")
    session_only(who.token)
    if user_id == who.principal.user_id:  # without password or code: a stolen session could do it
        raise Problem(409, "second_factor_reset_self")
    return await run_in_threadpool(
        lambda: second_factor.remove(
            c.engine, who.principal.tenant, user_id, action=AuditAction.WEB_SECOND_FACTOR_RESET,
            actor=user_actor(who.principal.user_id), source=address, now=c.clock(),
        )
    )  # fmt: skip


async def create_token(
    c: Console, who: Caller, name: str, expires_in_days: int | None, address: str
) -> tuple[str, api_tokens.TokenView]:
    """A new API token of the caller, shown once; 422 naming what is wrong with the name or expiry."""
    session_only(who.token)
    limit = c.settings.web_api_token_max_days
    if expires_in_days is not None and not 1 <= expires_in_days <= limit:
        raise Problem(422, "api_token_expiry", days=limit)
    p = who.principal
    try:
        return await run_in_threadpool(
            lambda: api_tokens.create(
                c.engine, p.tenant, p.user_id, name, expires_in_days, now=c.clock(), source=address
            )
        )
    except api_tokens.TokenError as exc:
        raise Problem(422, exc.code, most=api_tokens.MAX_TOKENS) from None


async def tokens(c: Console, who: Caller) -> list[api_tokens.TokenView]:
    p = who.principal
    return await run_in_threadpool(api_tokens.listing, c.engine, p.tenant, p.user_id)


async def revoke_token(c: Console, who: Caller, token_id: int, address: str) -> None:
    """Revoke one of the caller's own tokens (404 for any other); an API token may revoke itself."""
    p = who.principal
    try:
        await run_in_threadpool(
            lambda: api_tokens.revoke(c.engine, p.tenant, p.user_id, token_id, now=c.clock(), source=address)
        )
    except api_tokens.TokenError:
        raise Problem(404, "not_found") from None
