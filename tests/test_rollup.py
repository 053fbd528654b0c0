"""Daily rollups: stored figures of hand-computed days and the incremental worker, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import col

from core.settings import ServerSettings
from storage.accounts import create_tenant, create_user
from storage.models import Tenant
from tests.waiting import wait_until
from workers.analytics import ScheduleDay
from workers.analytics_store import (
    DAILY,
    INCIDENTS,
    INTERVALS,
    SCHEDULES,
    TASKS,
    group_ranges,
    plan_days,
    rebuild_rollups,
    recompute,
)
from workers.intervals_store import ROLLUP_DIRTY, mark_dirty
from workers.rollup import RollupWorker

TOKYO = ZoneInfo("Asia/Tokyo")
MON = date(2026, 3, 2)
TUE, WED, THU, FRI = (MON + timedelta(days=i) for i in range(1, 5))
NOW = datetime(2026, 3, 10, tzinfo=UTC)
_seq = iter(range(1, 1_000_000))


def jst(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TOKYO).astimezone(UTC)


def add_interval(engine: Engine, tenant: str, user: int, kind: str, value: str, start, end) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(INTERVALS).returning(INTERVALS.c.id),
                {
                    "tenant_id": tenant, "agent_id": f"pc-{user}", "user_id": user, "kind": kind,
                    "value": value, "started_at": start, "ended_at": end,
                    "start_event_id": f"e{next(_seq)}", "end_event_id": None,
                    "closed_by": None if end is None else "event",
                },
            ).scalar_one()
        )  # fmt: skip


def add_incident(engine: Engine, tenant: str, user: int, kind: str, at: datetime, updated: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(INCIDENTS),
            {
                "tenant_id": tenant, "agent_id": f"pc-{user}", "user_id": user, "kind": kind,
                "started_at": at, "ended_at": at + timedelta(seconds=5), "evidence": [], "trace": {},
                "source_event_ids": [], "review_status": "unreviewed", "legal_hold": False,
                "created_at": updated, "updated_at": updated,
            },
        )  # fmt: skip


def add_schedule(engine: Engine, tenant: str, user: int, **values: Any) -> None:
    row = {"tenant_id": tenant, "user_id": user, "weekday": None, "day": None, "start_time": None,
           "end_time": None, "valid_from": None, "valid_to": None, "created_at": NOW}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(SCHEDULES), {**row, **values})


def weekdays_nine_to_six(engine: Engine, tenant: str, user: int) -> None:
    for weekday in range(5):
        add_schedule(engine, tenant, user, weekday=weekday, start_time=time(9), end_time=time(18))


def daily(engine: Engine, tenant: str, user: int) -> dict[date, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(DAILY).where(DAILY.c.tenant_id == tenant, DAILY.c.user_id == user))
        return {r["day"]: dict(r) for r in rows.mappings()}


def tasks(engine: Engine, tenant: str, user: int) -> dict[tuple[date, str], tuple[float, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(TASKS).where(TASKS.c.tenant_id == tenant, TASKS.c.user_id == user))
        return {(r["day"], r["task"]): (r["seconds"], r["count"]) for r in rows.mappings()}


def a_week(engine: Engine, tenant: str = "acme") -> int:
    """Mon normal, Tue late + overtime + tasks, Wed absent, Thu night shift into Fri."""
    create_tenant(engine, tenant, "Acme")
    user = create_user(engine, tenant, "hana", "Hana")
    weekdays_nine_to_six(engine, tenant, user)
    add_schedule(engine, tenant, user, day=THU, start_time=time(22), end_time=time(6))
    iv = add_interval
    iv(engine, tenant, user, "duty", "on", jst(MON, 9), jst(MON, 18))
    iv(engine, tenant, user, "presence", "present", jst(MON, 9), jst(MON, 12))
    iv(engine, tenant, user, "presence", "away", jst(MON, 12), jst(MON, 13))
    iv(engine, tenant, user, "presence", "present", jst(MON, 13), jst(MON, 18))
    iv(engine, tenant, user, "duty", "on", jst(TUE, 10, 15), jst(TUE, 20, 30))
    iv(engine, tenant, user, "task", "design", jst(TUE, 10, 15), jst(TUE, 12, 15))
    iv(engine, tenant, user, "task", "review", jst(TUE, 13), jst(TUE, 14))
    iv(engine, tenant, user, "task", "design", jst(TUE, 14), jst(TUE, 15))
    iv(engine, tenant, user, "duty", "on", jst(THU, 22), jst(FRI, 6))
    iv(engine, tenant, user, "presence", "away", jst(THU, 23, 30), jst(FRI, 0, 30))
    add_incident(engine, tenant, user, "peeking", jst(FRI, 1), NOW)
    add_incident(engine, tenant, user, "impersonation", jst(MON, 10), NOW)
    return user


def test_plan_days_dated_entries_override_weekly_ones() -> None:
    """Weekly Mon-Fri 09-18 within validity; a dated night shift and a dated day off win on their dates."""
    rows: list[dict[str, Any]] = [
        {"id": 1, "weekday": 0, "day": None, "start_time": time(9), "end_time": time(18),
         "valid_from": MON, "valid_to": None},
        {"id": 2, "weekday": 1, "day": None, "start_time": time(9), "end_time": time(18),
         "valid_from": None, "valid_to": MON},
        {"id": 3, "weekday": None, "day": WED, "start_time": time(22), "end_time": time(6),
         "valid_from": None, "valid_to": None},
        {"id": 4, "weekday": None, "day": MON + timedelta(days=7), "start_time": None, "end_time": None,
         "valid_from": None, "valid_to": None},
    ]  # fmt: skip
    plan = plan_days(rows, [MON - timedelta(days=7), MON, TUE, WED, MON + timedelta(days=7)])
    assert plan == {
        MON: ScheduleDay(MON, time(9), time(18)),
        WED: ScheduleDay(WED, time(22), time(6)),
        MON + timedelta(days=7): ScheduleDay(MON + timedelta(days=7)),
    }


def test_group_ranges_groups_users_by_dirty_span() -> None:
    """Each user's dirty days collapse to one first..last range; users sharing a range share a group."""
    assert group_ranges([(1, TUE), (2, MON), (1, MON), (3, TUE), (2, TUE)]) == {
        (MON, TUE): [1, 2],
        (TUE, TUE): [3],
    }


