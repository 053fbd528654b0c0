"""The console's HTML pages: sign-in, set-up, users, a user, profile; server-rendered, no external assets.

Templates are Jinja2 with autoescaping (``web/templates``); every form that changes something
carries the session's CSRF token in a hidden ``csrf`` field. The sign-in and set-up forms, used
before a session exists, carry a double-submit token (``pre``, also in a cookie) against login
CSRF. A successful POST answers 303 to a page (post/redirect/get).
"""

from __future__ import annotations

import hmac
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import available_timezones

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from storage.account_changes import update_user
from storage.account_rules import AccountError
from web import signin
from web.audit import user_actor
from web.console import Console
from web.credentials import CredentialError
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.i18n import Language, language_for, text
from web.scope import MAX_QUERY
from web.sessions import new_token

TEMPLATES = FilePath(__file__).resolve().parent / "templates"
ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
ENV.globals["zones"] = sorted(available_timezones())  # the profile's time zone choices (IANA names)
FormText = Annotated[str, Form(max_length=1000)]

router = APIRouter(include_in_schema=False)


def render(
    name: str, lang: Language, *, status: int = 200, who: Caller | None = None, **context: Any
) -> HTMLResponse:
    """The page ``name`` in ``lang``; signed-in pages get the principal and the CSRF token."""
    html = ENV.get_template(name).render(
        lang=lang,
        t=lambda key, **values: text(key, lang, **values),
        me=None if who is None else who.principal,
        csrf="" if who is None else who.session.csrf,
        **context,
    )
    return HTMLResponse(html, status_code=status)


MAX_NEXT = 1000  # characters of a return address


def safe_next(value: str | None) -> str | None:
    """Pure: ``value`` when it is a path of this site to return to after sign-in, else None.

    Only ``/...`` paths: never another origin (``//host``, ``/\\host``, a scheme), no control
    characters or backslashes, not the sign-in page itself, at most :data:`MAX_NEXT` characters."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    if value == "/signin" or value.startswith(("/signin?", "/signin/")):
        return None
    return value


def signin_location(request: Request) -> str:
    """The sign-in page, returning afterwards to a page asked for with GET (``?next=``)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    back = safe_next(here) if request.method == "GET" else None
    return "/signin" if back is None or back == "/" else f"/signin?{urlencode({'next': back})}"


def lang_of(request: Request, who: Caller | None = None) -> Language:
    return language_for(
        None if who is None else who.principal.language,
        request.query_params.get("lang"),
        request.headers.get("accept-language"),
    )


def _pre_page(name: str, request: Request, c: Console, status: int = 200, **context: Any) -> HTMLResponse:
    """A page of a form used before sign-in, with a fresh double-submit token in form and cookie."""
    pre = new_token()
    response = render(name, lang_of(request), status=status, pre=pre, **context)
    response.set_cookie(c.pre_cookie, pre, max_age=3600, **c.cookie_options())  # type: ignore[arg-type]
    return response


def _pre_ok(request: Request, c: Console, sent: str) -> bool:
    kept = request.cookies.get(c.pre_cookie, "")
    return bool(kept) and hmac.compare_digest(kept.encode(), sent.encode("utf-8", "replace"))


@router.get("/")
async def home(who: CallerDep) -> RedirectResponse:
    return RedirectResponse("/users", status_code=303)


@router.get("/signin")
async def signin_page(request: Request, c: ConsoleDep) -> HTMLResponse:
    notice = text("signed_out", lang_of(request)) if request.query_params.get("out") else None
    back = safe_next(request.query_params.get("next")) or ""
    return _pre_page("signin.html", request, c, tenant="", login="", notice=notice, next=back)


@router.post("/signin")
async def signin_form(
    request: Request,
    c: ConsoleDep,
    tenant: FormText,
    login: FormText,
    password: FormText,
    pre: FormText = "",
    next: FormText = "",
) -> Response:
    lang = lang_of(request)
    back = safe_next(next)
    if not _pre_ok(request, c, pre):
        return _pre_page(
            "signin.html",
            request,
            c,
            403,
            tenant=tenant,
            login=login,
            error=text("csrf", lang),
            next=back or "",
        )
    outcome = await signin.sign_in(c, tenant, login, password, address(request))
    if isinstance(outcome, signin.Refused):
        status, error = (
            (429, text("too_many", lang, seconds=outcome.retry_after_s))
            if outcome.reason == "too_many"
            else (401, text("sign_in_failed", lang))
        )
        return _pre_page(
            "signin.html", request, c, status, tenant=tenant, login=login, error=error, next=back or ""
        )
    response = RedirectResponse(back or "/users", status_code=303)
    response.set_cookie(c.session_cookie, outcome.token, **c.cookie_options())  # type: ignore[arg-type]
    response.delete_cookie(c.pre_cookie, path="/", secure=c.settings.web_secure_cookie, httponly=True)
    return response


