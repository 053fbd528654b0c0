"""Rollup storage, the database partner of :mod:`workers.analytics` (the maths).

Loads a day range's intervals, incidents and schedules (with group patterns and holidays),
computes, stores; backfills.
A (user, day range) is always recomputed whole from every interval that can touch
it and its rows replaced in one transaction, so recomputing is idempotent. :mod:`workers.rollup` decides what
to recompute; :mod:`workers.reports` reads the rows (and :func:`compute_range`
for live days).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.engine import Connection, Engine

from realtime.protocol import INCIDENT_KINDS, IncidentKind
from storage import calendars
from storage.activity import Incident, Interval
from storage.models import Tenant, User
from storage.planning import DailyRollup, Schedule, TaskRollup
from workers.analytics import (
    DaySpan,
    DayStats,
    IncidentMark,
    ScheduleDay,
    compute_days,
    day_bounds,
    days_between,
    zone,
)

log = logging.getLogger(__name__)

INTERVALS = Interval.__table__  # type: ignore[attr-defined]
INCIDENTS = Incident.__table__  # type: ignore[attr-defined]
SCHEDULES = Schedule.__table__  # type: ignore[attr-defined]
DAILY = DailyRollup.__table__  # type: ignore[attr-defined]
TASKS = TaskRollup.__table__  # type: ignore[attr-defined]
USERS = User.__table__  # type: ignore[attr-defined]
TENANTS = Tenant.__table__  # type: ignore[attr-defined]
MARGIN = timedelta(days=1)  # shifts crossing midnight reach into the next day
USERS_PER_QUERY = 200
# daily_rollup has one count column per incident kind of the wire protocol: ``{kind}_count``.
INCIDENT_COLUMNS: dict[IncidentKind, str] = {kind: f"{kind}_count" for kind in INCIDENT_KINDS}


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive UTC datetimes; PostgreSQL aware ones."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------- pure helpers


def plan_days(
    rows: Iterable[Mapping[str, Any]],
    days: Iterable[date],
    group_rows: Sequence[Iterable[Mapping[str, Any]]] = (),
    holidays: Mapping[date, str] | None = None,
) -> dict[date, ScheduleDay]:
    """A user's schedule rows, their groups' rows and the holidays -> the plan of each day.

    The rule is :func:`storage.calendars.plan_of`: the user's dated exception, a group's dated
    exception, a holiday (a day off), the user's own weekly pattern, a group's weekly pattern.
    A weekly entry applies on its weekday between ``valid_from`` and ``valid_to`` (inclusive,
    either open); an entry without times is a planned day off.
    """
    found = calendars.plans(rows, days, group_rows, holidays)
    return {day: ScheduleDay(day, p.start, p.end) for day, p in found.items()}


def daily_row(tenant: str, user_id: int, stats: DayStats, computed_at: datetime) -> dict[str, Any]:
    counts = {column: stats.incidents.get(kind, 0) for kind, column in INCIDENT_COLUMNS.items()}
    return {
        "tenant_id": tenant,
        "user_id": user_id,
        "day": stats.day,
        "first_start": stats.first_start,
        "last_end": stats.last_end,
        "worked_s": stats.worked_s,
        "present_s": stats.present_s,
        "away_s": stats.away_s,
        **counts,
        "planned_s": stats.planned_s,
        "late_start_s": stats.late_start_s,
        "early_end_s": stats.early_end_s,
        "overtime_s": stats.overtime_s,
        "absent": stats.absent,
        "computed_at": computed_at,
    }


def worth_storing(stats: DayStats) -> bool:
    """Days with no shift, no plan and no incident need no row (reports read a missing row as zero)."""
    return bool(stats.shifts or stats.scheduled or stats.incidents or stats.overtime_s)


# ---------------------------------------------------------------------- I/O


@dataclass
class Computed:
    """What one recompute did: rows written and (user, day)s still open at ``now``."""

    days: int = 0
    rows: int = 0
    open_days: set[tuple[int, date]] = field(default_factory=set)


def tenant_zone(conn: Connection, tenant: str) -> Any:
    name = conn.execute(select(TENANTS.c.time_zone).where(TENANTS.c.id == tenant)).scalar_one_or_none()
    return zone(name)


def _load(
    conn: Connection, tenant: str, users: Sequence[int], start: datetime, end: datetime
) -> tuple[dict[int, list[DaySpan]], dict[int, list[IncidentMark]], dict[int, list[Mapping[str, Any]]]]:
    """Intervals and incidents of ``users`` that can touch [start, end), and their schedule rows."""
    spans: dict[int, list[DaySpan]] = {u: [] for u in users}
    marks: dict[int, list[IncidentMark]] = {u: [] for u in users}
    plans: dict[int, list[Mapping[str, Any]]] = {u: [] for u in users}
    i = INTERVALS.c
    rows = conn.execute(
        select(i.user_id, i.kind, i.value, i.started_at, i.ended_at).where(
            i.tenant_id == tenant,
            i.user_id.in_(users),
            i.started_at < end + MARGIN,
            or_(i.ended_at.is_(None), i.ended_at > start - MARGIN),
        )
    )
    for user_id, kind, value, started, ended in rows:
        spans[user_id].append(DaySpan(kind, value, as_utc(started), as_utc(ended)))  # type: ignore[arg-type]
    c = INCIDENTS.c
    incident_query = select(c.user_id, c.kind, c.started_at).where(
        c.tenant_id == tenant,
        c.user_id.in_(users),
        c.started_at >= start - MARGIN,
        c.started_at < end + MARGIN,
    )
    for user_id, kind, started in conn.execute(incident_query):
        marks[user_id].append(IncidentMark(kind, as_utc(started)))  # type: ignore[arg-type]
    s = SCHEDULES.c
    for row in conn.execute(select(SCHEDULES).where(s.tenant_id == tenant, s.user_id.in_(users))).mappings():
        plans[row["user_id"]].append(dict(row))
    return spans, marks, plans


def compute_range(
    conn: Connection, tenant: str, users: Sequence[int], first: date, last: date, now: datetime, tz: Any
) -> dict[int, list[DayStats]]:
    """On demand, no rollups: each user's DayStats for every day from ``first`` to ``last``."""
    days = days_between(first, last)
    start, end = day_bounds(first, last, tz)
    out: dict[int, list[DayStats]] = {}
    holidays = calendars.holidays_between(conn, tenant, first, last)
    for chunk in chunks(sorted(set(users)), USERS_PER_QUERY):
        spans, marks, plans = _load(conn, tenant, chunk, start, end)
        groups = calendars.group_rows_of(conn, tenant, chunk)
        for user in chunk:
            plan = plan_days(plans[user], days, groups[user], holidays)
            out[user] = compute_days(spans[user], marks[user], plan, days, tz, now)
    return out


