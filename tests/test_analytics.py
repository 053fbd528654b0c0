"""Pure attendance and task analytics against hand-computed days (Asia/Tokyo, UTC+9)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from workers.analytics import (
    AnalyticsError,
    DaySpan,
    IncidentMark,
    PeriodStats,
    ScheduleDay,
    TaskTime,
    compute_days,
    summarise,
    task_totals,
    touched_days,
    zone,
)

TOKYO = ZoneInfo("Asia/Tokyo")
MON, TUE, WED = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)
NOW = datetime(2026, 4, 1, tzinfo=UTC)
NINE_TO_SIX = {d: ScheduleDay(d, time(9), time(18)) for d in (MON, TUE, WED)}


def jst(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TOKYO)


def duty(day: date, h1: int, m1: int, h2: int, m2: int, end_day: date | None = None) -> DaySpan:
    return DaySpan("duty", "on", jst(day, h1, m1), jst(end_day or day, h2, m2))


def one(spans: list[DaySpan], day: date, schedule=NINE_TO_SIX, incidents=(), now=NOW, tz=TOKYO):
    (stats,) = compute_days(spans, incidents, schedule, [day], tz, now)
    return stats


def test_normal_day() -> None:
    """09:00-18:00 on a 09:00-18:00 plan with a lunch hour away: 9 h worked, 8 h present, 1 h away."""
    spans = [
        duty(MON, 9, 0, 18, 0),
        DaySpan("presence", "present", jst(MON, 9), jst(MON, 12)),
        DaySpan("presence", "away", jst(MON, 12), jst(MON, 13)),
        DaySpan("presence", "present", jst(MON, 13), jst(MON, 18)),
    ]
    s = one(spans, MON)
    assert (s.first_start, s.last_end) == (
        datetime(2026, 3, 2, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 9, tzinfo=UTC),
    )
    assert (s.worked_s, s.present_s, s.away_s, s.shifts) == (32400, 28800, 3600, 1)
    assert (s.scheduled, s.planned_s, s.late_start_s, s.early_end_s, s.overtime_s, s.absent) == (
        True,
        32400,
        0,
        0,
        0,
        False,
    )
    assert s.incidents == {} and s.tasks == {} and s.open is False


def test_late_start_with_overtime() -> None:
    """10:15-20:30 on a 09:00-18:00 plan: 1 h 15 late, 2 h 30 overtime, no early end."""
    s = one([duty(MON, 10, 15, 20, 30)], MON)
    assert (s.worked_s, s.late_start_s, s.early_end_s, s.overtime_s, s.absent) == (
        36900,
        4500,
        0,
        9000,
        False,
    )


def test_early_start_and_early_end() -> None:
    """08:00-17:00 on a 09:00-18:00 plan: the hour before 09:00 is overtime, the end 1 h early."""
    s = one([duty(MON, 8, 0, 17, 0)], MON)
    assert (s.worked_s, s.late_start_s, s.early_end_s, s.overtime_s) == (32400, 0, 3600, 3600)


def test_shift_crossing_midnight_counts_to_its_start_day() -> None:
    """22:00 Mon - 06:00 Tue is Monday's shift (8 h, incident and away time included); Tuesday has its own."""
    plan = {MON: ScheduleDay(MON, time(22), time(6)), TUE: ScheduleDay(TUE, time(22), time(6))}
    spans = [
        duty(MON, 22, 0, 6, 0, end_day=TUE),
        DaySpan("presence", "present", jst(MON, 22), jst(MON, 23, 30)),
        DaySpan("presence", "away", jst(MON, 23, 30), jst(TUE, 0, 30)),
        DaySpan("presence", "present", jst(TUE, 0, 30), jst(TUE, 6)),
        DaySpan("task", "night batch", jst(MON, 23), jst(TUE, 2)),
        duty(TUE, 23, 0, 5, 0, end_day=WED),
    ]
    incidents = [IncidentMark("peeking", jst(TUE, 1)), IncidentMark("peeking", jst(TUE, 23, 30))]
    mon, tue, wed = compute_days(spans, incidents, plan, [MON, TUE, WED], TOKYO, NOW)
    assert (mon.first_start, mon.last_end) == (jst(MON, 22).astimezone(UTC), jst(TUE, 6).astimezone(UTC))
    assert (mon.worked_s, mon.present_s, mon.away_s) == (28800, 25200, 3600)
    assert (mon.late_start_s, mon.early_end_s, mon.overtime_s, mon.absent) == (0, 0, 0, False)
    assert mon.incidents == {"peeking": 1}
    assert mon.tasks == {"night batch": TaskTime(10800, 1)}
    assert (tue.worked_s, tue.late_start_s, tue.early_end_s, tue.overtime_s) == (21600, 3600, 3600, 0)
    assert tue.incidents == {"peeking": 1} and tue.present_s == 0
    assert (wed.worked_s, wed.shifts, wed.scheduled, wed.absent) == (0, 0, False, False)