@router.post("/signout")
async def signout_form(request: Request, who: CallerDep, c: ConsoleDep) -> RedirectResponse:
    await signin.sign_out(c, who.token, who.session, address(request))
    response = RedirectResponse("/signin?out=1", status_code=303)
    response.delete_cookie(c.session_cookie, path="/", secure=c.settings.web_secure_cookie, httponly=True)
    return response


@router.post("/signout-everywhere")
async def signout_everywhere_form(request: Request, who: CallerDep, c: ConsoleDep) -> RedirectResponse:
    await signin.sign_out_everywhere(c, who.token, who.session, address(request))
    response = RedirectResponse("/signin?out=1", status_code=303)
    response.delete_cookie(c.session_cookie, path="/", secure=c.settings.web_secure_cookie, httponly=True)
    return response


@router.get("/setup")
async def setup_page(
    request: Request, c: ConsoleDep, code: Annotated[str, Query(max_length=128)] = ""
) -> HTMLResponse:
    """The set-up form; ``?code=`` (a link typed or pasted without its ``#``) prefills the code."""
    return _pre_page("setup.html", request, c, done=False, code=code)


@router.post("/setup")
async def setup_form(
    request: Request, c: ConsoleDep, code: FormText, password: FormText, pre: FormText = ""
) -> Response:
    lang = lang_of(request)
    if not _pre_ok(request, c, pre):
        return _pre_page("setup.html", request, c, 403, done=False, error=text("csrf", lang))
    try:
        await signin.set_up(c, code.strip(), password, address(request))
    except signin.PasswordRefused as exc:
        return _pre_page("setup.html", request, c, 422, done=False, error=text(exc.code, lang))
    except CredentialError:
        return _pre_page("setup.html", request, c, 400, done=False, error=text("setup_invalid", lang))
    return render("setup.html", lang, done=True, notice=text("setup_done", lang))


@router.get("/users")
async def users_page(
    request: Request, who: CallerDep, scope: ScopeDep, q: Annotated[str, Query(max_length=MAX_QUERY)] = ""
) -> HTMLResponse:
    views = await run_in_threadpool(scope.users, q, 200, 0)
    return render("users.html", lang_of(request, who), who=who, users=views, q=q)


def _profile_notice(request: Request, lang: Language) -> str | None:
    if request.query_params.get("saved"):
        return text("saved", lang)
    if request.query_params.get("changed"):
        return text("password_changed", lang)
    return None


@router.get("/profile")
async def profile_page(request: Request, who: CallerDep) -> HTMLResponse:
    lang = lang_of(request, who)
    return render("profile.html", lang, who=who, notice=_profile_notice(request, lang))


@router.post("/profile")
async def profile_form(
    request: Request,
    who: CallerDep,
    c: ConsoleDep,
    name: FormText,
    language: FormText,
    csrf: FormText = "",
    time_zone: Annotated[str | None, Form(max_length=64)] = None,
) -> Response:
    """Name, language and (when the form sends it) time zone; an empty zone is the tenant's."""
    p = who.principal
    changes: dict[str, object] = {"name": name, "language": language}
    if time_zone is not None:
        changes["time_zone"] = time_zone or None
    try:
        await run_in_threadpool(
            lambda: update_user(
                c.engine, p.tenant, p.login, changes,
                actor=user_actor(p.user_id), source=address(request),
            )
        )  # fmt: skip
    except AccountError as exc:
        lang = lang_of(request, who)
        return render("profile.html", lang, status=422, who=who, error=text("bad_value", lang, reason=exc))
    return RedirectResponse("/profile?saved=1", status_code=303)


@router.post("/profile/password")
async def password_form(
    request: Request, who: CallerDep, c: ConsoleDep, current: FormText, new: FormText, csrf: FormText = ""
) -> Response:
    try:
        await signin.change_password(c, who.token, who.principal, current, new, address(request))
    except signin.PasswordRefused as exc:
        lang = lang_of(request, who)
        return render("profile.html", lang, status=422, who=who, error=text(exc.code, lang))
    return RedirectResponse("/profile?changed=1", status_code=303)


def problem_page(request: Request, problem: Problem) -> Response:
    """The page answering a refused page request: sign-in for 401, else the message with its status."""
    if problem.status == 401:
        return RedirectResponse(signin_location(request), status_code=303)
    lang = lang_of(request)
    return render(
        "message.html", lang, status=problem.status, error=text(problem.code, lang, **problem.facts)
    )
