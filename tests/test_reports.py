"""Attendance and task reports for any period, from rollups and live, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.engine import Engine

from storage.accounts import create_user
from tests.test_rollup import FRI, MON, NOW, TUE, WED, a_week, add_interval, jst
from workers.analytics import PeriodStats, TaskTime, summarise
from workers.analytics_store import recompute
from workers.reports import (
    ReportError,
    TaskRow,
    attendance,
    day_rows,
    live_days,
    month_range,
    monthly_attendance,
    task_time,
)


def test_monthly_attendance_sums_the_rollups(engine: Engine) -> None:
    """March for two users: Hana's hand-computed week summed; Ken, without rows, zeros; by login."""
    hana = a_week(engine)
    ken = create_user(engine, "acme", "ken", "Ken")
    recompute(engine, "acme", [hana, ken], MON, FRI, NOW)
    report = monthly_attendance(engine, "acme", 2026, 3)
    assert [(r.login, r.user_id) for r in report] == [("hana", hana), ("ken", ken)]
    assert report[0].stats == PeriodStats(
        days_worked=3,
        worked_s=32400 + 36900 + 28800,
        present_s=28800,
        away_s=3600 + 3600,
        planned_s=4 * 32400 + 28800,  # Thursday: a 22:00-06:00 night shift
        scheduled_days=5,
        late_days=1,
        late_start_s=4500,
        early_end_days=0,
        early_end_s=0,
        overtime_s=9000,
        absent_days=2,
        incidents=2,
    )
    assert report[1].stats == PeriodStats()


def test_period_report_equals_live_computation(engine: Engine) -> None:
    """A Tue-Wed report from rollups equals the same days computed live from the intervals."""
    hana = a_week(engine)
    recompute(engine, "acme", [hana], MON, FRI, NOW)
    (row,) = attendance(engine, "acme", TUE, WED, user_ids=[hana])
    live = live_days(engine, "acme", [hana], TUE, WED, NOW)
    assert row.stats == summarise(live[hana])
    assert row.stats.worked_s == 36900 and row.stats.absent_days == 1


def test_task_time_per_user_per_period(engine: Engine) -> None:
    """Task time and count per user and task over a period; a day outside the period is left out."""
    hana = a_week(engine)
    add_interval(engine, "acme", hana, "task", "design", jst(MON, 9), jst(MON, 10))
    recompute(engine, "acme", [hana], MON, FRI, NOW)
    assert task_time(engine, "acme", MON, FRI) == [
        TaskRow(hana, "design", TaskTime(14400, 3)),
        TaskRow(hana, "review", TaskTime(3600, 1)),
    ]
    assert task_time(engine, "acme", TUE, TUE, user_ids=[hana])[0].time == TaskTime(10800, 2)
    assert task_time(engine, "acme", WED, FRI) == []


def test_day_rows_of_a_week(engine: Engine) -> None:
    """The per-day rows of a week, with aware UTC first start and last end."""
    hana = a_week(engine)
    recompute(engine, "acme", [hana], MON, FRI, NOW)
    rows = day_rows(engine, "acme", MON, FRI)
    assert [r["day"] for r in rows] == [MON, TUE, date(2026, 3, 4), date(2026, 3, 5), FRI]
    assert (rows[0]["first_start"], rows[0]["last_end"]) == (jst(MON, 9), jst(MON, 18))


def test_bad_periods_are_refused() -> None:
    """Month 13 and reversed periods raise ReportError naming what arrived; month ranges are right."""
    assert month_range(2026, 2) == (date(2026, 2, 1), date(2026, 2, 28))
    assert month_range(2026, 12) == (date(2026, 12, 1), date(2026, 12, 31))
    with pytest.raises(ReportError, match="got 13"):
        month_range(2026, 13)
    with pytest.raises(ReportError, match="2026-03-06"):
        attendance(None, "acme", FRI, MON)  # type: ignore[arg-type]
