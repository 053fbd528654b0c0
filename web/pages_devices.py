"""The devices pages: the list (with the administrator's issue form) and one device (with rotate,
revoke and reassign); times in the principal's time zone, texts in :mod:`web.texts_devices`.

A new or rotated token is shown once, on the page answering the POST (never stored, never in a
redirect); revoke and reassign answer 303 to the device's page (post/redirect/get).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from storage.account_rules import refused_character
from web.api import MAX_ID
from web.api_devices import DeviceId
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.devices import DeviceRefused, DeviceRow, Devices, DeviceView, with_live
from web.i18n import text
from web.pages import lang_of, render
from web.scope import Scope

FormText = Annotated[str, Form(max_length=1000)]
FormLogin = Annotated[str, Form(max_length=1000)]
PAGE = 100  # devices per page
DONE = {
    "revoked": "devices_revoked_done",
    "already": "devices_already_revoked",
    "reassigned": "devices_reassigned",
}
T = TypeVar("T")

router = APIRouter(include_in_schema=False)


def shown(moment: datetime | None, zone: str) -> str:
    """Pure: ``moment`` in time zone ``zone`` as ``YYYY-MM-DD HH:MM``; empty for None."""
    if moment is None:
        return ""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _context(who: Caller) -> dict[str, Any]:
    zone = who.principal.time_zone
    return {"when": lambda moment: shown(moment, zone), "admin": who.principal.role == "admin"}


async def _views(c: ConsoleDep, who: Caller, rows: list[DeviceRow]) -> list[DeviceView]:
    return await with_live(c.redis, who.principal.tenant, rows)


async def _list_page(
    request: Request,
    who: Caller,
    scope: Scope,
    c: ConsoleDep,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
    offset: int = 0,
) -> HTMLResponse:
    rows = await run_in_threadpool(Devices(scope).rows, PAGE + 1, offset)
    views = await _views(c, who, rows[:PAGE])
    lang = lang_of(request, who)
    if error is None and any(not v.live_known for v in views):
        error = text("devices_live_unknown", lang)
    pages = {
        "offset": offset,
        "previous": max(offset - PAGE, 0),
        "next": offset + PAGE,
        "more": len(rows) > PAGE,
    }
    return render(
        "devices.html", lang, status=status, who=who, devices=views, form=form or {}, pages=pages,
        error=error, **_context(who),
    )  # fmt: skip


async def _device_page(
    request: Request, who: Caller, scope: Scope, c: ConsoleDep, row: DeviceRow, **extra: Any
) -> HTMLResponse:
    (view,) = await _views(c, who, [row])
    return render("device.html", lang_of(request, who), who=who, device=view, **_context(who), **extra)


def _user_id(scope: Scope, login: str) -> int:
    """The id of the visible user of ``login`` (0, which no user has, when there is none)."""
    if refused_character(login) is not None:
        return 0
    return scope.user_id_of(login.strip()) or 0


async def _act(action: Callable[[], T]) -> T:
    try:
        return await run_in_threadpool(action)
    except DeviceRefused as exc:
        raise Problem(exc.status, exc.code) from None


@router.get("/devices")
async def devices_page(
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> HTMLResponse:
    return await _list_page(request, who, scope, c, offset=offset)


@router.get("/devices/{device_id}")
async def device_page(
    request: Request, device_id: DeviceId, who: CallerDep, scope: ScopeDep, c: ConsoleDep
) -> HTMLResponse:
    row = await run_in_threadpool(Devices(scope).row, device_id)
    if row is None:
        raise Problem(404, "not_found")
    done = DONE.get(request.query_params.get("done", ""))
    notice = None if done is None else text(done, lang_of(request, who))
    return await _device_page(request, who, scope, c, row, notice=notice)


@router.post("/devices")
async def issue_form(
    request: Request,
    who: CallerDep,
    scope: ScopeDep,
    c: ConsoleDep,
    device_id: FormText,
    login: FormLogin,
    csrf: FormText = "",
) -> Response:
    devices = Devices(scope)
    try:
        source = address(request)
        row, token = await run_in_threadpool(
            lambda: devices.issue(device_id.strip(), _user_id(scope, login), source)
        )
    except DeviceRefused as exc:
        if exc.status == 403:
            raise Problem(exc.status, exc.code) from None
        error = text(exc.code, lang_of(request, who))
        form = {"device_id": device_id, "login": login}
        return await _list_page(request, who, scope, c, exc.status, error=error, form=form)
    notice = text("devices_issued", lang_of(request, who), id=row.id)
    return await _device_page(request, who, scope, c, row, token=token, notice=notice)


@router.post("/devices/{device_id}/token")
async def rotate_form(
    request: Request, device_id: DeviceId, who: CallerDep, scope: ScopeDep, c: ConsoleDep, csrf: FormText = ""
) -> Response:
    row, token = await _act(lambda: Devices(scope).rotate(device_id, address(request)))
    notice = text("devices_rotated", lang_of(request, who), id=row.id)
    return await _device_page(request, who, scope, c, row, token=token, notice=notice)


@router.post("/devices/{device_id}/revoke")
async def revoke_form(
    request: Request, device_id: DeviceId, who: CallerDep, scope: ScopeDep, csrf: FormText = ""
) -> Response:
    _row, changed = await _act(lambda: Devices(scope).revoke(device_id, address(request)))
    done = "revoked" if changed else "already"
    return RedirectResponse(f"/devices/{device_id}?done={done}", status_code=303)


@router.post("/devices/{device_id}/reassign")
async def reassign_form(
    request: Request,
    device_id: DeviceId,
    who: CallerDep,
    scope: ScopeDep,
    login: FormLogin,
    csrf: FormText = "",
) -> Response:
    await _act(lambda: Devices(scope).reassign(device_id, _user_id(scope, login), address(request)))
    return RedirectResponse(f"/devices/{device_id}?done=reassigned", status_code=303)
