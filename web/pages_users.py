"""The console's pages of one user and an administrator's user forms: create, edit, enable/disable, reset.

``GET /users/{id}`` shows a user the caller may see, with their groups (those the caller may see)
and, for an administrator, the forms. Each form posts to the same address as the API's change
(:mod:`web.api_users` does the work) and answers 303 back to the user's page, except creation and
password reset, whose answer is the page itself showing the one-time set-up link (a redirect would
have to carry it in an address). Refusals are the message page with the status of the API's answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from storage.account_rules import AccountError
from web import user_admin
from web.api import MAX_ID
from web.api_users import apply_change, change_problem, require_admin, reset_link, target
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, SessionCallerDep, address
from web.groups import Groups
from web.i18n import text
from web.pages import lang_of, render
from web.scope import Scope, UserView

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=1000)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


def zone_or_tenant(value: str) -> str | None:
    """Pure: a time zone of a form, blank meaning the tenant's (None)."""
    return value.strip() or None


async def user_page_for(
    request: Request, who: Caller, scope: Scope, view: UserView, *, status: int = 200, **context: Any
) -> HTMLResponse:
    groups = await run_in_threadpool(Groups(scope).of_user, view.id)
    lang = lang_of(request, who)
    if request.query_params.get("saved") and "notice" not in context:
        context["notice"] = text("saved", lang)
    return render("user.html", lang, status=status, who=who, user=view, memberships=groups, **context)


@router.get("/users/{user_id}")
async def user_page(request: Request, who: CallerDep, scope: ScopeDep, user_id: UserId) -> HTMLResponse:
    view = await run_in_threadpool(scope.user, user_id)
    if view is None:
        raise Problem(404, "not_found")
    return await user_page_for(request, who, scope, view)


@router.post("/users")
async def create_form(
    request: Request, who: SessionCallerDep, scope: ScopeDep, c: ConsoleDep, login: FormText, name: FormText,
    role: FormText = "worker", language: FormText = "ja", time_zone: FormText = "", csrf: FormText = "",
) -> Response:  # fmt: skip
    require_admin(scope)
    values = {"login": login.strip(), "name": name, "role": role, "language": language,
              "time_zone": zone_or_tenant(time_zone)}  # fmt: skip
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        user_id, link = await run_in_threadpool(
            lambda: user_admin.create(
                c.engine, who.principal.tenant, values, actor,
                base_url=c.settings.web_base_url, ttl_s=c.settings.web_setup_code_ttl_s,
            )
        )  # fmt: skip
    except (AccountError, user_admin.LoginTaken) as exc:
        raise change_problem(exc) from None
    view = await run_in_threadpool(scope.user, user_id)
    assert view is not None
    lang = lang_of(request, who)
    hours = c.settings.web_setup_code_ttl_s // 3600
    notice = text("users_created", lang, hours=hours)
    return await user_page_for(request, who, scope, view, status=201, notice=notice, link=link)


@router.post("/users/{user_id}")
async def edit_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, user_id: UserId, name: FormText,
    role: FormText, language: FormText, time_zone: FormText = "", csrf: FormText = "",
) -> Response:  # fmt: skip
    changes = {"name": name, "role": role, "language": language, "time_zone": zone_or_tenant(time_zone)}
    await apply_change(c, who, scope, user_id, changes, address(request))
    return RedirectResponse(f"/users/{user_id}?saved=1", status_code=303)


@router.post("/users/{user_id}/enabled")
async def enabled_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, user_id: UserId, enabled: FormText,
    csrf: FormText = "",
) -> Response:  # fmt: skip
    if enabled not in ("0", "1"):
        await target(scope, user_id)
        raise change_problem(AccountError(f"enabled: expected 0 or 1, got {enabled[:20]!r}"))
    await apply_change(c, who, scope, user_id, {"enabled": enabled == "1"}, address(request))
    return RedirectResponse(f"/users/{user_id}?saved=1", status_code=303)


@router.post("/users/{user_id}/setup-link")
async def reset_form(
    request: Request,
    who: SessionCallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    user_id: UserId,
    csrf: FormText = "",
) -> Response:
    view = await target(scope, user_id)
    link = await reset_link(c, who, user_id, address(request))
    lang = lang_of(request, who)
    notice = text("users_reset_done", lang, hours=c.settings.web_setup_code_ttl_s // 3600)
    return await user_page_for(request, who, scope, view, notice=notice, link=link)
