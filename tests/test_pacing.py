"""Real-time playback on a deadline schedule (agent/pacing.py): no drift, a slow frame moves no deadline."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.pacing import FrameGrid, FramePacer, Slot, next_slot, retimed
from tests.stepped_clock import SteppedClock

START = 1000.0


def play(work_s: list[float], period: float = 0.5) -> list[tuple[Slot, float]]:
    """Each frame's slot and the clock when its work began, for frames taking ``work_s`` each."""
    clock = SteppedClock(START)
    pacer = FramePacer(clock)
    out = []
    for work in work_s:
        slot = pacer.wait_sync(period, clock.sleep)
        out.append((slot, clock.now))
        clock.now += work
    return out


def test_two_fps_due_times_are_exactly_half_a_second_apart() -> None:
    """2 fps for 120 frames of 35 ms work: frame n is due and begins at start + n/2, exactly; 2.0 fps."""
    played = play([0.035] * 120)
    assert [slot.due for slot, _ in played] == [START + n / 2 for n in range(120)]
    assert [began for _, began in played] == [START + n / 2 for n in range(120)]
    assert [slot.at_s for slot, _ in played] == [n / 2 for n in range(120)]
    assert sum(slot.skipped for slot, _ in played) == 0
    rate = (len(played) - 1) / (played[-1][1] - played[0][1])
    assert rate == 2.0  # counted from the end of the work, it would be 1 / 0.535 = 1.87


def test_a_late_frame_runs_at_once_and_later_deadlines_stay() -> None:
    """Frame 3 takes 0.8 s: frame 4 (due 2.0) begins at once at 2.3, frame 5 on its deadline 2.5."""
    played = play([0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1])
    assert [(s.n, s.due - START, round(b - START, 9), s.skipped) for s, b in played] == [
        (0, 0.0, 0.0, 0),
        (1, 0.5, 0.5, 0),
        (2, 1.0, 1.0, 0),
        (3, 1.5, 1.5, 0),
        (4, 2.0, 2.3, 0),
        (5, 2.5, 2.5, 0),
        (6, 3.0, 3.0, 0),
    ]


def test_slots_missed_entirely_are_skipped() -> None:
    """Frame 1 takes 1.3 s (to 1.8): slots 2 and 3 are gone, slot 3 (due 1.5) runs at once, then 4 at 2.0."""
    played = play([0.1, 1.3, 0.1, 0.1])
    assert [(s.n, s.due - START, round(b - START, 9), s.skipped) for s, b in played] == [
        (0, 0.0, 0.0, 0),
        (1, 0.5, 0.5, 0),
        (3, 1.5, 1.8, 1),
        (4, 2.0, 2.0, 0),
    ]


