"""The agent settings pages: ``/settings`` (the tenant's level, or one's own effective values),
``/settings/groups/{id}`` and ``/settings/users/{id}``, each with its form for administrators.

A form holds one field per setting: a value sets it at that level, an empty field stops
overriding it (inherit). Values are parsed and checked as the CLI's flags are
(:func:`realtime.protocol.agent_settings.parse_value`); a bad one re-shows the form (422) with
the reason, nothing stored. A change is pushed live to the agents (post/redirect/get).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from realtime.protocol.agent_settings import FIELDS, SettingsError, SettingValue, parse_value, value_text
from storage.agent_settings_store import HistoryEntry
from web import settings_view as sv
from web.api import MAX_ID
from web.audit import user_actor
from web.deps import Caller, CallerDep, ConsoleDep, Problem, ScopeDep, address
from web.i18n import Language, text
from web.pages import lang_of, render
from web.scope import Scope

router = APIRouter(include_in_schema=False)
GroupId = Annotated[int, Path(ge=1, le=MAX_ID)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]
HISTORY_SHOWN = 20  # recent changes on the tenant's page


def source_text(source: str, lang: Language) -> str:
    """Pure: ``group sales`` -> "group sales" in ``lang``; default, tenant, user likewise."""
    if source.startswith("group "):
        return text("settings_source_group", lang, name=source[6:])
    return text(f"settings_source_{source}", lang)


def local_time(moment: datetime, zone: str) -> str:
    """Pure: ``moment`` as ``YYYY-MM-DD HH:MM`` in time zone ``zone`` (UTC when it is unknown)."""
    try:
        where: tzinfo = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        where = UTC
    return moment.astimezone(where).strftime("%Y-%m-%d %H:%M")


def history_row(entry: HistoryEntry, zone: str) -> dict[str, str]:
    """Pure: one recorded change as the page shows it (time in ``zone``)."""
    where = entry.level if not entry.target else f"{entry.level} {entry.target}"
    return {
        "when": local_time(entry.changed_at, zone), "actor": entry.actor, "where": where,
        "field": entry.field, "old": value_text(entry.old), "new": value_text(entry.new),
    }  # fmt: skip


def form_changes(
    form: dict[str, str], current: dict[str, SettingValue | None]
) -> tuple[dict[str, SettingValue], list[str]]:
    """Pure: a settings form -> (values to set, fields to unset); SettingsError for a bad value.

    An empty field unsets a value set at this level; a field equal to what is set is no change."""
    values: dict[str, SettingValue] = {}
    unset: list[str] = []
    for field in FIELDS:
        raw = form.get(field, "").strip()
        if not raw:
            if current.get(field) is not None:
                unset.append(field)
            continue
        value = parse_value(field, raw)
        if value != current.get(field):
            values[field] = value
    return values, unset


def _visible_lists(scope: Scope) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    with Session(scope.engine) as s:
        groups = [(g.id or 0, g.name) for g in s.execute(scope.visible_groups()).scalars()]
    users = [(u.id, u.login) for u in scope.users(limit=200)]
    return sorted(groups, key=lambda g: g[1]), users


async def _page(
    request: Request,
    who: Caller,
    scope: Scope,
    view: sv.LevelView,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    lang = lang_of(request, who)
    groups, users = await run_in_threadpool(_visible_lists, scope)
    notice = None
    if request.query_params.get("saved"):
        notice = text(
            "settings_saved" if request.query_params["saved"] == "1" else "settings_saved_not_pushed", lang
        )
    elif request.query_params.get("same"):
        notice = text("settings_unchanged", lang)
    if view.level == "tenant":
        title, action = text("settings_tenant", lang), "/settings"
    elif view.level == "group":
        title, action = text("settings_group", lang, name=view.name), f"/settings/groups/{view.target_id}"
    else:
        title, action = text("settings_user", lang, name=view.name), f"/settings/users/{view.target_id}"
    rows = [
        {
            "field": r.field,
            "value": value_text(r.value),
            "source": source_text(r.source, lang),
            "here": "" if r.here is None else value_text(r.here),
            "allowed": r.allowed,
        }
        for r in view.rows
    ]
    changes = []
    if view.level == "tenant" and who.principal.role == "admin":
        recent = await run_in_threadpool(
            sv.recent_changes, scope.engine, scope.principal.tenant, HISTORY_SHOWN
        )
        changes = [history_row(e, who.principal.time_zone) for e in recent]
    return render(
        "settings.html", lang, status=status, who=who, title=title, action=action, rows=rows,
        editable=who.principal.role == "admin",
        changes=changes, groups=groups, users=users, notice=notice, error=error,
    )  # fmt: skip


async def _save(request: Request, who: Caller, c: ConsoleDep, scope: Scope, view: sv.LevelView) -> Response:
    if who.principal.role != "admin":
        raise Problem(403, "forbidden")
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str) and len(v) <= 100}
    current = {r.field: r.here for r in view.rows}
    try:
        values, unset = form_changes(form, current)
        actor, source = user_actor(who.principal.user_id), address(request)
        done = []
        if values or unset:
            done = await run_in_threadpool(
                lambda: sv.change(
                    scope, view.level, view.name or None, values, unset, actor=actor, source=source
                )
            )
    except SettingsError as exc:
        lang = lang_of(request, who)
        return await _page(request, who, scope, view, 422, text("settings_bad", lang, reason=exc))
    base = str(request.url.path)
    if not done:
        return RedirectResponse(f"{base}?same=1", status_code=303)
    pushed = await sv.push(c.engine, c.redis, scope.principal.tenant)
    return RedirectResponse(f"{base}?saved={1 if pushed else 2}", status_code=303)


@router.get("/settings")
async def settings_page(request: Request, who: CallerDep, scope: ScopeDep) -> HTMLResponse:
    """Administrators: the tenant's level; others: their own effective settings."""
    if who.principal.role == "admin":
        view = await run_in_threadpool(sv.tenant_view, scope.engine, scope.principal.tenant)
    else:
        found = await run_in_threadpool(sv.user_view, scope, who.principal.user_id)
        assert found is not None  # one always sees oneself
        view = found
    return await _page(request, who, scope, view)


