"""The tasks API under ``/api/v1/tasks``: what the tenant offers its workers, changed by an administrator.

Everyone of the tenant reads the list (a worker punches these tasks); an administrator creates,
renames, deactivates and reactivates them (others: 403; another tenant's task: 404). Each
change is stored and audited (:mod:`storage.tasks`), then announced to the gateways
(:func:`push_tasks`), which send every open agent session of the tenant the new list, as
``telework admin task`` does.
"""

from __future__ import annotations

import logging
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from realtime.tenant_tasks import publish_tasks
from storage import tasks as store
from web.api import MAX_ID, PREFIX, ErrorOut, Strict
from web.audit import user_actor
from web.deps import CallerDep, ConsoleDep, Problem, ScopeDep, address

log = logging.getLogger(__name__)

router = APIRouter(prefix=f"{PREFIX}/tasks", tags=["tasks"])
CHANGE: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorOut, "description": "not an administrator"},
    422: {"model": ErrorOut, "description": "a name that cannot be used, or too many tasks"},
}


class TaskOut(BaseModel):
    id: int
    name: str
    active: bool  # offered to the workers


class TaskList(BaseModel):
    tasks: list[TaskOut]
    pushed: bool | None = None  # after a change: announced to the gateways (False: at next connection)


class TaskCreate(Strict):
    name: str = Field(min_length=1, max_length=store.MAX_TASK_NAME)


class TaskChange(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=store.MAX_TASK_NAME)
    active: bool | None = None


async def push_tasks(engine: Engine, redis: aioredis.Redis, tenant: str) -> bool:
    """Announce the tenant's offered tasks to every gateway; False (logged) when Redis is away."""
    offered = await run_in_threadpool(store.active_tasks, engine, tenant)
    try:
        await publish_tasks(redis, tenant, offered)
    except (RedisError, OSError) as exc:
        log.warning("task list not pushed", extra={"tenant": tenant, "error": str(exc)})
        return False
    return True


def listing(engine: Engine, tenant: str, pushed: bool | None = None) -> TaskList:
    return TaskList(tasks=[TaskOut(**t.__dict__) for t in store.tenant_tasks(engine, tenant)], pushed=pushed)


@router.get("")
async def list_tasks(scope: ScopeDep) -> TaskList:
    """Every task of the tenant, offered or not."""
    return await run_in_threadpool(listing, scope.engine, scope.principal.tenant)


@router.post("", status_code=201, responses=CHANGE)
async def create_task(body: TaskCreate, request: Request, who: CallerDep, c: ConsoleDep) -> TaskList:
    """Offer a task (a deactivated one of that name is offered again); pushed to the agents."""
    p = who.principal
    if p.role != "admin":
        raise Problem(403, "forbidden")
    try:
        changed = await run_in_threadpool(
            lambda: store.create_task(
                c.engine, p.tenant, body.name, actor=user_actor(p.user_id), source=address(request)
            )
        )
    except store.TaskError as exc:
        raise Problem(422, "bad_value", reason=str(exc)) from None
    pushed = await push_tasks(c.engine, c.redis, p.tenant) if changed else None
    return await run_in_threadpool(listing, c.engine, p.tenant, pushed)


@router.patch("/{task_id}", responses={**CHANGE, 404: {"model": ErrorOut}})
async def change_task(
    task_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: TaskChange,
    request: Request,
    who: CallerDep,
    c: ConsoleDep,
) -> TaskList:
    """Rename (``name``), deactivate or reactivate (``active``) a task; pushed to the agents."""
    p = who.principal
    if await run_in_threadpool(store.find_task, c.engine, p.tenant, task_id) is None:
        raise Problem(404, "not_found")
    if p.role != "admin":
        raise Problem(403, "forbidden")
    changed = await run_in_threadpool(
        lambda: change(c.engine, p.tenant, task_id, body, who, address(request))
    )
    pushed = await push_tasks(c.engine, c.redis, p.tenant) if changed else None
    return await run_in_threadpool(listing, c.engine, p.tenant, pushed)


def change(engine: Engine, tenant: str, task_id: int, body: TaskChange, who: CallerDep, source: str) -> bool:
    """Apply a rename and/or a change of state (Problem 422 for a refused one); whether anything changed."""
    actor = user_actor(who.principal.user_id)
    changed = False
    try:
        if body.name is not None:
            changed = store.rename_task(engine, tenant, task_id, body.name, actor=actor, source=source)
        if body.active is not None:
            changed = (
                store.set_task_active(engine, tenant, task_id, body.active, actor=actor, source=source)
                or changed
            )
    except store.TaskError as exc:
        raise Problem(422, "bad_value", reason=str(exc)) from None
    return changed
