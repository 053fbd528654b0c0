"""The REST API of groups: list, one group, create, rename, delete; members and managers.

An administrator sees and changes every group of the tenant; a manager sees the groups they manage
(with only the people their scope shows) and changes nothing (403); a worker sees no group (an id
is 404, as for one nobody has). Adding or removing a person answers 204 whether or not it changed
anything (the audit log has an entry only for a change).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from storage.account_rules import AccountError
from web import user_admin
from web.api import ERRORS, MAX_ID, PREFIX, ErrorOut, Strict
from web.api_users import require_admin
from web.deps import CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.groups import MAX_GROUP_NAME, GroupError, Groups, GroupView

router = APIRouter(prefix=PREFIX, responses=ERRORS)
GroupId = Annotated[int, Path(ge=1, le=MAX_ID)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
GROUP_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such group (or user) in the caller's scope"},
    409: {"model": ErrorOut, "description": "the name is taken, or the group is in use"},
    422: {"model": ErrorOut, "description": "a value is refused"},
}


class GroupBody(Strict):
    name: str = Field(min_length=1, max_length=MAX_GROUP_NAME)


class PersonOut(BaseModel):
    id: int
    login: str
    name: str


class GroupSummaryOut(BaseModel):
    id: int
    name: str
    members: int


class GroupList(BaseModel):
    groups: list[GroupSummaryOut]


class GroupOut(BaseModel):
    id: int
    name: str
    members: list[PersonOut]
    managers: list[PersonOut]


def group_out(view: GroupView) -> GroupOut:
    return GroupOut(
        id=view.id,
        name=view.name,
        members=[PersonOut(**p.__dict__) for p in view.members],
        managers=[PersonOut(**p.__dict__) for p in view.managers],
    )


def group_problem(exc: Exception) -> Problem:
    if isinstance(exc, GroupError):
        return Problem(422 if exc.code == "groups_not_manager" else 409, exc.code)
    return Problem(422, "bad_value", reason=str(exc))


async def visible(groups: Groups, group_id: int) -> GroupView:
    view = await run_in_threadpool(groups.get, group_id)
    if view is None:
        raise Problem(404, "not_found")
    return view


@router.get("/groups")
async def list_groups(scope: ScopeDep) -> GroupList:
    """The groups the caller may see, by name, with how many of their members the caller may see."""
    rows = await run_in_threadpool(Groups(scope).summaries)
    return GroupList(groups=[GroupSummaryOut(**g.__dict__) for g in rows])


@router.post("/groups", status_code=201, responses=GROUP_ERRORS)
async def create_group(
    body: GroupBody, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> GroupOut:
    """Create a group (administrators)."""
    require_admin(scope)
    groups = Groups(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        group_id = await run_in_threadpool(groups.create, body.name, actor)
    except (AccountError, GroupError) as exc:
        raise group_problem(exc) from None
    return group_out(await visible(groups, group_id))


@router.get("/groups/{group_id}", responses=GROUP_ERRORS)
async def get_group(group_id: GroupId, scope: ScopeDep) -> GroupOut:
    """One group the caller may see, with the members and managers the caller may see."""
    return group_out(await visible(Groups(scope), group_id))


@router.patch("/groups/{group_id}", responses=GROUP_ERRORS)
async def rename_group(
    group_id: GroupId, body: GroupBody, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> GroupOut:
    """Rename a group (administrators)."""
    groups = Groups(scope)
    await visible(groups, group_id)
    require_admin(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        await run_in_threadpool(groups.rename, group_id, body.name, actor)
    except (AccountError, GroupError) as exc:
        raise group_problem(exc) from None
    return group_out(await visible(groups, group_id))


@router.delete("/groups/{group_id}", status_code=204, responses=GROUP_ERRORS)
async def delete_group(
    group_id: GroupId, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Delete a group with its memberships and its agent settings (administrators)."""
    groups = Groups(scope)
    await visible(groups, group_id)
    require_admin(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        await run_in_threadpool(groups.delete, group_id, actor)
    except GroupError as exc:
        raise group_problem(exc) from None
    return Response(status_code=204)


async def set_person(
    group_id: int, user_id: int, role: str, present: bool, request: Request, who: CallerDep, scope: ScopeDep,
    c: ConsoleDep,
) -> None:  # fmt: skip
    """Add or remove a member or manager: 404 unless both are visible, 403 unless an administrator."""
    groups = Groups(scope)
    await visible(groups, group_id)
    if await run_in_threadpool(scope.user, user_id) is None:
        raise Problem(404, "not_found")
    require_admin(scope)
    actor = user_admin.actor_of(who.principal.user_id, address(request), c.clock)
    try:
        await run_in_threadpool(groups.set_person, group_id, user_id, role, present, actor)
    except GroupError as exc:
        raise group_problem(exc) from None


@router.put("/groups/{group_id}/members/{user_id}", status_code=204, responses=GROUP_ERRORS)
async def add_member(
    group_id: GroupId, user_id: UserId, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Make the user a member of the group (administrators)."""
    await set_person(group_id, user_id, "member", True, request, who, scope, c)
    return Response(status_code=204)


@router.delete("/groups/{group_id}/members/{user_id}", status_code=204, responses=GROUP_ERRORS)
async def remove_member(
    group_id: GroupId, user_id: UserId, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Take the user out of the group (administrators)."""
    await set_person(group_id, user_id, "member", False, request, who, scope, c)
    return Response(status_code=204)


@router.put("/groups/{group_id}/managers/{user_id}", status_code=204, responses=GROUP_ERRORS)
async def add_manager(
    group_id: GroupId, user_id: UserId, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Assign the group to a user with the manager role (administrators)."""
    await set_person(group_id, user_id, "manager", True, request, who, scope, c)
    return Response(status_code=204)


@router.delete("/groups/{group_id}/managers/{user_id}", status_code=204, responses=GROUP_ERRORS)
async def remove_manager(
    group_id: GroupId, user_id: UserId, request: Request, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> Response:
    """Take the group from one of its managers (administrators)."""
    await set_person(group_id, user_id, "manager", False, request, who, scope, c)
    return Response(status_code=204)
