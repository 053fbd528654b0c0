"""The console's groups pages: the list (and a new group), one group with its members and managers.

An administrator gets the forms: create, rename, delete, add or remove a member or a manager (the
choices are the tenant's users; a manager must have the manager role). A manager sees the groups
they manage and their members; a worker sees an empty list. Each form answers 303 (post/redirect/get);
a refusal is the message page with the status of the API's answer (:mod:`web.api_groups`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from storage.account_rules import AccountError
from web import user_admin
from web.api import MAX_ID
from web.api_groups import group_problem, set_person, visible
from web.api_users import require_admin
from web.console import Console
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.groups import Groups
from web.i18n import text
from web.pages import lang_of, render
from web.scope import MAX_PAGE, Scope

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=1000)]
GroupId = Annotated[int, Path(ge=1, le=MAX_ID)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


def form_id(value: str) -> int:
    """Pure: a user id of a form's ``<select>``; Problem 422 naming what was expected."""
    if not (value.isascii() and value.isdecimal()) or not 1 <= int(value) <= MAX_ID:
        raise Problem(422, "bad_value", reason=f"user: expected a user id, got {value[:20]!r}")
    return int(value)


@router.get("/groups")
async def groups_page(request: Request, who: CallerDep, scope: ScopeDep) -> HTMLResponse:
    rows = await run_in_threadpool(Groups(scope).summaries)
    lang = lang_of(request, who)
    notice = text("groups_deleted", lang) if request.query_params.get("deleted") else None
    return render("groups.html", lang, who=who, groups=rows, notice=notice)


@router.post("/groups")
async def create_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, name: FormText, csrf: FormText = ""
) -> Response:
    require_admin(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        group_id = await run_in_threadpool(Groups(scope).create, name, actor)
    except (AccountError, ValueError) as exc:
        raise group_problem(exc) from None
    return RedirectResponse(f"/groups/{group_id}", status_code=303)


@router.get("/groups/{group_id}")
async def group_page(request: Request, who: CallerDep, scope: ScopeDep, group_id: GroupId) -> HTMLResponse:
    groups = Groups(scope)
    view = await visible(groups, group_id)
    choices = await run_in_threadpool(scope.users, "", MAX_PAGE, 0) if who.principal.role == "admin" else []
    lang = lang_of(request, who)
    notice = text("saved", lang) if request.query_params.get("saved") else None
    return render("group.html", lang, who=who, group=view, choices=choices, notice=notice)


@router.post("/groups/{group_id}")
async def rename_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, group_id: GroupId, name: FormText,
    csrf: FormText = "",
) -> Response:  # fmt: skip
    groups = Groups(scope)
    await visible(groups, group_id)
    require_admin(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        await run_in_threadpool(groups.rename, group_id, name, actor)
    except (AccountError, ValueError) as exc:
        raise group_problem(exc) from None
    return RedirectResponse(f"/groups/{group_id}?saved=1", status_code=303)


@router.post("/groups/{group_id}/delete")
async def delete_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, group_id: GroupId, csrf: FormText = ""
) -> Response:
    groups = Groups(scope)
    await visible(groups, group_id)
    require_admin(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        await run_in_threadpool(groups.delete, group_id, actor)
    except ValueError as exc:
        raise group_problem(exc) from None
    return RedirectResponse("/groups?deleted=1", status_code=303)


async def _add(
    request: Request, who: Caller, scope: Scope, c: Console, group_id: int, role: str, user: str
) -> Response:
    await set_person(group_id, form_id(user), role, True, request, who, scope, c)
    return RedirectResponse(f"/groups/{group_id}?saved=1", status_code=303)


async def _remove(
    request: Request, who: Caller, scope: Scope, c: Console, group_id: int, role: str, user_id: int
) -> Response:
    await set_person(group_id, user_id, role, False, request, who, scope, c)
    return RedirectResponse(f"/groups/{group_id}?saved=1", status_code=303)


@router.post("/groups/{group_id}/members")
async def add_member_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, group_id: GroupId, user: FormText,
    csrf: FormText = "",
) -> Response:  # fmt: skip
    return await _add(request, who, scope, c, group_id, "member", user)


@router.post("/groups/{group_id}/managers")
async def add_manager_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, group_id: GroupId, user: FormText,
    csrf: FormText = "",
) -> Response:  # fmt: skip
    return await _add(request, who, scope, c, group_id, "manager", user)


@router.post("/groups/{group_id}/members/{user_id}/remove")
async def remove_member_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, group_id: GroupId, user_id: UserId,
    csrf: FormText = "",
) -> Response:  # fmt: skip
    return await _remove(request, who, scope, c, group_id, "member", user_id)


@router.post("/groups/{group_id}/managers/{user_id}/remove")
async def remove_manager_form(
    request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep, group_id: GroupId, user_id: UserId,
    csrf: FormText = "",
) -> Response:  # fmt: skip
    return await _remove(request, who, scope, c, group_id, "manager", user_id)