def test_absence() -> None:
    """A planned working day with no shift is an absence with the planned time; nothing else."""
    s = one([duty(MON, 9, 0, 18, 0)], WED)
    assert (s.absent, s.scheduled, s.planned_s, s.worked_s, s.late_start_s, s.overtime_s) == (
        True,
        True,
        32400,
        0,
        0,
        0,
    )
    assert s.first_start is None and s.last_end is None


def test_away_time_counts_only_inside_duty() -> None:
    """Away 08:00-09:30 with duty from 09:00 counts 30 min; camera_blocked is neither present nor away."""
    spans = [
        duty(MON, 9, 0, 18, 0),
        DaySpan("presence", "away", jst(MON, 8), jst(MON, 9, 30)),
        DaySpan("presence", "present", jst(MON, 9, 30), jst(MON, 15)),
        DaySpan("presence", "camera_blocked", jst(MON, 15), jst(MON, 16)),
        DaySpan("presence", "impersonation", jst(MON, 16), jst(MON, 16, 10)),
        DaySpan("presence", "peeking", jst(MON, 16, 10), jst(MON, 16, 20)),
        DaySpan("presence", "present", jst(MON, 16, 20), jst(MON, 19)),
    ]
    s = one(spans, MON)
    assert (s.worked_s, s.present_s, s.away_s) == (32400, 19800 + 600 + 6000, 1800 + 600)


def test_tasks_time_and_count_while_on_duty() -> None:
    """Two stints of A and one of B on duty; a task after duty ends counts nothing."""
    spans = [
        duty(MON, 9, 0, 18, 0),
        DaySpan("task", "A", jst(MON, 9), jst(MON, 11)),
        DaySpan("task", "B", jst(MON, 11), jst(MON, 12)),
        DaySpan("task", "A", jst(MON, 13), jst(MON, 14, 30)),
        DaySpan("task", "A", jst(MON, 17, 30), jst(MON, 19)),
        DaySpan("task", "C", jst(MON, 19), jst(MON, 20)),
    ]
    s = one(spans, MON)
    assert s.tasks == {"A": TaskTime(7200 + 5400 + 1800, 3), "B": TaskTime(3600, 1)}


def test_open_shift_is_clipped_at_now() -> None:
    """A shift still running at 12:30 counts 3 h 30 and is marked open; the day is not yet an early end."""
    now = jst(MON, 12, 30)
    spans = [DaySpan("duty", "on", jst(MON, 9)), DaySpan("presence", "present", jst(MON, 9))]
    s = one(spans, MON, now=now)
    assert (s.worked_s, s.present_s, s.open, s.last_end) == (12600, 12600, True, now.astimezone(UTC))


def test_planned_day_off_makes_all_duty_overtime() -> None:
    """Work on a planned day off is all overtime, not late, not absent."""
    plan = {MON: ScheduleDay(MON)}
    s = one([duty(MON, 10, 0, 12, 0)], MON, schedule=plan)
    assert (s.scheduled, s.overtime_s, s.late_start_s, s.absent) == (False, 7200, 0, False)


