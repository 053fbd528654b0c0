"""The agent's one clock: wall time anchored once, advanced by the monotonic clock, never backwards;
with --fast, the frames' stream time for every event (punches included)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.clock import SLEW, STEP_S, FrameClock, WallClock, clock_for, corrected

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_corrected_follows_the_monotonic_clock_near_the_wall_clock() -> None:
    """Within STEP_S of the wall clock the monotonic seconds count, not the wall clock's jitter."""
    assert corrected(T0, 1.5, s(1.5 + STEP_S * 0.9)) == s(1.5)
    assert corrected(T0, 1.5, s(1.5 - STEP_S * 0.9)) == s(1.5)


def test_corrected_jumps_forward_to_a_wall_clock_far_ahead() -> None:
    """A suspended PC (the monotonic clock stood still) or an NTP step forward: the clock follows."""
    assert corrected(T0, 0.5, s(3600)) == s(3600)


def test_corrected_slows_down_for_a_wall_clock_set_back_never_going_back() -> None:
    """The wall clock set back an hour: the agent clock goes on at half speed, never below its last time."""
    assert corrected(T0, 10.0, s(-3600)) == s(10.0 * SLEW)
    assert corrected(T0, -5.0, s(-3600)) == T0  # a monotonic reading that went back counts as 0 s
    assert corrected(T0, math.nan, s(0)) == T0


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=-10, max_value=1e5) | st.just(math.nan),  # monotonic s since the last call
            st.floats(min_value=-1e6, max_value=1e6),  # the wall clock's offset from the start
        ),
        min_size=1,
        max_size=50,
    )
)
def test_corrected_never_goes_backwards(steps: list[tuple[float, float]]) -> None:
    """Whatever the wall and monotonic clocks do, each answer is at or after the previous one."""
    last = T0
    for elapsed, wall in steps:
        now = corrected(last, elapsed, s(wall))
        assert now >= last
        last = now


def test_wall_clock_with_injected_clocks_stays_monotonic() -> None:
    """WallClock: anchored once; a wall clock set back 30 s never moves it back; a far jump forward does."""
    wall, mono = [T0], [100.0]
    clock = WallClock(wall=lambda: wall[0], monotonic=lambda: mono[0])
    assert clock.now() == T0
    mono[0], wall[0] = 101.0, s(1.0)
    assert clock.now() == s(1.0)
    mono[0], wall[0] = 102.0, s(-28.0)  # set back 30 s
    assert clock.now() == s(1.0 + SLEW)
    assert clock.frame(12.5) == s(1.0 + SLEW)  # a wall clock ignores the frame's stream time
    mono[0], wall[0] = 102.5, s(7200)
    assert clock.now() == s(7200)


def test_frame_clock_follows_the_frames_never_back() -> None:
    """FrameClock: start + the newest frame's stream time; an earlier frame keeps the time reached; now()
    (a punch) is the newest frame's time."""
    clock = FrameClock(T0)
    assert clock.now() == T0
    assert clock.frame(1.5) == s(1.5)
    assert clock.frame(1.0) == s(1.5)
    assert clock.now() == s(1.5)
    with pytest.raises(ValueError, match=r"frame time: expected a finite number of seconds, got inf"):
        clock.frame(math.inf)
    assert isinstance(clock_for(True), FrameClock) and isinstance(clock_for(False), WallClock)