def test_recompute_stores_hand_computed_days(engine: Engine) -> None:
    """Normal day, late start with overtime, absence, night shift counted to Thursday, tasks and incidents."""
    user = a_week(engine)
    done = recompute(engine, "acme", [user], MON, FRI, NOW)
    rows = daily(engine, "acme", user)
    assert (done.days, sorted(rows)) == (5, [MON, TUE, WED, THU, FRI])
    mon, tue, wed, thu, fri = (rows[d] for d in (MON, TUE, WED, THU, FRI))
    assert (mon["worked_s"], mon["present_s"], mon["away_s"], mon["late_start_s"], mon["overtime_s"]) == (
        32400, 28800, 3600, 0, 0,
    )  # fmt: skip
    assert (mon["impersonation_count"], mon["peeking_count"], mon["absent"]) == (1, 0, False)
    assert (tue["worked_s"], tue["late_start_s"], tue["early_end_s"], tue["overtime_s"]) == (
        36900,
        4500,
        0,
        9000,
    )
    assert (wed["absent"], wed["worked_s"], wed["planned_s"]) == (True, 0, 32400)
    assert (thu["worked_s"], thu["away_s"], thu["peeking_count"], thu["late_start_s"]) == (28800, 3600, 1, 0)
    assert (fri["worked_s"], fri["absent"], fri["planned_s"]) == (0, True, 32400)
    last_end = thu["last_end"].replace(tzinfo=UTC) if thu["last_end"].tzinfo is None else thu["last_end"]
    assert last_end == jst(FRI, 6)
    assert tasks(engine, "acme", user) == {(TUE, "design"): (10800, 2), (TUE, "review"): (3600, 1)}


def test_recompute_replaces_rows_idempotently(engine: Engine) -> None:
    """Recomputing the same days twice leaves the same rows (no duplicates, no increments)."""
    user = a_week(engine)
    recompute(engine, "acme", [user], MON, FRI, NOW)
    first = {d: (r["worked_s"], r["absent"]) for d, r in daily(engine, "acme", user).items()}
    recompute(engine, "acme", [user], MON, FRI, NOW)
    again = {d: (r["worked_s"], r["absent"]) for d, r in daily(engine, "acme", user).items()}
    assert first == again and len(tasks(engine, "acme", user)) == 2


def test_rebuild_rejects_a_reversed_period(engine: Engine) -> None:
    """A backfill from a later to an earlier day is refused with both days named."""
    with pytest.raises(ValueError, match=r"2026-03-06 \.\. 2026-03-02"):
        rebuild_rollups(engine, "acme", FRI, MON)


def settings(database_url: str, tmp_path: Path, **extra: object) -> ServerSettings:
    values = {"database_url": database_url, "data_dir": tmp_path, "rollup_interval_s": 0.05, **extra}
    return ServerSettings.model_validate(values)


