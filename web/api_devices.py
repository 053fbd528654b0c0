"""The devices API under ``/api/v1/devices``: list, one device, and the administrator's actions.

Everyone signed in lists the devices they may see (:class:`web.devices.Devices`); an
administrator issues a device for a user (``POST /devices``: its token is in that answer only),
rotates its token (``POST /devices/{id}/token``), revokes it (``POST /devices/{id}/revoke``) and
gives it to another user of the tenant (``PUT /devices/{id}/user``). A device or user out of the
caller's scope is 404; a visible one that the caller's role may not act on is 403.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from core.ids import SLUG_RE
from web.api import ERRORS, MAX_ID, PREFIX, ErrorOut, Strict
from web.deps import ConsoleDep, Problem, ScopeDep, address
from web.devices import DeviceRefused, DeviceRow, Devices, DeviceView, with_live
from web.scope import MAX_PAGE

SLUG = SLUG_RE.pattern
DeviceId = Annotated[str, Path(min_length=1, max_length=63, pattern=SLUG)]
T = TypeVar("T")


class DeviceOut(BaseModel):
    id: str
    name: str
    user_id: int | None
    user_login: str | None
    user_name: str | None
    created_at: datetime
    revoked: bool
    revoked_at: datetime | None
    live_known: bool  # False: the live state could not be read; online, last seen, version unknown
    online: bool | None
    last_seen: datetime | None  # None: never connected (or unknown)
    agent_version: str | None


class DeviceList(BaseModel):
    devices: list[DeviceOut]


class DeviceIssue(Strict):
    id: str = Field(min_length=1, max_length=63, pattern=SLUG, description="the new agent id")
    user_id: int = Field(ge=1, le=MAX_ID, description="the user of the device")


class DeviceUser(Strict):
    user_id: int = Field(ge=1, le=MAX_ID, description="the device's new user, of the same tenant")


class DeviceToken(BaseModel):
    device: DeviceOut
    token: str  # shown in this answer only; stored hashed


class Revoked(BaseModel):
    device: DeviceOut
    changed: bool  # False: it was already revoked


def device_out(view: DeviceView) -> DeviceOut:
    return DeviceOut(**view.__dict__, revoked=view.revoked_at is not None)


MAY_REFUSE: dict[int | str, dict[str, object]] = {
    403: {"model": ErrorOut, "description": "not an administrator (or CSRF token missing or wrong)"},
    404: {"model": ErrorOut, "description": "no such device or user in the caller's scope"},
}

router = APIRouter(prefix=f"{PREFIX}/devices", tags=["devices"], responses=ERRORS)


async def _act(action: Callable[[], T]) -> T:
    try:
        return await run_in_threadpool(action)
    except DeviceRefused as exc:
        raise Problem(exc.status, exc.code) from None


async def _one(c: ConsoleDep, devices: Devices, row: DeviceRow) -> DeviceOut:
    (view,) = await with_live(c.redis, devices.principal.tenant, [row])
    return device_out(view)


@router.get("")
async def list_devices(
    scope: ScopeDep,
    c: ConsoleDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> DeviceList:
    """The devices the caller may see, by id, with online, last seen and agent version."""
    devices = Devices(scope)
    rows = await run_in_threadpool(devices.rows, limit, offset)
    views = await with_live(c.redis, scope.principal.tenant, rows)
    return DeviceList(devices=[device_out(v) for v in views])


@router.get("/{device_id}", responses={404: MAY_REFUSE[404]})
async def get_device(device_id: DeviceId, scope: ScopeDep, c: ConsoleDep) -> DeviceOut:
    """One device the caller may see (404 for any other, of this tenant or another)."""
    devices = Devices(scope)
    row = await run_in_threadpool(devices.row, device_id)
    if row is None:
        raise Problem(404, "not_found")
    return await _one(c, devices, row)


@router.post("", status_code=201, responses={**MAY_REFUSE, 409: {"model": ErrorOut}})
async def issue_device(body: DeviceIssue, request: Request, scope: ScopeDep, c: ConsoleDep) -> DeviceToken:
    """Issue a device for a user (administrators); its token is in this answer only."""
    devices = Devices(scope)
    row, token = await _act(lambda: devices.issue(body.id, body.user_id, address(request)))
    return DeviceToken(device=await _one(c, devices, row), token=token)


@router.post("/{device_id}/token", responses=MAY_REFUSE)
async def rotate_token(device_id: DeviceId, request: Request, scope: ScopeDep, c: ConsoleDep) -> DeviceToken:
    """A new token (administrators): the old one stops working, the agent's open session is closed
    as on a revocation, and a revocation is lifted. The token is in this answer only."""
    devices = Devices(scope)
    row, token = await _act(lambda: devices.rotate(device_id, address(request)))
    return DeviceToken(device=await _one(c, devices, row), token=token)


@router.post("/{device_id}/revoke", responses=MAY_REFUSE)
async def revoke_device(device_id: DeviceId, request: Request, scope: ScopeDep, c: ConsoleDep) -> Revoked:
    """Revoke the device's token (administrators); its agent's open session is closed within seconds."""
    devices = Devices(scope)
    row, changed = await _act(lambda: devices.revoke(device_id, address(request)))
    return Revoked(device=await _one(c, devices, row), changed=changed)


@router.put("/{device_id}/user", responses=MAY_REFUSE)
async def reassign_device(
    device_id: DeviceId, body: DeviceUser, request: Request, scope: ScopeDep, c: ConsoleDep
) -> DeviceOut:
    """Give the device to another user of the same tenant (administrators; 404 for anyone else)."""
    devices = Devices(scope)
    row = await _act(lambda: devices.reassign(device_id, body.user_id, address(request)))
    return await _one(c, devices, row)
