"""The access matrix of the schedules routes (pages and API): see ``tests/access_matrix.py``.

A user's schedule is wataru's (a member of mika's group ``sales``): the administrator may change
it, mika and wataru may read it (403 on changes), wendy and tenant beta cannot see it (404). A
group's schedule is that of ``sales``: mika reads it, the workers see no group (404). Holidays
belong to the tenant: everyone of it reads them, only administrators change them (beta's bob
changes beta's: 201/200/303); another tenant's holiday is 404. A CSV import naming acme's wataru
is stored for alice and refused row by row for bob (422: no such login in beta).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import date, time, timedelta
from typing import Any

import httpx
from sqlalchemy import insert, select
from starlette.concurrency import run_in_threadpool

from storage.calendars import GROUP_SCHEDULES, TENANT_HOLIDAYS
from storage.models import Group
from storage.planning import Schedule
from tests.access_matrix import Call, Case, everyone, expect
from tests.web_world import World

API = "/api/v1"
USER_ROWS = Schedule.__table__  # type: ignore[attr-defined]
CREATED = date(2027, 1, 1)
_days = itertools.count()
MARK = "acme-holiday-"  # every holiday made here


def fresh_day() -> date:
    """A day no other case used (holidays are unique per tenant and day)."""
    return date(2031, 1, 1) + timedelta(days=next(_days))


def _insert(world: World, table: Any, values: dict[str, object]) -> int:
    with world.engine.begin() as conn:
        return int(conn.execute(insert(table).values(values).returning(table.c.id)).scalar_one())


def sales(world: World) -> int:
    with world.engine.connect() as conn:
        c = Group.__table__.c  # type: ignore[attr-defined]
        return int(conn.execute(select(c.id).where(c.tenant_id == "acme", c.name == "sales")).scalar_one())


ENTRY = {
    "tenant_id": "acme",
    "weekday": 0,
    "start_time": time(9),
    "end_time": time(18),
    "created_at": CREATED,
}


async def user_entry(world: World) -> int:
    values = {**ENTRY, "user_id": world.ids["wataru"]}
    return await run_in_threadpool(_insert, world, USER_ROWS, values)


async def group_entry(world: World) -> tuple[int, int]:
    group = await run_in_threadpool(sales, world)
    return group, await run_in_threadpool(_insert, world, GROUP_SCHEDULES, {**ENTRY, "group_id": group})


async def holiday(world: World) -> int:
    values = {
        "tenant_id": "acme",
        "day": fresh_day(),
        "name": MARK + uuid.uuid4().hex[:8],
        "created_at": CREATED,
    }
    return await run_in_threadpool(_insert, world, TENANT_HOLIDAYS, values)


async def on_user(world: World) -> Call:
    await user_entry(world)
    return Call(path={"user_id": world.ids["wataru"]})


async def on_user_entry(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"], "entry_id": await user_entry(world)})


async def on_group(world: World) -> Call:
    group, _ = await group_entry(world)
    return Call(path={"group_id": group})


async def on_group_entry(world: World) -> Call:
    group, entry = await group_entry(world)
    return Call(path={"group_id": group, "entry_id": entry})


async def replace_user_entry(world: World) -> Call:
    call = await on_user_entry(world)
    return Call(path=call.path, json=NEW_ENTRY)


async def replace_group_entry(world: World) -> Call:
    call = await on_group_entry(world)
    return Call(path=call.path, json=NEW_ENTRY)


async def plan(world: World) -> Call:
    await user_entry(world)
    return Call(path={"user_id": world.ids["wataru"]}, query={"first": "2027-01-04", "last": "2027-01-17"})


NEW_ENTRY = {"weekday": 2, "start": "10:00", "end": "19:00"}
NEW_FORM = {"kind": "weekly", "weekday": "2", "start": "10:00", "end": "19:00"}


async def add_user_json(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]}, json=NEW_ENTRY)


async def add_user_form(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]}, data=NEW_FORM)


async def add_group_json(world: World) -> Call:
    return Call(path={"group_id": await run_in_threadpool(sales, world)}, json=NEW_ENTRY)


async def add_group_form(world: World) -> Call:
    return Call(path={"group_id": await run_in_threadpool(sales, world)}, data=NEW_FORM)


async def listed_holiday(world: World) -> Call:
    await holiday(world)
    return Call(query={"year": "2031"})


async def on_holiday(world: World) -> Call:
    return Call(path={"holiday_id": await holiday(world)})


async def new_holiday_json(world: World) -> Call:
    return Call(json={"day": fresh_day().isoformat(), "name": "Founding day"})


async def new_holiday_form(world: World) -> Call:
    return Call(data={"day": fresh_day().isoformat(), "name": "Founding day"})


async def calendar_json(world: World) -> Call:
    return Call(json={"country": "JP"})


async def calendar_form(world: World) -> Call:
    return Call(data={"country": "JP"})


CSV = b"kind,user,weekday,start,end\r\nweekly,wataru,thu,09:00,17:00\r\n"


async def csv_upload(world: World) -> Call:
    return Call(files={"file": ("schedule.csv", CSV, "text/csv")})


def shows_wataru(call: Call, answer: httpx.Response) -> bool:
    """The answer names acme's wataru."""
    return "wataru" in answer.text.lower()


