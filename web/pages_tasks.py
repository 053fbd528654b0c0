"""The tasks page: ``/tasks`` lists what the tenant offers; administrators add, rename,
deactivate and reactivate tasks (forms, post/redirect/get), each change pushed to the agents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from storage import tasks as store
from web.api import MAX_ID
from web.api_tasks import TaskChange, change, push_tasks
from web.audit import user_actor
from web.console import Console
from web.deps import Caller, CallerDep, ConsoleDep, Problem, address
from web.i18n import text
from web.pages import lang_of, render

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=1000)]


async def _page(
    request: Request, who: Caller, c: Console, status: int = 200, error: str | None = None
) -> HTMLResponse:
    lang = lang_of(request, who)
    tasks = await run_in_threadpool(store.tenant_tasks, c.engine, who.principal.tenant)
    notice = text("tasks_saved", lang) if request.query_params.get("saved") else None
    return render("tasks.html", lang, status=status, who=who, tasks=tasks, notice=notice, error=error)


@router.get("/tasks")
async def tasks_page(request: Request, who: CallerDep, c: ConsoleDep) -> HTMLResponse:
    return await _page(request, who, c)


@router.post("/tasks")
async def create_form(
    request: Request, who: CallerDep, c: ConsoleDep, name: FormText, csrf: FormText = ""
) -> Response:
    p = who.principal
    if p.role != "admin":
        raise Problem(403, "forbidden")
    try:
        changed = await run_in_threadpool(
            lambda: store.create_task(
                c.engine, p.tenant, name, actor=user_actor(p.user_id), source=address(request)
            )
        )
    except store.TaskError as exc:
        return await _page(request, who, c, 422, text("tasks_bad", lang_of(request, who), reason=exc))
    if changed:
        await push_tasks(c.engine, c.redis, p.tenant)
    return RedirectResponse("/tasks?saved=1", status_code=303)


@router.post("/tasks/{task_id}")
async def change_form(
    request: Request,
    who: CallerDep,
    c: ConsoleDep,
    task_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    name: FormText = "",
    active: FormText = "",
    csrf: FormText = "",
) -> Response:
    """A rename (``name``) or a change of state (``active``: ``1`` offer, ``0`` stop)."""
    p = who.principal
    if await run_in_threadpool(store.find_task, c.engine, p.tenant, task_id) is None:
        raise Problem(404, "not_found")
    if p.role != "admin":
        raise Problem(403, "forbidden")
    lang = lang_of(request, who)
    try:
        body = TaskChange(name=name if name.strip() else None, active={"1": True, "0": False}.get(active))
    except ValidationError:
        return await _page(request, who, c, 422, text("tasks_bad", lang, reason=name[:50]))
    try:
        changed = await run_in_threadpool(
            lambda: change(c.engine, p.tenant, task_id, body, who, address(request))
        )
    except Problem as exc:
        return await _page(request, who, c, 422, text("tasks_bad", lang, reason=exc.facts.get("reason", "")))
    if changed:
        await push_tasks(c.engine, c.redis, p.tenant)
    return RedirectResponse("/tasks?saved=1", status_code=303)