def test_a_new_period_starts_its_grid_at_the_last_deadline() -> None:
    """2 fps, then 1 fps from slot 2 (due 1.0): the next deadlines are 2.0, 3.0; at_s keeps counting."""
    clock = SteppedClock(START)
    pacer = FramePacer(clock)
    dues = []
    for period in (0.5, 0.5, 0.5, 1.0, 1.0):
        slot = pacer.wait_sync(period, clock.sleep)
        dues.append((slot.due - START, slot.at_s))
        clock.now += 0.05
    assert dues == [(0.0, 0.0), (0.5, 0.5), (1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]


def test_upcoming_takes_nothing() -> None:
    """Asking for the upcoming slot twice gives the same slot; only begin() moves on."""
    clock = SteppedClock(START)
    pacer = FramePacer(clock)
    first = pacer.upcoming(0.5)
    assert pacer.upcoming(0.5) == first == Slot(0, START, 0.0, 0)
    pacer.begin(first)
    assert pacer.upcoming(0.5) == Slot(1, START + 0.5, 0.5, 0)


@pytest.mark.parametrize("period", [0.0, -1.0, math.inf, math.nan])
def test_a_bad_period_is_refused(period: float) -> None:
    """A zero, negative, infinite or NaN period: ValueError saying what was expected and what came."""
    with pytest.raises(ValueError, match=r"period: expected a positive finite number of seconds, got"):
        FrameGrid(START, period, START)


@given(
    period=st.floats(min_value=1e-3, max_value=100.0),
    last=st.none() | st.integers(min_value=0, max_value=10**6),
    behind=st.floats(min_value=-1000.0, max_value=1e6),
)
def test_next_slot_rule(period: float, last: int | None, behind: float) -> None:
    """Any clock reading: the slot follows the last, is waited for or at most one period late, and the
    skipped count is the slots between."""
    schedule = FrameGrid(START, period, START - 7.0)
    following = 0 if last is None else last + 1
    now = schedule.due(following) + behind
    slot = next_slot(schedule, last, now)
    assert slot.n >= following
    assert slot.due == schedule.due(slot.n)
    assert slot.at_s == slot.due - schedule.origin
    assert slot.skipped == slot.n - following
    if slot.due > now:
        assert slot.n == following  # ahead: wait for the very next one
    else:
        assert now - slot.due < period * (1 + 1e-6) + 1e-6  # late by less than a period


def test_retimed_without_a_slot_starts_now() -> None:
    """A new period before any slot was run: the grid starts at the clock's reading."""
    assert retimed(FrameGrid(START, 0.5, START), None, 2.0, START + 3) == (
        FrameGrid(START + 3, 2.0, START + 3),
        None,
    )


async def test_wait_returns_none_when_stopped() -> None:
    """A stop set during a 60 s wait ends it with None, without taking the slot."""
    pacer = FramePacer()
    stop = asyncio.Event()
    first = await pacer.wait(lambda: 60.0, stop)
    assert first is not None and (first.n, first.at_s, first.skipped) == (0, 0.0, 0)
    waiter = asyncio.create_task(pacer.wait(lambda: 60.0, stop))
    stop.set()
    began = time.monotonic()
    assert await asyncio.wait_for(waiter, 5.0) is None
    assert time.monotonic() - began < 1.0
    assert pacer.last == 0


async def test_a_pushed_rate_shortens_a_long_wait() -> None:
    """Waiting out a 60 s period, the period becomes 0.05 s: the wait ends within 1 s, on the new grid."""
    pacer = FramePacer()
    stop = asyncio.Event()
    periods = iter([60.0, 60.0])

    def period() -> float:
        return next(periods, 0.05)

    first = await pacer.wait(period, stop)
    began = time.monotonic()
    second = await asyncio.wait_for(pacer.wait(period, stop), 5.0)
    assert first is not None and second is not None
    assert time.monotonic() - began < 1.0
    assert pacer.schedule is not None and pacer.schedule.period == 0.05
    assert second.due == pacer.schedule.due(second.n) <= time.monotonic()
    assert second.at_s == pytest.approx(second.n * 0.05)


async def test_wait_keeps_the_grid_on_the_real_clock() -> None:
    """20 frames at 20 fps with 10 ms of work: no frame begins before its deadline; every deadline is
    start + n/20, and the run spans the grid (19 periods), not 20 x (period + work)."""
    pacer = FramePacer()
    stop = asyncio.Event()
    began: list[tuple[Slot, float]] = []
    while len(began) < 20:
        slot = await pacer.wait(lambda: 0.05, stop)
        assert slot is not None
        began.append((slot, time.monotonic()))
        time.sleep(0.01)  # noqa: ASYNC251 - the frame's work (blocking, as the pipeline's), not a synchronisation
    assert pacer.schedule is not None
    start = pacer.schedule.start
    assert all(at >= slot.due for slot, at in began)
    assert all(slot.due == start + slot.n * 0.05 for slot, _ in began)
    assert began[-1][0].n == 19 + sum(slot.skipped for slot, _ in began)
