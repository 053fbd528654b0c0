"""The REST API of the second factor and API tokens, under ``/api/v1``.

Second factor: ``GET/POST /me/second-factor`` (state; begin an enrolment: the secret, its otpauth
URI and an SVG QR code), ``POST /me/second-factor/confirm`` (a code turns it on; the recovery
codes are in this answer only), ``POST /me/second-factor/off`` (password or code),
``DELETE /users/{user_id}/second-factor`` (an administrator's reset). A sign-in whose password
is right but which needs a code answers 401 ``second_factor_needed`` with a ``wait_token``;
``POST /session/code`` with it and a code begins the session.
API tokens: ``GET/POST /me/tokens``, ``DELETE /me/tokens/{token_id}``; the token is in the
creation answer only, then ``Authorization: Bearer tws_...`` on any request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from web import security_flows as flows
from web import signin
from web.api import MAX_ID, PREFIX, ErrorOut, Me, Strict, me_of
from web.api_tokens import MAX_NAME, TokenView
from web.deps import CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.i18n import text
from web.principal import load_principal
from web.totp import MAX_INPUT

ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "not signed in"},
    403: {"model": ErrorOut, "description": "CSRF token wrong, role not allowed, or an API token"},
}
router = APIRouter(prefix=PREFIX, responses=ERRORS)


class FactorOut(BaseModel):
    state: Literal["off", "enrolling", "on"]
    enabled_at: datetime | None
    recovery_codes_left: int


class EnrolmentOut(BaseModel):
    secret: str  # base32, for typing into an authenticator app
    otpauth_uri: str
    qr_svg: str  # an SVG QR code of the URI


class CodeBody(Strict):
    code: str = Field(min_length=1, max_length=MAX_INPUT)


class OffBody(Strict):
    password: str = Field(default="", max_length=1000)
    code: str = Field(default="", max_length=MAX_INPUT)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]  # shown this once; each signs in once instead of a code


class SignInCodeBody(Strict):
    wait_token: str = Field(min_length=1, max_length=100)
    code: str = Field(min_length=1, max_length=MAX_INPUT)


class TokenBody(Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str  # shown this once: send it as "Authorization: Bearer <token>"


class TokenList(BaseModel):
    tokens: list[TokenOut]


def token_out(view: TokenView) -> TokenOut:
    return TokenOut(**view.__dict__)


async def code_needed(request: Request, exc: signin.CodeNeeded) -> JSONResponse:
    """The API answer of a sign-in that waits for its code (registered on the application)."""
    body = {
        "error": exc.code,
        "message": text(exc.code, "en"),
        "wait_token": exc.wait_token,
        "expires_in_s": exc.expires_in_s,
    }
    return JSONResponse(body, status_code=exc.status)


@router.post("/session/code", responses={429: {"model": ErrorOut}})
async def complete_session(body: SignInCodeBody, request: Request, response: Response, c: ConsoleDep) -> Me:
    """Second step of a sign-in: a code (or recovery code) for the ``wait_token``; sets the session cookie."""
    outcome = await signin.complete_sign_in(c, body.wait_token, body.code, address(request))
    if isinstance(outcome, signin.Refused):
        if outcome.reason == "too_many":
            raise Problem(429, "too_many", seconds=outcome.retry_after_s)
        raise Problem(401, outcome.reason)
    response.set_cookie(c.session_cookie, outcome.token, **c.cookie_options())  # type: ignore[arg-type]
    principal = await run_in_threadpool(load_principal, c.engine, outcome.record)
    if principal is None:
        raise Problem(401, "sign_in_failed")
    return me_of(principal, outcome.record.csrf)


@router.get("/me/second-factor")
async def get_factor(who: CallerDep, c: ConsoleDep) -> FactorOut:
    """Whether one's second factor is off, being enrolled, or on."""
    found = await flows.state(c, who)
    return FactorOut(state=found.state, enabled_at=found.enabled_at, recovery_codes_left=found.recovery_left)


@router.post("/me/second-factor", status_code=201, responses={409: {"model": ErrorOut}})
async def post_factor(request: Request, who: CallerDep, c: ConsoleDep) -> EnrolmentOut:
    """Begin enrolling a TOTP second factor (administrators and managers); it is on once confirmed."""
    enrolment = await flows.start(c, who, address(request))
    return EnrolmentOut(**enrolment.__dict__)


@router.post(
    "/me/second-factor/confirm",
    responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
async def confirm_factor(body: CodeBody, request: Request, who: CallerDep, c: ConsoleDep) -> RecoveryCodesOut:
    """Turn the enrolled second factor on with a code of it; the recovery codes are in this answer only."""
    codes = await flows.confirm(c, who, body.code, address(request))
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/me/second-factor/off",
    status_code=204,
    responses={409: {"model": ErrorOut}, 422: {"model": ErrorOut}, 429: {"model": ErrorOut}},
)
async def factor_off(body: OffBody, request: Request, who: CallerDep, c: ConsoleDep) -> Response:
    """Turn one's second factor off, with the password or a current code."""
    await flows.turn_off(c, who, body.password, body.code, address(request))
    return Response(status_code=204)


@router.delete(
    "/users/{user_id}/second-factor",
    status_code=204,
    responses={
        404: {"model": ErrorOut},
        409: {"model": ErrorOut, "description": "one's own: use /me/second-factor/off"},
    },
)
async def reset_factor(
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    """An administrator removes a user's second factor (audited); nothing to remove is not an error.
    One's own is 409 ``second_factor_reset_self``: turn it off with ``POST /me/second-factor/off``."""
    await flows.reset(c, who, scope, user_id, address(request))
    return Response(status_code=204)


@router.get("/me/tokens")
async def list_tokens(who: CallerDep, c: ConsoleDep) -> TokenList:
    """One's API tokens (never the tokens themselves), newest first."""
    return TokenList(tokens=[token_out(v) for v in await flows.tokens(c, who)])


@router.post("/me/tokens", status_code=201, responses={422: {"model": ErrorOut}})
async def create_token(body: TokenBody, request: Request, who: CallerDep, c: ConsoleDep) -> TokenCreated:
    """Make an API token acting as oneself; the token is in this answer only."""
    token, view = await flows.create_token(c, who, body.name, body.expires_in_days, address(request))
    return TokenCreated(token=token, **view.__dict__)


@router.delete("/me/tokens/{token_id}", status_code=204, responses={404: {"model": ErrorOut}})
async def revoke_token(
    request: Request, who: CallerDep, c: ConsoleDep, token_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """Revoke one of one's API tokens: it stops at once."""
    await flows.revoke_token(c, who, token_id, address(request))
    return Response(status_code=204)
