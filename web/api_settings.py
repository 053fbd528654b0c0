"""The agent settings API under ``/api/v1/settings``: each level's effective values and sources;
changes by an administrator, stored with their history and audit entry and pushed live.

Who may do what: an administrator reads and changes the tenant, every group and every user;
a manager reads the groups they manage and the users they see (403 on a change); a worker
reads their own effective values (403 on a change). A group or user out of the caller's scope
is 404. A value out of its bounds is 422 naming the setting and its range (the model's bounds,
as the CLI's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from realtime.protocol.agent_settings import SettingsError
from web import settings_view as sv
from web.api import MAX_ID, PREFIX, ErrorOut, Strict
from web.audit import user_actor
from web.deps import CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.scope import Scope

Value = StrictInt | StrictFloat | Annotated[StrictStr, Field(max_length=64)]
SettingName = Annotated[str, Field(max_length=64)]
MAX_FIELDS = 32  # settings named in one change (there are fewer)
MAX_HISTORY = 500  # changes in one history answer

router = APIRouter(prefix=f"{PREFIX}/settings", tags=["settings"])
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "not in scope"}}
CHANGE: dict[int | str, dict[str, object]] = {
    **NOT_FOUND,
    403: {"model": ErrorOut, "description": "not an administrator"},
    422: {"model": ErrorOut, "description": "a value out of its bounds"},
}


class FieldOut(BaseModel):
    field: str
    description: str
    default: int | float | str
    allowed: str
    minimum: float | None
    maximum: float | None
    choices: list[str] | None


class FieldsOut(BaseModel):
    fields: list[FieldOut]


class SettingOut(BaseModel):
    field: str
    value: int | float | str  # effective
    source: str  # default | tenant | group NAME | user
    here: int | float | str | None  # set at this level (None: inherited)
    allowed: str


class LevelOut(BaseModel):
    level: str
    target_id: int | None
    name: str
    settings: list[SettingOut]
    changed: list[str] | None = None  # after a change: the fields that changed
    pushed: bool | None = None  # after a change: announced to the gateways (False: at next connection)


class HistoryOut(BaseModel):
    changed_at: datetime
    actor: str  # user:<id> from the console, cli:<OS user> from the command line
    level: str
    target: str  # the group's name or the user's login at the time ("" for the tenant)
    field: str
    old: int | float | str | None  # None: not set at that level
    new: int | float | str | None


class HistoryList(BaseModel):
    changes: list[HistoryOut]  # newest first


class SettingsChange(Strict):
    values: dict[SettingName, Value] = Field(default_factory=dict, max_length=MAX_FIELDS)
    unset: list[SettingName] = Field(default_factory=list, max_length=MAX_FIELDS)


def level_out(view: sv.LevelView, changed: list[str] | None = None, pushed: bool | None = None) -> LevelOut:
    rows = [SettingOut(**r.__dict__) for r in view.rows]
    return LevelOut(
        level=view.level,
        target_id=view.target_id,
        name=view.name,
        settings=rows,
        changed=changed,
        pushed=pushed,
    )


def admin_only(scope: Scope) -> None:
    if scope.principal.role != "admin":
        raise Problem(403, "forbidden")


async def apply(
    request: Request, who: CallerDep, c: ConsoleDep, scope: ScopeDep, view: sv.LevelView, body: SettingsChange
) -> tuple[list[str], bool | None]:
    """Store ``body`` at ``view``'s level and push it; (changed fields, pushed or None if nothing changed)."""
    try:
        done = await run_in_threadpool(
            lambda: sv.change(
                scope, view.level, view.name or None, body.values, body.unset,
                actor=user_actor(who.principal.user_id), source=address(request),
            )
        )  # fmt: skip
    except SettingsError as exc:
        raise Problem(422, "bad_value", reason=str(exc)) from None
    if not done:
        return [], None
    return [d.field for d in done], await sv.push(c.engine, c.redis, scope.principal.tenant)