def recompute(
    engine: Engine, tenant: str, users: Sequence[int], first: date, last: date, now: datetime | None = None
) -> Computed:
    """Recompute and store the rollups of ``users`` for local days ``first``..``last`` in one transaction."""
    now = now or datetime.now(UTC)
    done = Computed()
    with engine.begin() as conn:
        tz = tenant_zone(conn, tenant)
        stats = compute_range(conn, tenant, users, first, last, now, tz)
        daily: list[dict[str, Any]] = []
        tasks: list[dict[str, Any]] = []
        for user, days in stats.items():
            for s in days:
                done.days += 1
                if s.open:
                    done.open_days.add((user, s.day))
                if worth_storing(s):
                    daily.append(daily_row(tenant, user, s, now))
                tasks += [
                    {
                        "tenant_id": tenant,
                        "user_id": user,
                        "day": s.day,
                        "task": name,
                        "seconds": t.seconds,
                        "count": t.count,
                        "computed_at": now,
                    }
                    for name, t in s.tasks.items()
                ]
        for chunk in chunks(sorted(stats), USERS_PER_QUERY):
            for table in (DAILY, TASKS):
                conn.execute(
                    delete(table).where(
                        table.c.tenant_id == tenant,
                        table.c.user_id.in_(chunk),
                        table.c.day >= first,
                        table.c.day <= last,
                    )
                )
        if daily:
            conn.execute(insert(DAILY), daily)
        if tasks:
            conn.execute(insert(TASKS), tasks)
        done.rows = len(daily) + len(tasks)
    return done


def tenant_users(engine: Engine, tenant: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(USERS.c.id).where(USERS.c.tenant_id == tenant)).scalars())


def rebuild_rollups(
    engine: Engine, tenant: str, first: date, last: date, now: datetime | None = None, block_days: int = 31
) -> Computed:
    """Backfill: recompute every user's rollups of ``first``..``last`` in blocks of days, logging progress."""
    if last < first:
        raise ValueError(f"expected first <= last, got {first} .. {last}")
    users = tenant_users(engine, tenant)
    total = Computed()
    day = first
    while day <= last:
        block_last = min(last, day + timedelta(days=block_days - 1))
        for chunk in chunks(users, USERS_PER_QUERY):
            part = recompute(engine, tenant, chunk, day, block_last, now)
            total.days += part.days
            total.rows += part.rows
            total.open_days |= part.open_days
        log.info(
            "rollups rebuilt",
            extra={"tenant": tenant, "from": str(day), "to": str(block_last), "users": len(users)},
        )
        day = block_last + timedelta(days=1)
    return total


def chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def group_ranges(dirty: Iterable[tuple[int, date]]) -> dict[tuple[date, date], list[int]]:
    """Dirty (user, day)s -> users grouped by the day range (first..last dirty day) to recompute."""
    spans: dict[int, tuple[date, date]] = {}
    for user, day in dirty:
        lo, hi = spans.get(user, (day, day))
        spans[user] = (min(lo, day), max(hi, day))
    out: dict[tuple[date, date], list[int]] = {}
    for user, span in sorted(spans.items()):
        out.setdefault(span, []).append(user)
    return out
