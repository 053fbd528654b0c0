"""Attendance and task analytics: intervals, incidents and schedules -> per-user, per-day figures. Pure.

Everything here takes values and returns values (no I/O); ``workers.rollup``
feeds it rows and stores what it returns, ``workers.reports`` sums the stored days.

Rules (documented in the README's analytics section):

* **Days** are local calendar days in the tenant's time zone (default Asia/Tokyo).
* **A shift belongs to the day it starts.** A duty interval (a shift) crossing
  local midnight is *not* split: its whole time, its presence and away time, its
  task time and its incidents count to the local day in which it started (Japanese
  labour-standards practice: a continuous shift over two calendar days is one
  shift of the day of its start). ``last_end`` of that day is then after midnight.
  A new duty interval starting after midnight is a shift of the new day.
* **Presence, tasks and incidents count only while on duty.** Presence and task
  intervals are clipped to the duty intervals; the clipped pieces go to the day of
  the duty interval they fall in. ``present`` = states present/peeking (the user
  is at the screen); ``away`` = away/impersonation (the user is not); the other
  states (camera_blocked, camera_unavailable) and time without presence data are
  neither. Incidents are counted at their start, on the day of the shift they
  started in; incidents off duty count on their own local day.
* **Open intervals** (no end yet) are clipped at ``now``.
* **Against the schedule** (a planned start and end of local wall time; an end at
  or before the start means the next morning): ``late_start`` = first start after
  the planned start; ``early_end`` = last end before the planned end; ``overtime``
  = duty time outside the planned window; ``absent`` = a planned working day with
  no shift, once its planned end has passed. A planned day off
  (``ScheduleDay.start is None``) makes all duty time overtime. Without any
  schedule for the day (``None``) there is no comparison.
* Seconds are whole seconds (rounded after summing).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from realtime.protocol import USER_SEEN_STATES, PresenceState

IntervalKind = Literal["duty", "presence", "task"]
INTERVAL_KINDS: tuple[str, ...] = ("duty", "presence", "task")
# Presence states are the wire protocol's; here only how attendance counts them.
PRESENT_STATES: frozenset[PresenceState] = frozenset(USER_SEEN_STATES)  # present, peeking
AWAY_STATES: frozenset[PresenceState] = frozenset({"away", "impersonation"})
DEFAULT_TIME_ZONE = "Asia/Tokyo"
ZERO = timedelta(0)


class AnalyticsError(ValueError):
    """An input value the analytics cannot use (naive datetime, end before start, unknown kind)."""


@dataclass(frozen=True)
class DaySpan:
    """One interval of a user: ``kind`` duty | presence | task; ``value`` the state or task name.

    ``end`` None means still open. Datetimes must be timezone-aware.
    """

    kind: str
    value: str
    start: datetime
    end: datetime | None = None


@dataclass(frozen=True)
class IncidentMark:
    """An incident of a user (only its kind and start matter for counting)."""

    kind: str
    start: datetime


@dataclass(frozen=True)
class ScheduleDay:
    """The plan for one local day: working from ``start`` to ``end`` local time, or a day off (None)."""

    day: date
    start: time | None = None
    end: time | None = None


@dataclass(frozen=True)
class TaskTime:
    seconds: int
    count: int


@dataclass(frozen=True)
class DayStats:
    """One user's attendance on one local day. Datetimes are UTC."""

    day: date
    first_start: datetime | None = None
    last_end: datetime | None = None
    worked_s: int = 0
    present_s: int = 0
    away_s: int = 0
    shifts: int = 0
    open: bool = False  # a shift of this day is still running (clipped at ``now``)
    incidents: Mapping[str, int] = field(default_factory=dict)
    tasks: Mapping[str, TaskTime] = field(default_factory=dict)
    scheduled: bool = False  # a planned working day
    planned_s: int = 0
    late_start_s: int = 0
    early_end_s: int = 0
    overtime_s: int = 0
    absent: bool = False

    @property
    def incident_count(self) -> int:
        return sum(self.incidents.values())


# ------------------------------------------------------------------ time helpers


def zone(name: str | None) -> ZoneInfo:
    """The tenant's time zone (``DEFAULT_TIME_ZONE`` when unset); a clear error for an unknown name."""
    try:
        return ZoneInfo(name or DEFAULT_TIME_ZONE)
    except (KeyError, ValueError) as exc:
        raise AnalyticsError(f"expected an IANA time zone name such as Asia/Tokyo, got {name!r}") from exc


def utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise AnalyticsError(f"expected a timezone-aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def local_day(value: datetime, tz: tzinfo) -> date:
    """The local calendar day of an instant."""
    return utc(value).astimezone(tz).date()


def day_start(day: date, tz: tzinfo) -> datetime:
    """Local midnight starting ``day``, as UTC."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def day_bounds(first: date, last: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """UTC instants from local midnight of ``first`` to local midnight after ``last``."""
    return day_start(first, tz), day_start(last + timedelta(days=1), tz)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def planned_window(plan: ScheduleDay, tz: tzinfo) -> tuple[datetime, datetime] | None:
    """The planned working window in UTC; an end at or before the start is on the next day."""
    if plan.start is None or plan.end is None:
        return None
    start = datetime.combine(plan.day, plan.start, tzinfo=tz).astimezone(UTC)
    end_day = plan.day if plan.end > plan.start else plan.day + timedelta(days=1)
    end = datetime.combine(end_day, plan.end, tzinfo=tz).astimezone(UTC)
    return start, end


Piece = tuple[datetime, datetime]


def closed(span: DaySpan, now: datetime) -> Piece | None:
    """The span as a UTC (start, end) pair, an open one clipped at ``now``; None when empty."""
    start = utc(span.start)
    end = utc(span.end) if span.end is not None else max(utc(now), start)
    if end < start:
        raise AnalyticsError(
            f"expected a {span.kind} interval ending after its start, got {start.isoformat()} "
            f"-> {end.isoformat()}"
        )
    return (start, end) if end > start else None


def union(pieces: Iterable[Piece]) -> list[Piece]:
    """Sorted, non-overlapping union of pieces (touching pieces merge)."""
    out: list[Piece] = []
    for start, end in sorted(pieces):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def overlap(a: Piece, b: Piece) -> timedelta:
    return max(ZERO, min(a[1], b[1]) - max(a[0], b[0]))


def overlap_total(piece: Piece, others: Sequence[Piece]) -> timedelta:
    return sum((overlap(piece, other) for other in others), ZERO)


def seconds(value: timedelta) -> int:
    return round(value.total_seconds())


# --------------------------------------------------------------------- the maths


def shifts_by_day(duties: Iterable[DaySpan], tz: tzinfo, now: datetime) -> dict[date, list[Piece]]:
    """Duty time grouped by the local day each (merged) shift starts in."""
    pieces = union(p for d in duties if d.kind == "duty" and (p := closed(d, now)) is not None)
    out: dict[date, list[Piece]] = {}
    for piece in pieces:
        out.setdefault(local_day(piece[0], tz), []).append(piece)
    return out


def _presence(shifts: Sequence[Piece], presence: Sequence[tuple[str, Piece]]) -> tuple[timedelta, timedelta]:
    present = away = ZERO
    for state, piece in presence:
        on_duty = overlap_total(piece, shifts)
        if state in PRESENT_STATES:
            present += on_duty
        elif state in AWAY_STATES:
            away += on_duty
    return present, away


def _tasks(shifts: Sequence[Piece], tasks: Sequence[tuple[str, Piece]]) -> dict[str, TaskTime]:
    totals: dict[str, tuple[timedelta, int]] = {}
    for name, piece in tasks:
        on_duty = overlap_total(piece, shifts)
        if on_duty > ZERO:
            spent, count = totals.get(name, (ZERO, 0))
            totals[name] = (spent + on_duty, count + 1)
    return {name: TaskTime(seconds(spent), count) for name, (spent, count) in sorted(totals.items())}


def _against_schedule(
    plan: ScheduleDay | None, shifts: Sequence[Piece], worked: timedelta, tz: tzinfo, now: datetime
) -> dict[str, object]:
    if plan is None:
        return {}
    window = planned_window(plan, tz)
    if window is None:  # a planned day off: any duty is overtime
        return {"overtime_s": seconds(worked)}
    planned = window[1] - window[0]
    if not shifts:  # absent once the planned end has passed
        return {"scheduled": True, "planned_s": seconds(planned), "absent": window[1] <= now}
    inside = sum((overlap(window, s) for s in shifts), ZERO)
    return {
        "scheduled": True,
        "planned_s": seconds(planned),
        "late_start_s": seconds(max(ZERO, shifts[0][0] - window[0])),
        "early_end_s": seconds(max(ZERO, window[1] - shifts[-1][1])),
        "overtime_s": seconds(worked - inside),
    }


def day_stats(
    day: date,
    shifts: Sequence[Piece],
    presence: Sequence[tuple[str, Piece]],
    tasks: Sequence[tuple[str, Piece]],
    incidents: Sequence[str],
    plan: ScheduleDay | None,
    tz: tzinfo,
    now: datetime,
    open_: bool = False,
) -> DayStats:
    """The figures of one day from its shifts (sorted, disjoint) and the pieces that overlap them.

    A planned day without a shift is an absence once its planned end is before ``now``.
    """
    worked = sum((end - start for start, end in shifts), ZERO)
    present, away = _presence(shifts, presence)
    counts: dict[str, int] = {}
    for kind in incidents:
        counts[kind] = counts.get(kind, 0) + 1
    return DayStats(
        day=day,
        first_start=shifts[0][0] if shifts else None,
        last_end=shifts[-1][1] if shifts else None,
        worked_s=seconds(worked),
        present_s=seconds(present),
        away_s=seconds(away),
        shifts=len(shifts),
        open=open_,
        incidents=dict(sorted(counts.items())),
        tasks=_tasks(shifts, tasks),
        **_against_schedule(plan, shifts, worked, tz, now),  # type: ignore[arg-type]
    )


def compute_days(
    spans: Iterable[DaySpan],
    incidents: Iterable[IncidentMark],
    schedule: Mapping[date, ScheduleDay],
    days: Iterable[date],
    tz: tzinfo,
    now: datetime,
) -> list[DayStats]:
    """One user's :class:`DayStats` for each of ``days`` (sorted), from all spans that can touch them.

    ``spans`` must include every duty interval that starts on those days and the
    presence/task intervals overlapping them; extra spans are ignored.
    """
    spans = list(spans)
    for span in spans:
        if span.kind not in INTERVAL_KINDS:
            raise AnalyticsError(f"expected interval kind duty, presence or task, got {span.kind!r}")
    by_day = shifts_by_day(spans, tz, now)
    shifts = sorted((piece, day) for day, pieces in by_day.items() for piece in pieces)
    starts = [piece[0] for piece, _ in shifts]
    open_starts = [utc(s.start) for s in spans if s.kind == "duty" and s.end is None]
    presence: dict[date, list[tuple[str, Piece]]] = {}
    tasks: dict[date, list[tuple[str, Piece]]] = {}
    for span in spans:
        if span.kind == "duty" or (piece := closed(span, now)) is None:
            continue
        target = presence if span.kind == "presence" else tasks
        for day in _days_overlapping(piece, shifts, starts):
            target.setdefault(day, []).append((span.value, piece))
    kinds_by_day: dict[date, list[str]] = {}
    for mark in sorted(incidents, key=lambda m: utc(m.start)):
        at = utc(mark.start)
        kinds_by_day.setdefault(_incident_day(at, shifts, starts, tz), []).append(mark.kind)
    out = []
    for day in sorted(set(days)):
        day_shifts = by_day.get(day, [])
        is_open = any(start <= at <= end for at in open_starts for start, end in day_shifts)
        out.append(
            day_stats(
                day,
                day_shifts,
                presence.get(day, []),
                tasks.get(day, []),
                kinds_by_day.get(day, []),
                schedule.get(day),
                tz,
                utc(now),
                open_=is_open,
            )
        )
    return out


def _days_overlapping(
    piece: Piece, shifts: Sequence[tuple[Piece, date]], starts: Sequence[datetime]
) -> set[date]:
    """Days of the shifts (sorted, disjoint) that ``piece`` overlaps."""
    out: set[date] = set()
    i = max(0, bisect_right(starts, piece[0]) - 1)
    while i < len(shifts) and shifts[i][0][0] < piece[1]:
        if overlap(piece, shifts[i][0]) > ZERO:
            out.add(shifts[i][1])
        i += 1
    return out


def _incident_day(
    at: datetime, shifts: Sequence[tuple[Piece, date]], starts: Sequence[datetime], tz: tzinfo
) -> date:
    """The day of the shift an incident started in, else its own local day."""
    i = bisect_right(starts, at) - 1
    if i >= 0 and shifts[i][0][0] <= at < shifts[i][0][1]:
        return shifts[i][1]
    return local_day(at, tz)


def touched_days(start: datetime, end: datetime | None, tz: tzinfo, now: datetime) -> list[date]:
    """Local days whose figures an interval [start, end] can change.

    An interval can belong to a shift that started the day before its own start
    (shifts crossing midnight), so the day before is included.
    """
    first = local_day(start, tz) - timedelta(days=1)
    last = local_day(end if end is not None else max(utc(now), utc(start)), tz)
    return days_between(first, last)


# -------------------------------------------------------------------- periods


@dataclass(frozen=True)
class PeriodStats:
    """A user's attendance summed over a period of days."""

    days_worked: int = 0
    worked_s: int = 0
    present_s: int = 0
    away_s: int = 0
    planned_s: int = 0
    scheduled_days: int = 0
    late_days: int = 0
    late_start_s: int = 0
    early_end_days: int = 0
    early_end_s: int = 0
    overtime_s: int = 0
    absent_days: int = 0
    incidents: int = 0


SUMMED = ("worked_s", "present_s", "away_s", "planned_s", "late_start_s", "early_end_s", "overtime_s")


def summarise(days: Iterable[DayStats]) -> PeriodStats:
    """Sum a user's days into one period (the same sums ``workers.reports`` does in SQL)."""
    totals = dict.fromkeys(PeriodStats.__dataclass_fields__, 0)
    for d in days:
        totals["days_worked"] += 1 if d.shifts else 0
        totals["scheduled_days"] += 1 if d.scheduled else 0
        totals["late_days"] += 1 if d.late_start_s > 0 else 0
        totals["early_end_days"] += 1 if d.early_end_s > 0 else 0
        totals["absent_days"] += 1 if d.absent else 0
        totals["incidents"] += d.incident_count
        for name in SUMMED:
            totals[name] += getattr(d, name)
    return PeriodStats(**totals)


def task_totals(days: Iterable[DayStats]) -> dict[str, TaskTime]:
    """Time and count per task over a user's days."""
    totals: dict[str, tuple[int, int]] = {}
    for d in days:
        for name, t in d.tasks.items():
            spent, count = totals.get(name, (0, 0))
            totals[name] = (spent + t.seconds, count + t.count)
    return {name: TaskTime(s, c) for name, (s, c) in sorted(totals.items())}
