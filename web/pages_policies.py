"""The data policy page (administrators): ``/policies`` shows and sets the tenant's retention
period and legal hold, and the users under legal hold; ``/policies/holds/{user_id}`` places or
releases one user's hold (forms, post/redirect/get; audited as the API's changes are)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from storage import policies
from web.api import MAX_ID
from web.api_policies import admin_only, apply_change, policy_out
from web.audit import user_actor
from web.console import Console
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.i18n import text
from web.pages import lang_of, render
from web.scope import Scope

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=100)]


def retention_field(raw: str) -> int | None:
    """Pure: the period typed in the form (empty: the service's); ValueError for anything but digits."""
    clean = raw.strip()
    if not clean:
        return None
    if not (clean.isascii() and clean.isdigit()) or len(clean) > 6:  # not '¹' or '٣'
        raise ValueError(f"retention_days: expected a whole number of days, got {clean[:20]!r}")
    return int(clean)


async def _page(
    request: Request, who: Caller, c: Console, scope: Scope, status: int = 200, error: str | None = None
) -> HTMLResponse:
    lang = lang_of(request, who)
    view = await run_in_threadpool(policy_out, c.settings, scope)
    users = await run_in_threadpool(scope.users, "", 200, 0)
    held = {u.id for u in view.held_users}
    notice = text("policies_saved", lang) if request.query_params.get("saved") else None
    return render(
        "policies.html", lang, status=status, who=who, policy=view, users=users, held=held,
        notice=notice, error=error,
    )  # fmt: skip


@router.get("/policies")
async def policies_page(request: Request, who: CallerDep, c: ConsoleDep, scope: ScopeDep) -> HTMLResponse:
    admin_only(scope)
    return await _page(request, who, c, scope)


@router.post("/policies")
async def policies_form(
    request: Request,
    who: CallerDep,
    c: ConsoleDep,
    scope: ScopeDep,
    retention_days: FormText = "",
    legal_hold: FormText = "",
    csrf: FormText = "",
) -> Response:
    """The period (empty: the service's) and the tenant's hold (``on`` / ``off``; other: unchanged)."""
    admin_only(scope)
    lang = lang_of(request, who)
    fields: dict[str, object] = {}
    try:
        fields["retention_days"] = retention_field(retention_days)
    except ValueError as exc:
        return await _page(request, who, c, scope, 422, text("policies_bad", lang, reason=exc))
    if legal_hold in ("on", "off"):
        fields["legal_hold"] = legal_hold == "on"
    try:
        await run_in_threadpool(
            apply_change, c.settings, scope, fields, user_actor(who.principal.user_id), address(request)
        )
    except policies.PolicyError as exc:
        return await _page(request, who, c, scope, 422, text("policies_bad", lang, reason=exc))
    return RedirectResponse("/policies?saved=1", status_code=303)


@router.post("/policies/holds/{user_id}")
async def hold_form(
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    legal_hold: FormText = "",
    csrf: FormText = "",
) -> Response:
    """Place (``legal_hold=on``) or release (``off``) one user's legal hold."""
    if await run_in_threadpool(scope.user, user_id) is None:
        raise Problem(404, "not_found")
    admin_only(scope)
    if legal_hold not in ("on", "off"):
        raise Problem(422, "bad_value", reason="legal_hold: expected on or off")
    await run_in_threadpool(
        lambda: policies.set_user_hold(
            scope.engine, scope.principal.tenant, user_id, legal_hold == "on",
            actor=user_actor(who.principal.user_id), source=address(request),
        )
    )  # fmt: skip
    return RedirectResponse("/policies?saved=1", status_code=303)
