"""The pages of the second factor and API tokens, and the second step of a page sign-in.

``/profile/second-factor``: its state; begin an enrolment (the QR code, inline SVG, and the
otpauth URI); confirm it with a code (the recovery codes shown on that answer only); turn it off
with the password or a code. ``/users/{id}/second-factor``: an administrator sees it and resets
it. ``/profile/tokens``: one's API tokens, make one (shown on that answer only), revoke one.
``/signin/code``: after the right password of a user with the second factor on, the sign-in
form's answer redirects here, with the wait in a short-lived ``SameSite=Strict`` cookie (so
another site cannot post the code form with it). Times are in the principal's time zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from web import second_factor, signin
from web import security_flows as flows
from web.api import MAX_ID
from web.console import Console, cookie_name
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.i18n import text
from web.pages import lang_of, render
from web.security_api import code_needed
from web.security_flows import Enrolment

FormText = Annotated[str, Form(max_length=1000)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
WAIT_COOKIE = "tw_code_wait"
router = APIRouter(include_in_schema=False)


def shown(moment: datetime | None, zone: str) -> str:
    """Pure: ``moment`` in time zone ``zone`` as ``YYYY-MM-DD HH:MM``; empty for None."""
    return "" if moment is None else moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def wait_cookie(c: Console) -> str:
    return cookie_name(WAIT_COOKIE, c.settings.web_secure_cookie)


async def code_needed_answer(request: Request, exc: Exception) -> Response:
    """The answer of a sign-in waiting for its code: JSON under ``/api``, else a redirect to the code page."""
    assert isinstance(exc, signin.CodeNeeded)
    if request.url.path.startswith("/api/"):
        return await code_needed(request, exc)
    c: Console = request.app.state.console
    response = RedirectResponse("/signin/code", status_code=303)
    options: dict[str, Any] = {**c.cookie_options(), "samesite": "strict", "max_age": exc.expires_in_s}
    response.set_cookie(wait_cookie(c), exc.wait_token, **options)
    return response


@router.get("/signin/code")
async def code_page(request: Request, c: ConsoleDep) -> Response:
    if not request.cookies.get(wait_cookie(c)):
        return RedirectResponse("/signin", status_code=303)
    return render("signin_code.html", lang_of(request))


@router.post("/signin/code")
async def code_form(request: Request, c: ConsoleDep, code: FormText) -> Response:
    lang = lang_of(request)
    outcome = await signin.complete_sign_in(
        c, request.cookies.get(wait_cookie(c), ""), code, address(request)
    )
    if isinstance(outcome, signin.Refused):
        if outcome.reason == "second_factor_wait_over":
            return RedirectResponse("/signin", status_code=303)
        if outcome.reason == "too_many":
            return render(
                "signin_code.html",
                lang,
                status=429,
                error=text("too_many", lang, seconds=outcome.retry_after_s),
            )
        return render("signin_code.html", lang, status=401, error=text(outcome.reason, lang))
    response = RedirectResponse("/users", status_code=303)
    response.set_cookie(c.session_cookie, outcome.token, **c.cookie_options())  # type: ignore[arg-type]
    response.delete_cookie(wait_cookie(c), path="/", secure=c.settings.web_secure_cookie, httponly=True)
    return response


async def _factor_page(
    request: Request, who: Caller, c: Console, *, status: int = 200, **context: Any
) -> HTMLResponse:
    lang = lang_of(request, who)
    found = await flows.state(c, who)
    enrolment: Enrolment | None = await flows.enrolling(c, who) if found.state == "enrolling" else None
    notice = text("second_factor_turned_off", lang) if request.query_params.get("off") else None
    return render(
        "second_factor.html", lang, status=status, who=who, factor=found, notice=notice,
        may=who.principal.role in second_factor.ROLES_WITH_SECOND_FACTOR,
        enrolment=enrolment, qr=None if enrolment is None else Markup(enrolment.qr_svg),
        when=lambda moment: shown(moment, who.principal.time_zone), **context,
    )  # fmt: skip


@router.get("/profile/second-factor")
async def factor_page(request: Request, who: CallerDep, c: ConsoleDep) -> HTMLResponse:
    return await _factor_page(request, who, c)


@router.post("/profile/second-factor")
async def factor_start(request: Request, who: CallerDep, c: ConsoleDep, csrf: FormText = "") -> Response:
    await flows.start(c, who, address(request))
    return RedirectResponse("/profile/second-factor", status_code=303)


@router.post("/profile/second-factor/confirm")
async def factor_confirm(
    request: Request, who: CallerDep, c: ConsoleDep, code: FormText, csrf: FormText = ""
) -> Response:
    try:
        codes = await flows.confirm(c, who, code, address(request))
    except Problem as exc:
        if exc.status != 422:
            raise
        lang = lang_of(request, who)
        return await _factor_page(request, who, c, status=422, error=text(exc.code, lang))
    return await _factor_page(request, who, c, recovery_codes=codes)


@router.post("/profile/second-factor/off")
async def factor_off(
    request: Request, who: CallerDep, c: ConsoleDep, password: FormText = "", code: FormText = "",
    csrf: FormText = "",
) -> Response:  # fmt: skip
    try:
        await flows.turn_off(c, who, password, code, address(request))
    except Problem as exc:
        if exc.status != 422:
            raise
        lang = lang_of(request, who)
        return await _factor_page(request, who, c, status=422, error=text(exc.code, lang))
    return RedirectResponse("/profile/second-factor?off=1", status_code=303)


async def _visible(scope: ScopeDep, user_id: int) -> Any:
    view = await run_in_threadpool(scope.user, user_id)
    if view is None:
        raise Problem(404, "not_found")
    return view


@router.get("/users/{user_id}/second-factor")
async def user_factor_page(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, user_id: UserId
) -> HTMLResponse:
    view = await _visible(scope, user_id)
    if who.principal.role != "admin":
        raise Problem(403, "forbidden")
    lang = lang_of(request, who)
    found = await run_in_threadpool(second_factor.state_of, c.engine, who.principal.tenant, user_id)
    notice = text("second_factor_reset_done", lang) if request.query_params.get("reset") else None
    return render(
        "second_factor_user.html", lang, who=who, user=view, factor=found, notice=notice,
        when=lambda moment: shown(moment, who.principal.time_zone),
    )  # fmt: skip


@router.post("/users/{user_id}/second-factor/reset")
async def user_factor_reset(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, user_id: UserId, csrf: FormText = ""
) -> Response:
    await flows.reset(c, who, scope, user_id, address(request))
    return RedirectResponse(f"/users/{user_id}/second-factor?reset=1", status_code=303)


async def _tokens_page(
    request: Request, who: Caller, c: Console, *, status: int = 200, **context: Any
) -> HTMLResponse:
    lang = lang_of(request, who)
    notice = text("api_token_revoked", lang) if request.query_params.get("revoked") else None
    return render(
        "tokens.html", lang, status=status, who=who, tokens=await flows.tokens(c, who), notice=notice,
        max_days=c.settings.web_api_token_max_days,
        when=lambda moment: shown(moment, who.principal.time_zone),
        **context,
    )  # fmt: skip


@router.get("/profile/tokens")
async def tokens_page(request: Request, who: CallerDep, c: ConsoleDep) -> HTMLResponse:
    return await _tokens_page(request, who, c)


@router.post("/profile/tokens")
async def token_create(
    request: Request, who: CallerDep, c: ConsoleDep, name: FormText, expires_in_days: FormText = "",
    csrf: FormText = "",
) -> Response:  # fmt: skip
    lang = lang_of(request, who)
    days = expires_in_days.strip()
    try:
        if days and not (days.isascii() and days.isdigit()):
            raise Problem(422, "api_token_expiry", days=c.settings.web_api_token_max_days)
        token, view = await flows.create_token(c, who, name, int(days) if days else None, address(request))
    except Problem as exc:
        if exc.status != 422:
            raise
        return await _tokens_page(request, who, c, status=422, error=text(exc.code, lang, **exc.facts))
    return await _tokens_page(request, who, c, created=token, created_name=view.name)


@router.post("/profile/tokens/{token_id}/revoke")
async def token_revoke(
    request: Request, who: CallerDep, c: ConsoleDep, token_id: UserId, csrf: FormText = ""
) -> Response:
    await flows.revoke_token(c, who, token_id, address(request))
    return RedirectResponse("/profile/tokens?revoked=1", status_code=303)