@router.get("/fields")
async def get_fields(who: CallerDep) -> FieldsOut:
    """Every agent setting: meaning, service default, and what it accepts."""
    return FieldsOut(fields=[FieldOut(**{**f.__dict__, "choices": f.choices}) for f in sv.field_infos()])


@router.get("/history", responses={403: {"model": ErrorOut}})
async def get_history(
    scope: ScopeDep, limit: Annotated[int, Query(ge=1, le=MAX_HISTORY)] = 50
) -> HistoryList:
    """The tenant's recorded settings changes, newest first (administrators)."""
    admin_only(scope)
    entries = await run_in_threadpool(sv.recent_changes, scope.engine, scope.principal.tenant, limit)
    return HistoryList(changes=[HistoryOut(**e.__dict__) for e in entries])


@router.get("/tenant", responses={403: {"model": ErrorOut}})
async def get_tenant(scope: ScopeDep) -> LevelOut:
    """The tenant's level (administrators): what it sets and the values a user without overrides gets."""
    admin_only(scope)
    return level_out(await run_in_threadpool(sv.tenant_view, scope.engine, scope.principal.tenant))


@router.patch("/tenant", responses=CHANGE)
async def patch_tenant(
    body: SettingsChange, request: Request, who: CallerDep, c: ConsoleDep, scope: ScopeDep
) -> LevelOut:
    """Set (``values``) or stop overriding (``unset``) settings for the whole tenant; pushed live."""
    admin_only(scope)
    view = await run_in_threadpool(sv.tenant_view, scope.engine, scope.principal.tenant)
    changed, pushed = await apply(request, who, c, scope, view, body)
    after = await run_in_threadpool(sv.tenant_view, scope.engine, scope.principal.tenant)
    return level_out(after, changed, pushed)


@router.get("/groups/{group_id}", responses=NOT_FOUND)
async def get_group(group_id: Annotated[int, Path(ge=1, le=MAX_ID)], scope: ScopeDep) -> LevelOut:
    """A group's level: what it sets, and what a member of only this group gets."""
    view = await run_in_threadpool(sv.group_view, scope, group_id)
    if view is None:
        raise Problem(404, "not_found")
    return level_out(view)


@router.patch("/groups/{group_id}", responses=CHANGE)
async def patch_group(
    group_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: SettingsChange,
    request: Request,
    who: CallerDep,
    c: ConsoleDep,
    scope: ScopeDep,
) -> LevelOut:
    """Change a group's settings (administrators); its members' agents get them live."""
    view = await run_in_threadpool(sv.group_view, scope, group_id)
    if view is None:
        raise Problem(404, "not_found")
    admin_only(scope)
    changed, pushed = await apply(request, who, c, scope, view, body)
    after = await run_in_threadpool(sv.group_view, scope, group_id)
    assert after is not None
    return level_out(after, changed, pushed)


@router.get("/users/{user_id}", responses=NOT_FOUND)
async def get_user(user_id: Annotated[int, Path(ge=1, le=MAX_ID)], scope: ScopeDep) -> LevelOut:
    """A user's effective settings, where each comes from, and what they override."""
    view = await run_in_threadpool(sv.user_view, scope, user_id)
    if view is None:
        raise Problem(404, "not_found")
    return level_out(view)


@router.patch("/users/{user_id}", responses=CHANGE)
async def patch_user(
    user_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: SettingsChange,
    request: Request,
    who: CallerDep,
    c: ConsoleDep,
    scope: ScopeDep,
) -> LevelOut:
    """Change one user's settings (administrators); their agents get them live."""
    view = await run_in_threadpool(sv.user_view, scope, user_id)
    if view is None:
        raise Problem(404, "not_found")
    admin_only(scope)
    changed, pushed = await apply(request, who, c, scope, view, body)
    after = await run_in_threadpool(sv.user_view, scope, user_id)
    assert after is not None
    return level_out(after, changed, pushed)