def test_worker_recomputes_new_closed_and_ended_days(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """Catch-up; a new open shift, its closing, an incident, a new plan and a day's end update rollups."""
    create_tenant(engine, "acme", "Acme")
    hana = create_user(engine, "acme", "hana", "Hana")
    ken = create_user(engine, "acme", "ken", "Ken")
    weekdays_nine_to_six(engine, "acme", ken)
    add_interval(engine, "acme", hana, "duty", "on", jst(MON, 9), jst(MON, 17))
    worker = RollupWorker(settings(database_url, tmp_path, rollup_catchup_days=1), engine)

    worker.cycle(jst(TUE, 8))  # catch-up of Mon and Tue for both users
    assert daily(engine, "acme", hana)[MON]["worked_s"] == 28800
    assert daily(engine, "acme", ken)[MON]["absent"] is True

    duty = add_interval(engine, "acme", hana, "duty", "on", jst(TUE, 9), None)
    assert worker.cycle(jst(TUE, 10)) > 0
    assert daily(engine, "acme", hana)[TUE]["worked_s"] == 3600  # open shift clipped at now
    worker.cycle(jst(TUE, 11))
    assert daily(engine, "acme", hana)[TUE]["worked_s"] == 7200  # still open: recomputed each cycle

    with engine.begin() as conn:
        conn.execute(update(INTERVALS).where(INTERVALS.c.id == duty).values(ended_at=jst(TUE, 10, 30)))
    worker.cycle(jst(TUE, 12))
    assert daily(engine, "acme", hana)[TUE]["worked_s"] == 5400

    add_incident(engine, "acme", hana, "peeking", jst(TUE, 10), updated=jst(TUE, 12, 1))
    worker.cycle(jst(TUE, 12, 2))
    assert daily(engine, "acme", hana)[TUE]["peeking_count"] == 1

    assert daily(engine, "acme", ken)[TUE]["absent"] is False  # not yet: the planned end is ahead
    add_schedule(engine, "acme", hana, day=TUE, start_time=time(8), end_time=time(10))
    worker.cycle(jst(TUE, 12, 3))  # a new dated plan for Tuesday: 08:00-10:00 against 09:00-10:30
    tue = daily(engine, "acme", hana)[TUE]
    assert (tue["late_start_s"], tue["overtime_s"], tue["planned_s"]) == (3600, 1800, 7200)
    worker.cycle(jst(WED, 0, 5))  # Tuesday ended: computed for everyone
    assert daily(engine, "acme", ken)[TUE]["absent"] is True


def test_an_end_moved_in_place_reaches_the_rollup_through_the_builders_marker(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """A closed interval edited in place (no new row) is recomputed from its marker; the marker goes."""
    create_tenant(engine, "acme", "Acme")
    hana = create_user(engine, "acme", "hana", "Hana")
    duty = add_interval(engine, "acme", hana, "duty", "on", jst(MON, 9), jst(MON, 17))
    worker = RollupWorker(settings(database_url, tmp_path, rollup_catchup_days=1), engine)
    worker.cycle(jst(TUE, 8))
    assert daily(engine, "acme", hana)[MON]["worked_s"] == 28800

    with engine.begin() as conn:  # what the builder does when a late event moves an end
        conn.execute(update(INTERVALS).where(INTERVALS.c.id == duty).values(ended_at=jst(MON, 18)))
        mark_dirty(conn, "acme", hana, jst(MON, 9))
    worker.cycle(jst(TUE, 9))
    assert daily(engine, "acme", hana)[MON]["worked_s"] == 32400
    with engine.connect() as conn:
        assert conn.execute(select(ROLLUP_DIRTY.c.id)).all() == []


async def test_worker_loop_stops_cleanly(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """run() cycles until stop is set, then returns promptly."""
    create_tenant(engine, "acme", "Acme")
    user = create_user(engine, "acme", "hana", "Hana")
    now = datetime.now(UTC)
    add_interval(engine, "acme", user, "duty", "on", now - timedelta(hours=2), now - timedelta(hours=1))
    worker = RollupWorker(settings(database_url, tmp_path), engine)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await wait_until(lambda: worker.days_computed > 0, timeout=10, what="a first rollup cycle")
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert sum(r["worked_s"] for r in daily(engine, "acme", user).values()) == 3600


def test_a_tenant_with_a_bad_time_zone_does_not_stop_the_others(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """A tenant whose time zone is unknown is skipped (logged); the other tenant's rollups are computed."""
    create_tenant(engine, "mars", "Mars")
    create_user(engine, "mars", "ares", "Ares")
    with engine.begin() as conn:  # a row from before time zones were checked at entry
        conn.execute(update(Tenant).where(col(Tenant.id) == "mars").values(time_zone="Mars/Olympus"))
    user = a_week(engine)
    worker = RollupWorker(settings(database_url, tmp_path, rollup_catchup_days=5), engine)
    worker.cycle(jst(FRI, 23))
    assert daily(engine, "acme", user)[MON]["worked_s"] == 32400