@router.post("/settings")
async def settings_form(request: Request, who: CallerDep, c: ConsoleDep, scope: ScopeDep) -> Response:
    if who.principal.role != "admin":
        raise Problem(403, "forbidden")
    view = await run_in_threadpool(sv.tenant_view, scope.engine, scope.principal.tenant)
    return await _save(request, who, c, scope, view)


@router.get("/settings/groups/{group_id}")
async def group_page(request: Request, who: CallerDep, scope: ScopeDep, group_id: GroupId) -> HTMLResponse:
    view = await run_in_threadpool(sv.group_view, scope, group_id)
    if view is None:
        raise Problem(404, "not_found")
    return await _page(request, who, scope, view)


@router.post("/settings/groups/{group_id}")
async def group_form(
    request: Request, who: CallerDep, c: ConsoleDep, scope: ScopeDep, group_id: GroupId
) -> Response:
    view = await run_in_threadpool(sv.group_view, scope, group_id)
    if view is None:
        raise Problem(404, "not_found")
    return await _save(request, who, c, scope, view)


@router.get("/settings/users/{user_id}")
async def user_page(request: Request, who: CallerDep, scope: ScopeDep, user_id: UserId) -> HTMLResponse:
    view = await run_in_threadpool(sv.user_view, scope, user_id)
    if view is None:
        raise Problem(404, "not_found")
    return await _page(request, who, scope, view)


@router.post("/settings/users/{user_id}")
async def user_form(
    request: Request, who: CallerDep, c: ConsoleDep, scope: ScopeDep, user_id: UserId
) -> Response:
    view = await run_in_threadpool(sv.user_view, scope, user_id)
    if view is None:
        raise Problem(404, "not_found")
    return await _save(request, who, c, scope, view)
