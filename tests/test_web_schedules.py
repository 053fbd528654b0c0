"""Schedules in the console (API and pages): group patterns, exceptions and holidays in a user's plan,
audited changes with rollup markers, CSV import all-or-nothing with a per-row report, ja and en."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from storage.calendars import GROUP_SCHEDULES
from storage.models import Group
from storage.planning import RollupDirty
from tests.web_world import World, make_world
from workers.analytics_store import SCHEDULES

API = "/api/v1"


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def group_id(world: World, name: str) -> int:
    with Session(world.engine) as s:
        return int(s.execute(select(col(Group.id)).where(col(Group.name) == name)).scalar_one())


def audit_of(world: World, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    with Session(world.engine) as s:
        rows = s.execute(
            select(col(AuditEntry.actor), col(AuditEntry.target), col(AuditEntry.detail))
            .where(col(AuditEntry.action) == action)
            .order_by(col(AuditEntry.seq))
        ).all()
    return [(a, t, dict(d)) for a, t, d in rows]


def count(world: World, table: Any) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


async def test_plan_follows_group_pattern_user_exception_and_japanese_holiday(world: World) -> None:
    """Alice gives sales Mon-Fri 09:00-18:00 and wataru a dated exception; wataru's plan shows the
    group's days, the exception, and Coming of Age Day as a holiday (its Japanese name)."""
    alice, csrf = await world.signed_in("alice")
    sales = group_id(world, "sales")
    for weekday in range(5):
        answer = await alice.post(
            f"{API}/groups/{sales}/schedule",
            json={"weekday": weekday, "start": "09:00", "end": "18:00"},
            headers={"X-CSRF-Token": csrf},
        )
        assert answer.status_code == 201, answer.text
    answer = await alice.post(
        f"{API}/users/{world.ids['wataru']}/schedule",
        json={"day": "2027-01-13", "start": "13:00", "end": "22:00"},
        headers={"X-CSRF-Token": csrf},
    )
    assert answer.status_code == 201
    entry = answer.json()
    assert entry == {
        "id": entry["id"],
        "weekday": None,
        "day": "2027-01-13",
        "start": "13:00:00",
        "end": "22:00:00",
        "valid_from": None,
        "valid_to": None,
    }
    wataru, _ = await world.signed_in("wataru")
    plan = await wataru.get(
        f"{API}/users/{world.ids['wataru']}/plan", params={"first": "2027-01-10", "last": "2027-01-13"}
    )
    assert plan.status_code == 200
    assert plan.json() == {
        "user_id": world.ids["wataru"],
        "time_zone": "Asia/Tokyo",
        "days": [
            {"day": "2027-01-11", "start": None, "end": None, "source": "holiday", "holiday": "成人の日"},
            {
                "day": "2027-01-12",
                "start": "09:00:00",
                "end": "18:00:00",
                "source": "group_weekly",
                "holiday": None,
            },
            {
                "day": "2027-01-13",
                "start": "13:00:00",
                "end": "22:00:00",
                "source": "user_exception",
                "holiday": None,
            },
        ],
    }
    wendy, _ = await world.signed_in("wendy")
    no_plan = await wendy.get(
        f"{API}/users/{world.ids['wendy']}/plan", params={"first": "2027-01-12", "last": "2027-01-12"}
    )
    assert no_plan.json()["days"] == []  # ops has no pattern
    too_long = await wataru.get(
        f"{API}/users/{world.ids['wataru']}/plan", params={"first": "2027-01-01", "last": "2027-03-31"}
    )
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "schedules_bad_range"


