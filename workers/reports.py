"""On-demand attendance and task reports for any period, summed from the daily rollups.

A report over days ``first``..``last`` (local days of the tenant) is one
``GROUP BY user`` over ``daily_rollup`` (or ``task_rollup``), so a monthly report
for 1,000 users reads ~30,000 small rows inside the database and returns 1,000.
Users without any rollup row in the period appear with zeros.

:func:`day_rows` gives the per-day figures of a period (day / week / month
views); :func:`live_days` computes days straight from the intervals, without
rollups (today, or checking a rollup).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.engine import Engine

from workers.analytics import DayStats, PeriodStats, TaskTime
from workers.analytics_store import DAILY, TASKS, USERS, as_utc, compute_range, tenant_zone

SUMMED = ("worked_s", "present_s", "away_s", "planned_s", "late_start_s", "early_end_s", "overtime_s")


class ReportError(ValueError):
    """A report was asked for with a period or selection it cannot answer."""


@dataclass(frozen=True)
class AttendanceRow:
    """One user's attendance over a period."""

    user_id: int
    login: str
    name: str
    stats: PeriodStats


@dataclass(frozen=True)
class TaskRow:
    user_id: int
    task: str
    time: TaskTime


def month_range(year: int, month: int) -> tuple[date, date]:
    """First and last day of a calendar month."""
    if not 1 <= month <= 12:
        raise ReportError(f"expected a month 1-12, got {month}")
    first = date(year, month, 1)
    nxt = date(year + month // 12, month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def _check(first: date, last: date) -> None:
    if last < first:
        raise ReportError(f"expected a period with first <= last, got {first} .. {last}")


def attendance(
    engine: Engine, tenant: str, first: date, last: date, user_ids: list[int] | None = None
) -> list[AttendanceRow]:
    """Every user's (or ``user_ids``') attendance summed over local days ``first``..``last``, by login."""
    _check(first, last)
    d = DAILY.c
    incidents = d.peeking_count + d.impersonation_count + d.camera_blocked_count
    sums = (
        select(
            d.user_id,
            func.sum(case((d.worked_s > 0, 1), else_=0)).label("days_worked"),
            *(func.sum(getattr(d, name)).label(name) for name in SUMMED),
            func.sum(case((d.planned_s > 0, 1), else_=0)).label("scheduled_days"),
            func.sum(case((d.late_start_s > 0, 1), else_=0)).label("late_days"),
            func.sum(case((d.early_end_s > 0, 1), else_=0)).label("early_end_days"),
            func.sum(cast(d.absent, Integer)).label("absent_days"),
            func.sum(incidents).label("incidents"),
        )
        .where(d.tenant_id == tenant, d.day >= first, d.day <= last)
        .group_by(d.user_id)
    )
    users = select(USERS.c.id, USERS.c.login, USERS.c.name).where(USERS.c.tenant_id == tenant)
    if user_ids is not None:
        sums = sums.where(d.user_id.in_(user_ids))
        users = users.where(USERS.c.id.in_(user_ids))
    with engine.connect() as conn:
        totals = {row.user_id: row._mapping for row in conn.execute(sums)}
        people = list(conn.execute(users.order_by(USERS.c.login)))
    return [AttendanceRow(uid, login, name, _period(totals.get(uid))) for uid, login, name in people]


def _period(row: Any) -> PeriodStats:
    if row is None:
        return PeriodStats()
    return PeriodStats(**{k: round(row[k] or 0) for k in PeriodStats.__dataclass_fields__})


def monthly_attendance(
    engine: Engine, tenant: str, year: int, month: int, user_ids: list[int] | None = None
) -> list[AttendanceRow]:
    """The monthly attendance report (calendar month in the tenant's time zone)."""
    first, last = month_range(year, month)
    return attendance(engine, tenant, first, last, user_ids)


def task_time(
    engine: Engine, tenant: str, first: date, last: date, user_ids: list[int] | None = None
) -> list[TaskRow]:
    """Time and count per task per user over local days ``first``..``last``, by user then task."""
    _check(first, last)
    t = TASKS.c
    query = (
        select(t.user_id, t.task, func.sum(t.seconds), func.sum(t.count))
        .where(t.tenant_id == tenant, t.day >= first, t.day <= last)
        .group_by(t.user_id, t.task)
        .order_by(t.user_id, t.task)
    )
    if user_ids is not None:
        query = query.where(t.user_id.in_(user_ids))
    with engine.connect() as conn:
        return [TaskRow(u, task, TaskTime(round(s), int(c))) for u, task, s, c in conn.execute(query)]


def day_rows(
    engine: Engine, tenant: str, first: date, last: date, user_ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """The stored rollup rows of a period (days without a row had nothing to record), by user and day."""
    _check(first, last)
    d = DAILY.c
    query = select(DAILY).where(d.tenant_id == tenant, d.day >= first, d.day <= last)
    if user_ids is not None:
        query = query.where(d.user_id.in_(user_ids))
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query.order_by(d.user_id, d.day)).mappings()]
    for row in rows:
        row["first_start"], row["last_end"] = as_utc(row["first_start"]), as_utc(row["last_end"])
    return rows


def live_days(
    engine: Engine, tenant: str, user_ids: list[int], first: date, last: date, now: datetime | None = None
) -> dict[int, list[DayStats]]:
    """Compute days straight from the intervals (no rollups), e.g. today while shifts are open."""
    _check(first, last)
    if (last - first).days > 366:
        raise ReportError(f"expected at most a year of days computed live, got {first} .. {last}")
    with engine.connect() as conn:
        tz = tenant_zone(conn, tenant)
        return compute_range(conn, tenant, user_ids, first, last, now or datetime.now(UTC), tz)