def shows_holiday(call: Call, answer: httpx.Response) -> bool:
    """The answer names a holiday of acme made here."""
    return MARK in answer.text


CHANGE_USER = expect(admin=201, manager=403, own=403, other=404)
SET_USER = expect(admin=200, manager=403, own=403, other=404)
SET_GROUP = expect(admin=200, manager=403, own=404, other=404)
REMOVE_USER = expect(admin=204, manager=403, own=403, other=404)
CHANGE_GROUP = expect(admin=201, manager=403, own=404, other=404)
REMOVE_GROUP = expect(admin=204, manager=403, own=404, other=404)
IMPORT = expect(admin=200, manager=403, own=403, other=403, beta=(422, 403, 403))
READ = expect(admin=200, manager=200, own=200, other=404)
GROUP_READ = expect(admin=200, manager=200, own=404, other=404)
TENANT_ADMIN = expect(admin=200, manager=403, own=403, other=403, beta=(200, 403, 403))


def page(statuses: dict[str, int]) -> dict[str, int]:
    return {**statuses, "anon": 303}


CASES = [
    Case("GET", API + "/users/{user_id}/schedule", READ, on_user),
    Case("POST", API + "/users/{user_id}/schedule", CHANGE_USER, add_user_json),
    Case("PUT", API + "/users/{user_id}/schedule/{entry_id}", SET_USER, replace_user_entry),
    Case("DELETE", API + "/users/{user_id}/schedule/{entry_id}", REMOVE_USER, on_user_entry),
    Case("GET", API + "/users/{user_id}/plan", READ, plan),
    Case("GET", API + "/groups/{group_id}/schedule", GROUP_READ, on_group),
    Case("POST", API + "/groups/{group_id}/schedule", CHANGE_GROUP, add_group_json),
    Case("PUT", API + "/groups/{group_id}/schedule/{entry_id}", SET_GROUP, replace_group_entry),
    Case("DELETE", API + "/groups/{group_id}/schedule/{entry_id}", REMOVE_GROUP, on_group_entry),
    Case("GET", API + "/holidays", everyone(200, anon=401), listed_holiday, leaks=shows_holiday),
    Case(
        "POST",
        API + "/holidays",
        expect(admin=201, manager=403, own=403, other=403, beta=(201, 403, 403)),
        new_holiday_json,
    ),
    Case(
        "DELETE",
        API + "/holidays/{holiday_id}",
        expect(admin=204, manager=403, own=403, other=403),
        on_holiday,
    ),
    Case("PUT", API + "/holidays/calendar", TENANT_ADMIN, calendar_json),
    Case("POST", API + "/schedules/import", IMPORT, csv_upload, leaks=shows_wataru),
    Case("GET", "/schedules", everyone(200, anon=303), on_user, leaks=shows_wataru),
    Case("GET", "/schedules/users/{user_id}", page(READ), on_user),
    Case(
        "POST",
        "/schedules/users/{user_id}",
        page(expect(admin=303, manager=403, own=403, other=404)),
        add_user_form,
    ),
    Case(
        "POST",
        "/schedules/users/{user_id}/{entry_id}/delete",
        page(expect(admin=303, manager=403, own=403, other=404)),
        on_user_entry,
    ),
    Case("GET", "/schedules/groups/{group_id}", page(GROUP_READ), on_group),
    Case(
        "POST",
        "/schedules/groups/{group_id}",
        page(expect(admin=303, manager=403, own=404, other=404)),
        add_group_form,
    ),
    Case(
        "POST",
        "/schedules/groups/{group_id}/{entry_id}/delete",
        page(expect(admin=303, manager=403, own=404, other=404)),
        on_group_entry,
    ),
    Case("GET", "/holidays", everyone(200, anon=303), listed_holiday, leaks=shows_holiday),
    Case(
        "POST",
        "/holidays",
        page(expect(admin=303, manager=403, own=403, other=403, beta=(303, 403, 403))),
        new_holiday_form,
    ),
    Case(
        "POST",
        "/holidays/{holiday_id}/delete",
        page(expect(admin=303, manager=403, own=403, other=403)),
        on_holiday,
    ),
    Case(
        "POST",
        "/holidays/calendar",
        page(expect(admin=303, manager=403, own=403, other=403, beta=(303, 403, 403))),
        calendar_form,
    ),
    Case(
        "GET",
        "/schedules/import",
        page(TENANT_ADMIN),
    ),
    Case(
        "POST",
        "/schedules/import",
        page(expect(admin=200, manager=403, own=403, other=403, beta=(422, 403, 403))),
        csv_upload,
        leaks=shows_wataru,
    ),
]