async def test_changes_are_audited_old_to_new_and_mark_rollups(world: World) -> None:
    """Adding and removing an entry: schedule.add (None -> new) and schedule.remove (old -> None) by
    alice about user:<id>, from her address; a past day's change leaves a rollup marker for wataru."""
    alice, csrf = await world.signed_in("alice", address="192.0.2.44")
    user = world.ids["wataru"]
    answer = await alice.post(
        f"{API}/users/{user}/schedule", json={"day": "2027-01-12"}, headers={"X-CSRF-Token": csrf}
    )
    entry = answer.json()["id"]
    removed = await alice.delete(f"{API}/users/{user}/schedule/{entry}", headers={"X-CSRF-Token": csrf})
    assert removed.status_code == 204
    again = await alice.delete(f"{API}/users/{user}/schedule/{entry}", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 404
    actor = f"user:{world.ids['alice']}"
    assert audit_of(world, "schedule.add") == [
        (
            actor,
            f"user:{user}",
            {"source": "192.0.2.44", "changes": {"day": [None, "2027-01-12"]}, "entry": entry},
        )
    ]
    assert audit_of(world, "schedule.remove") == [
        (
            actor,
            f"user:{user}",
            {"source": "192.0.2.44", "changes": {"day": ["2027-01-12", None]}, "entry": entry},
        )
    ]
    with Session(world.engine) as s:
        marks = s.execute(select(col(RollupDirty.user_id))).scalars().all()
    assert marks == [user, user]


async def test_bad_entries_get_clear_422s_and_roles_are_enforced(world: World) -> None:
    """Inconsistent entries name the field; an offset time is refused; mika reads sales, changes nothing."""
    alice, csrf = await world.signed_in("alice")
    user = world.ids["wataru"]
    h = {"X-CSRF-Token": csrf}
    both = await alice.post(
        f"{API}/users/{user}/schedule", json={"weekday": 1, "day": "2027-01-12"}, headers=h
    )
    assert (both.status_code, both.json()["error"]) == (422, "schedules_bad_entry")
    assert "exactly one of a weekday" in both.json()["message"]
    half = await alice.post(f"{API}/users/{user}/schedule", json={"weekday": 1, "start": "09:00"}, headers=h)
    assert half.json()["message"] == (
        "This schedule entry cannot be used: end: expected both a start and an end time, "
        "or neither (a day off)."
    )
    offset = await alice.post(
        f"{API}/users/{user}/schedule", json={"weekday": 1, "start": "09:00+09:00", "end": "10:00"}, headers=h
    )
    assert offset.status_code == 422
    mika, mcsrf = await world.signed_in("mika")
    sales = group_id(world, "sales")
    read = await mika.get(f"{API}/groups/{sales}/schedule")
    assert read.json() == {
        "kind": "group",
        "id": sales,
        "time_zone": "Asia/Tokyo",
        "may_change": False,
        "weekly": [],
        "exceptions": [],
    }
    refused = await mika.post(
        f"{API}/groups/{sales}/schedule", json={"weekday": 0}, headers={"X-CSRF-Token": mcsrf}
    )
    assert refused.status_code == 403
    assert count(world, SCHEDULES) == 0 and count(world, GROUP_SCHEDULES) == 0


async def test_holidays_public_and_own_and_the_calendar_choice(world: World) -> None:
    """Acme observes Japanese holidays; its own holiday is added once (409 twice), listed, removed;
    choosing no public calendar empties the public list."""
    alice, csrf = await world.signed_in("alice")
    h = {"X-CSRF-Token": csrf}
    made = await alice.post(f"{API}/holidays", json={"day": "2027-08-13", "name": "Obon"}, headers=h)
    assert made.status_code == 201
    nul = await alice.post(f"{API}/holidays", json={"day": "2027-08-14", "name": "O\u0000bon"}, headers=h)
    assert (nul.status_code, nul.json()["error"]) == (422, "schedules_bad_holiday_name")
    twice = await alice.post(f"{API}/holidays", json={"day": "2027-08-13", "name": "Obon"}, headers=h)
    assert (twice.status_code, twice.json()["message"]) == (409, "2027-08-13 already has a holiday.")
    listed = (await alice.get(f"{API}/holidays", params={"year": "2027"})).json()
    assert (listed["year"], listed["country"], len(listed["public"])) == (2027, "JP", 17)
    assert listed["public"][0] == {"day": "2027-01-01", "name": "元日"}
    assert listed["own"] == [{"id": made.json()["id"], "day": "2027-08-13", "name": "Obon"}]
    assert (await alice.put(f"{API}/holidays/calendar", json={"country": None}, headers=h)).json() == {
        "country": None
    }
    assert (await alice.get(f"{API}/holidays")).json()["public"] == []
    assert (await alice.delete(f"{API}/holidays/{made.json()['id']}", headers=h)).status_code == 204
    assert (await alice.get(f"{API}/holidays")).json()["own"] == []
    assert [t for _, t, _ in audit_of(world, "holiday.calendar")] == ["tenant:acme"]
    assert audit_of(world, "holiday.calendar")[0][2]["changes"] == {"country": ["JP", None]}
    bob, _ = await world.signed_in("bob")
    assert (await bob.get(f"{API}/holidays", params={"year": "2027"})).json()[
        "country"
    ] is None  # beta is in UTC


BAD_CSV = (
    "\ufeffkind,user,group,weekday,date,start,end\r\n"
    "weekly,wataru,,mon,,09:00,18:00\r\n"
    "weekly,nobody,,tue,,09:00,18:00\r\n"
    "exception,,sales,,2027/2/30,,\r\n"
).encode()
GOOD_CSV = (
    "\ufeffkind,user,group,weekday,date,start,end,valid_from\r\n"
    "weekly,wataru,,月,,09:00,18:00,2027/1/1\r\n"
    "weekly,,sales,fri,,10:00,19:00,\r\n"
    "exception,,sales,,2027/1/22,,,\r\n"
).encode()


async def test_csv_import_stores_nothing_when_a_row_fails_and_everything_when_all_pass(world: World) -> None:
    """A file with an unknown login and an impossible date: 422 listing both, nothing stored; a good
    file (BOM, Japanese weekday, Excel dates): 200, three entries stored and audited."""
    alice, csrf = await world.signed_in("alice")
    h = {"X-CSRF-Token": csrf}
    bad = await alice.post(
        f"{API}/schedules/import", files={"file": ("s.csv", BAD_CSV, "text/csv")}, headers=h
    )
    assert bad.status_code == 422
    assert bad.json() == {
        "stored": 0,
        "error_count": 1,
        "errors": [
            {
                "row": 4,
                "column": "date",
                "expected": "a date that exists, like 2027-01-20",
                "got": "2027/2/30",
            }
        ],
    }
    names = BAD_CSV.replace(b"2027/2/30", b"2027/2/3")
    unknown = await alice.post(
        f"{API}/schedules/import", files={"file": ("s.csv", names, "text/csv")}, headers=h
    )
    assert unknown.json()["errors"] == [
        {"row": 3, "column": "user", "expected": "the login of a user of this organisation", "got": "nobody"}
    ]
    assert count(world, SCHEDULES) == 0 and count(world, GROUP_SCHEDULES) == 0
    good = await alice.post(
        f"{API}/schedules/import", files={"file": ("s.csv", GOOD_CSV, "text/csv")}, headers=h
    )
    assert good.status_code == 200
    assert good.json() == {"stored": 3, "error_count": 0, "errors": []}
    sched = (await alice.get(f"{API}/groups/{group_id(world, 'sales')}/schedule")).json()
    assert [(e["weekday"], e["start"]) for e in sched["weekly"]] == [(4, "10:00:00")]
    assert [(e["day"], e["start"]) for e in sched["exceptions"]] == [("2027-01-22", None)]
    mine = (await alice.get(f"{API}/users/{world.ids['wataru']}/schedule")).json()
    assert [(e["weekday"], e["valid_from"]) for e in mine["weekly"]] == [(0, "2027-01-01")]
    assert len(audit_of(world, "schedule.add")) == 3
    assert audit_of(world, "schedule.import")[0][2] == {
        "source": "192.0.2.10",
        "rows": 3,
        "users": 1,
        "groups": 1,
    }
    big = b"kind,user\n" + b"x" * 70_000
    assert (
        await alice.post(f"{API}/schedules/import", files={"file": ("s.csv", big, "text/csv")}, headers=h)
    ).status_code == 413


async def test_pages_in_japanese_and_english(world: World) -> None:
    """Alice adds an exception through the page (303), sees it and the plan in Japanese; in English the
    holiday page names Coming of Age Day; a bad form value re-shows the page with the problem (422)."""
    alice, csrf = await world.signed_in("alice")
    user = world.ids["wataru"]
    added = await alice.post(
        f"/schedules/users/{user}",
        data={"kind": "exception", "day": "2027-01-20", "start": "08:00", "end": "12:00", "csrf": csrf},
    )
    assert (added.status_code, added.headers["location"]) == (303, f"/schedules/users/{user}?added=1")
    page = await alice.get(f"/schedules/users/{user}?added=1")
    assert page.status_code == 200
    assert "Wataru の勤務予定" not in page.text and "wataru の勤務予定" in page.text
    assert "追加しました。" in page.text and "08:00\u201312:00" in page.text and "本人の例外" in page.text
    bad = await alice.post(f"/schedules/users/{user}", data={"kind": "weekly", "weekday": "9", "csrf": csrf})
    assert bad.status_code == 422 and "weekday: a weekday from 0 (Monday) to 6 (Sunday)" in bad.text
    h = {"X-CSRF-Token": csrf}
    assert (await alice.patch(f"{API}/me", json={"language": "en"}, headers=h)).status_code == 200
    holidays = await alice.get("/holidays", params={"year": "2027"})
    assert "Holidays of 2027" in holidays.text and "Coming of Age Day" in holidays.text
    report = await alice.post(
        "/schedules/import", data={"csrf": csrf}, files={"file": ("s.csv", BAD_CSV, "text/csv")}
    )
    assert report.status_code == 422
    assert "Nothing was stored: 1 problem(s)." in report.text and "2027/2/30" in report.text
    listing = await alice.get("/schedules")
    assert f'href="/schedules/users/{user}"' in listing.text and "Import a CSV" in listing.text


async def test_replacing_an_entry_is_audited_old_to_new(world: World) -> None:
    """PUT replaces sales' Monday 09-18 by 10-19: one schedule.change entry with exactly the changed
    times; an inconsistent replacement is 422 and leaves the entry as it was."""
    alice, csrf = await world.signed_in("alice")
    h = {"X-CSRF-Token": csrf}
    sales = group_id(world, "sales")
    made = await alice.post(
        f"{API}/groups/{sales}/schedule", json={"weekday": 0, "start": "09:00", "end": "18:00"}, headers=h
    )
    entry = made.json()["id"]
    put = await alice.put(
        f"{API}/groups/{sales}/schedule/{entry}",
        json={"weekday": 0, "start": "10:00", "end": "19:00"},
        headers=h,
    )
    assert put.status_code == 200
    assert (put.json()["id"], put.json()["start"], put.json()["end"]) == (entry, "10:00:00", "19:00:00")
    bad = await alice.put(
        f"{API}/groups/{sales}/schedule/{entry}", json={"weekday": 0, "start": "10:00"}, headers=h
    )
    assert bad.status_code == 422
    weekly = (await alice.get(f"{API}/groups/{sales}/schedule")).json()["weekly"]
    assert [(e["id"], e["start"], e["end"]) for e in weekly] == [(entry, "10:00:00", "19:00:00")]
    assert audit_of(world, "schedule.change") == [
        (
            f"user:{world.ids['alice']}",
            f"group:{sales}",
            {
                "source": "192.0.2.10",
                "entry": entry,
                "changes": {"start": ["09:00:00", "10:00:00"], "end": ["18:00:00", "19:00:00"]},
            },
        )
    ]