def test_no_schedule_means_no_comparison() -> None:
    """Without a schedule the day has worked time but no late start, overtime or absence."""
    s = one([duty(MON, 10, 0, 20, 0)], MON, schedule={})
    assert (s.worked_s, s.scheduled, s.late_start_s, s.overtime_s, s.absent) == (36000, False, 0, 0, False)


def test_overlapping_duty_intervals_merge() -> None:
    """Two duty intervals overlapping by an hour count 10 h worked, one shift."""
    s = one([duty(MON, 9, 0, 15, 0), duty(MON, 14, 0, 19, 0)], MON)
    assert (s.worked_s, s.shifts, s.overtime_s) == (36000, 1, 3600)


def test_days_are_in_the_tenant_time_zone() -> None:
    """The same UTC shift is Monday in Tokyo and Sunday in New York."""
    span = DaySpan("duty", "on", datetime(2026, 3, 2, 1, tzinfo=UTC), datetime(2026, 3, 2, 3, tzinfo=UTC))
    ny = ZoneInfo("America/New_York")
    (tokyo_mon,) = compute_days([span], [], {}, [MON], TOKYO, NOW)
    (ny_sun,) = compute_days([span], [], {}, [date(2026, 3, 1)], ny, NOW)
    assert (tokyo_mon.worked_s, ny_sun.worked_s) == (7200, 7200)


def test_summarise_and_task_totals_over_a_period() -> None:
    """Period sums: worked, late and absent days, incidents, and per-task time and count."""
    spans = [
        duty(MON, 9, 0, 18, 0),
        duty(TUE, 10, 0, 19, 0),
        DaySpan("task", "A", jst(MON, 9), jst(MON, 10)),
        DaySpan("task", "A", jst(TUE, 10), jst(TUE, 12)),
    ]
    days = compute_days(
        spans, [IncidentMark("impersonation", jst(TUE, 11))], NINE_TO_SIX, [MON, TUE, WED], TOKYO, NOW
    )
    assert summarise(days) == PeriodStats(
        days_worked=2,
        worked_s=64800,
        planned_s=97200,
        scheduled_days=3,
        late_days=1,
        late_start_s=3600,
        overtime_s=3600,
        absent_days=1,
        incidents=1,
    )
    assert task_totals(days) == {"A": TaskTime(10800, 2)}


def test_touched_days_include_the_day_before() -> None:
    """An interval from Tue 01:00 to Wed 02:00 can change Mon (a shift from Monday), Tue and Wed."""
    assert touched_days(jst(TUE, 1), jst(WED, 2), TOKYO, NOW) == [MON, TUE, WED]


@pytest.mark.parametrize(
    ("span", "message"),
    [
        (DaySpan("duty", "on", datetime(2026, 3, 2, 9), None), "timezone-aware"),
        (DaySpan("lunch", "on", jst(MON, 9), jst(MON, 10)), "duty, presence or task"),
        (DaySpan("duty", "on", jst(MON, 10), jst(MON, 9)), "ending after its start"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(span: DaySpan, message: str) -> None:
    """Naive datetimes, unknown kinds and reversed intervals raise AnalyticsError saying what was expected."""
    with pytest.raises(AnalyticsError, match=message):
        compute_days([span], [], {}, [MON], TOKYO, NOW)


def test_unknown_time_zone_is_refused() -> None:
    """An unknown zone name raises AnalyticsError naming it; None means Asia/Tokyo."""
    with pytest.raises(AnalyticsError, match="Mars/Olympus"):
        zone("Mars/Olympus")
    assert zone(None) == TOKYO


def test_no_absence_before_the_planned_end() -> None:
    """A planned day with no shift yet is not an absence until its planned end (18:00) has passed."""
    before = one([], WED, now=jst(WED, 17, 59))
    after = one([], WED, now=jst(WED, 18, 0))
    assert (before.absent, before.scheduled, after.absent) == (False, True, True)
