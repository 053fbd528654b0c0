"""FastAPI dependencies: the caller of a request (session cookie -> principal), CSRF, the scope.

:func:`caller` runs on every signed-in route: it reads the session cookie, ends a session that is
idle or past its absolute life (judged by the console's clock), re-reads the principal from the
database (a disabled user, a terminated tenant or a changed password end it at once), checks the
CSRF token of every state-changing request (header ``X-CSRF-Token``, or the form field ``csrf``),
and notes the request (at most every :data:`TOUCH_EVERY_S`). A request with ``Authorization: Bearer
tws_...`` is instead the API token's user (:mod:`web.api_tokens`): no cookie, no CSRF token (a
browser never sends the header by itself). :func:`scope` is the
:class:`~web.scope.Scope` every handler reads through.
A refusal is a :class:`Problem`; the application turns it into JSON under ``/api`` and a page
(or a redirect to the sign-in page) elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from web import api_tokens, session_store
from web.console import Console
from web.principal import Principal, load_principal
from web.scope import Scope
from web.sessions import SessionRecord, csrf_matches, expiry, plausible_token

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
TOUCH_EVERY_S = 5.0  # a session's last request is noted at most this often (one Redis write saved)


class Problem(Exception):
    """A refused request: HTTP ``status``, a message key of :mod:`web.i18n` (``code``), and its facts."""

    def __init__(self, status: int, code: str, **facts: object) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.facts = facts


@dataclass(frozen=True)
class Caller:
    """The signed-in caller of a request."""

    token: str
    session: SessionRecord
    principal: Principal
    api_token_id: int | None = None  # set when the request came with an API token, not a session


def console(request: Request) -> Console:
    found: Console = request.app.state.console
    return found


def address(request: Request) -> str:
    """The client address (the peer; a proxy's forwarded headers are not trusted)."""
    return request.client.host if request.client else "unknown"


async def _csrf_sent(request: Request) -> str | None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent


async def _token_caller(c: Console, authorization: str) -> Caller:
    token = api_tokens.parse_bearer(authorization)
    now = c.clock()
    found = None if token is None else await run_in_threadpool(api_tokens.resolve, c.engine, token, now)
    if found is None:
        raise Problem(401, "api_token_invalid")
    record = SessionRecord(found.user_id, found.tenant, found.version, "", now, now, "")
    principal = await run_in_threadpool(load_principal, c.reader, record)
    if principal is None:  # user gone or disabled, tenant terminated
        raise Problem(401, "api_token_invalid")
    return Caller("", record, principal, api_token_id=found.token_id)


async def caller(request: Request, c: Annotated[Console, Depends(console)]) -> Caller:
    authorization = request.headers.get("authorization")
    if authorization is not None:
        return await _token_caller(c, authorization)
    token = request.cookies.get(c.session_cookie)
    if not plausible_token(token):
        raise Problem(401, "not_signed_in")
    assert token is not None
    session = await session_store.load(c.redis, token)
    if session is None:
        raise Problem(401, "not_signed_in")
    now = c.clock()
    if expiry(session, now, c.settings.web_session_idle_s, c.settings.web_session_absolute_s) != "live":
        await session_store.end(c.redis, token, session)
        raise Problem(401, "not_signed_in")
    principal = await run_in_threadpool(load_principal, c.reader, session)
    if principal is None:  # user gone or disabled, tenant terminated, or password changed since
        await session_store.end(c.redis, token, session)
        raise Problem(401, "not_signed_in")
    if request.method not in SAFE_METHODS and not csrf_matches(session, await _csrf_sent(request)):
        raise Problem(403, "csrf")
    if now - session.seen >= TOUCH_EVERY_S:  # the idle time counts from a request at most this old
        await session_store.touch(c.redis, token, now)
    return Caller(token, session, principal)


def session_caller(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """The caller of a route that hands out a console credential (a user's set-up link): a session's
    only. With an API token: 403 ``api_token_forbidden`` (a leaked token must not become an account)."""
    if who.api_token_id is not None:
        raise Problem(403, "api_token_forbidden")
    return who


def scope(who: Annotated[Caller, Depends(caller)], c: Annotated[Console, Depends(console)]) -> Scope:
    return Scope(who.principal, c.engine)


ConsoleDep = Annotated[Console, Depends(console)]
CallerDep = Annotated[Caller, Depends(caller)]
SessionCallerDep = Annotated[Caller, Depends(session_caller)]
ScopeDep = Annotated[Scope, Depends(scope)]
