"""Interval building (pure): events -> duty, presence and task intervals, and window rebuilds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.intervals import Changes, Ev, IntervalSpan, build_intervals, diff, splice, window_start

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(seq: int, minute: float, type_: str, **payload: Any) -> Ev:
    return Ev(id=f"e{seq:03d}", seq=seq, ts=at(minute), type=type_, payload=payload)


def duty(seq: int, minute: float, on: bool) -> Ev:
    return ev(seq, minute, "duty", on_duty=on, verified=True)


def state(seq: int, minute: float, value: str) -> Ev:
    return ev(seq, minute, "state", state=value)


def task(seq: int, minute: float, name: str | None) -> Ev:
    return ev(seq, minute, "task", task=name)


def span(
    kind: str,
    value: str,
    start: float,
    start_seq: int,
    end: float | None,
    end_seq: int | None,
    by: str = "event",
) -> IntervalSpan:
    return IntervalSpan(
        kind=kind,
        value=value,
        started_at=at(start),
        start_event_id=f"e{start_seq:03d}",
        ended_at=None if end is None else at(end),
        end_event_id=None if end_seq is None else f"e{end_seq:03d}",
        closed_by=None if end is None else by,
    )


DAY = [
    duty(1, 0, True),
    state(2, 0, "present"),
    task(3, 1, "coding"),
    state(4, 30, "present"),  # repeat: merged
    state(5, 60, "away"),
    state(6, 75, "present"),
    task(7, 90, "coding"),  # repeat: merged
    task(8, 120, "email"),
    task(9, 150, None),
    state(10, 200, "peeking"),
    state(11, 201, "present"),
    duty(12, 240, False),
]

DAY_SPANS = [
    span("duty", "on", 0, 1, 240, 12),
    span("presence", "present", 0, 2, 60, 5),
    span("task", "coding", 1, 3, 120, 8),
    span("presence", "away", 60, 5, 75, 6),
    span("presence", "present", 75, 6, 200, 10),
    span("task", "email", 120, 8, 150, 9),
    span("presence", "peeking", 200, 10, 201, 11),
    span("presence", "present", 201, 11, 240, 12),
]


def test_a_day_merges_identical_consecutive_states() -> None:
    """A working day: repeats merge; duty off closes presence; a task end closes the task."""
    assert build_intervals(DAY) == DAY_SPANS


def test_out_of_order_and_duplicate_delivery_gives_the_same_intervals() -> None:
    """Shuffled events, each delivered twice, build exactly the in-order intervals."""
    shuffled = DAY + DAY
    random.Random(7).shuffle(shuffled)
    assert build_intervals(shuffled) == DAY_SPANS


def test_events_off_duty_make_no_interval_and_duty_starts_blank() -> None:
    """State and task events off duty are ignored; a duty interval starts with no state or task."""
    events = [
        state(1, 0, "present"),
        task(2, 1, "coding"),
        duty(3, 10, True),
        state(4, 15, "away"),
        duty(5, 20, False),
        state(6, 25, "present"),
    ]
    assert build_intervals(events) == [
        span("duty", "on", 10, 3, 20, 5),
        span("presence", "away", 15, 4, 20, 5),
    ]


def test_the_punch_ins_state_starts_presence_with_the_duty() -> None:
    """The agent's state sent with the punch-in (same time, next seq) opens presence at the duty's start:
    ten quiet minutes on duty are ten minutes present, however the two events arrive."""
    events = [duty(1, 0, True), state(2, 0, "present"), duty(3, 10, False)]
    expected = [span("duty", "on", 0, 1, 10, 3), span("presence", "present", 0, 2, 10, 3)]
    assert build_intervals(events) == expected
    assert build_intervals(list(reversed(events))) == expected


def test_gap_without_duty_off_is_closed_at_the_last_event_before_the_next_duty_on() -> None:
    """PC shut down on duty: the next day's duty on closes yesterday's intervals at its last event."""
    events = [
        duty(1, 0, True),
        state(2, 5, "present"),
        task(3, 6, "coding"),
        ev(4, 300, "gap", images_overwritten=3),  # last sign of life
        duty(5, 1440, True),
        state(6, 1441, "away"),
    ]
    assert build_intervals(events) == [
        span("duty", "on", 0, 1, 300, 4, "silence"),
        span("presence", "present", 5, 2, 300, 4, "silence"),
        span("task", "coding", 6, 3, 300, 4, "silence"),
        span("duty", "on", 1440, 5, None, None),
        span("presence", "away", 1441, 6, None, None),
    ]


def test_silent_closes_open_intervals_at_the_last_event() -> None:
    """silent=True: what is still open ends at the last event; without it, stays open."""
    events = [duty(1, 0, True), state(2, 0, "present"), state(3, 40, "away")]
    assert build_intervals(events) == [
        span("duty", "on", 0, 1, None, None),
        span("presence", "present", 0, 2, 40, 3),
        span("presence", "away", 40, 3, None, None),
    ]
    assert build_intervals(events, silent=True) == [
        span("duty", "on", 0, 1, 40, 3, "silence"),
        span("presence", "present", 0, 2, 40, 3),
    ]


def test_zero_length_intervals_are_dropped() -> None:
    """A state replaced at the same instant, and duty on/off at once, leave no interval."""
    events = [
        duty(1, 0, True),
        state(2, 5, "present"),
        state(3, 5, "away"),
        duty(4, 9, False),
        duty(5, 9, True),
        duty(6, 9, False),
    ]
    assert build_intervals(events) == [
        span("duty", "on", 0, 1, 9, 4),
        span("presence", "away", 5, 3, 9, 4),
    ]


def test_window_start_is_the_latest_duty_start_at_or_before_the_new_event() -> None:
    """The rebuild window begins at the duty start holding the earliest new event, else at that event."""
    starts = [at(0), at(600), at(1440)]
    assert window_start(starts, at(700)) == at(600)
    assert window_start(starts, at(600)) == at(600)
    assert window_start(starts, at(-5)) == at(-5)


def test_late_events_rebuild_only_their_window_to_the_full_build() -> None:
    """A late spool (events in the morning) spliced into stored intervals equals building everything."""
    late = [state(13, 100, "away"), state(14, 110, "present")]  # arrived after the day was built
    stored = build_intervals(DAY)
    start = window_start([s.started_at for s in stored if s.kind == "duty"], at(100))
    rebuilt = build_intervals([e for e in DAY + late if e.ts >= start])
    assert splice(stored, rebuilt, start) == build_intervals(DAY + late)
    assert [s for s in build_intervals(DAY + late) if s.kind == "presence"][2:5] == [
        span("presence", "present", 75, 6, 100, 13),
        span("presence", "away", 100, 13, 110, 14),
        span("presence", "present", 110, 14, 200, 10),
    ]


def test_late_events_after_a_silence_closure_reopen_the_interval() -> None:
    """An agent offline with a spool: the silent closure is undone when its spooled events arrive."""
    first = [duty(1, 0, True), state(2, 20, "present")]
    assert build_intervals(first, silent=True) == [span("duty", "on", 0, 1, 20, 2, "silence")]
    spooled = [*first, state(3, 50, "away"), state(4, 70, "present")]
    assert build_intervals(spooled) == [
        span("duty", "on", 0, 1, None, None),
        span("presence", "present", 20, 2, 50, 3),
        span("presence", "away", 50, 3, 70, 4),
        span("presence", "present", 70, 4, None, None),
    ]


def test_diff_keeps_equal_rows_updates_ends_deletes_and_inserts() -> None:
    """diff: unchanged rows untouched, a closed open row updated, a vanished row deleted, new inserted."""
    open_present = span("presence", "present", 0, 2, None, None)
    stored = [
        (1, span("duty", "on", 0, 1, None, None)),
        (2, open_present),
        (3, span("task", "x", 5, 9, None, None)),
    ]
    rebuilt = [
        span("duty", "on", 0, 1, None, None),
        span("presence", "present", 0, 2, 40, 3),
        span("presence", "away", 40, 3, None, None),
    ]
    assert diff(stored, rebuilt) == Changes(
        delete=(3,),
        update=((2, span("presence", "present", 0, 2, 40, 3)),),
        insert=(span("presence", "away", 40, 3, None, None),),
    )
    assert diff([(1, rebuilt[0])], rebuilt[:1]).empty
