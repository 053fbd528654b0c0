"""Real-time playback on a deadline schedule: analysed frames due on a fixed grid of a monotonic clock.

Slot ``n`` of a :class:`FrameGrid` is due at ``start + n * period``, counted from the first slot and
never from the end of the previous frame's work, so the rate does not drift by the time the work
takes (waiting a period after each analysis made 2 frames/s run at 1.87). :func:`next_slot` is the
whole rule, pure:

* the slot after the last one run is waited for while its deadline is ahead;
* a frame whose work ran past that deadline is followed at once by the latest slot already due
  (at most one period late); the slots missed entirely are skipped, as a camera's past frames are
  gone, and counted in :attr:`Slot.skipped`. A slow frame never moves a later deadline.

A new period (a pushed ``analysis_fps``) restarts the grid at the deadline of the last slot run;
:attr:`Slot.at_s`, the seconds since the first slot, keeps counting across such changes: it is the
stream position a file played in real time should show at that slot.

:class:`FramePacer` holds the schedule and the last slot of one playback, with an injected clock, and
waits for the next slot (``wait`` on an event loop, stoppable; ``wait_sync`` with an injected sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

EPSILON = 1e-9  # a deadline reached within this is reached (float sums of periods)
POLL_S = 0.1  # a long wait re-reads the period this often, so a pushed rate applies at once


@dataclass(frozen=True)
class FrameGrid:
    """Deadlines ``start + n * period`` (seconds on a monotonic clock); ``origin``: the first slot's."""

    start: float
    period: float
    origin: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"period: expected a positive finite number of seconds, got {self.period!r}")
        if not (math.isfinite(self.start) and math.isfinite(self.origin)):
            raise ValueError(
                f"start, origin: expected finite clock readings, got {self.start!r}, {self.origin!r}"
            )

    def due(self, n: int) -> float:
        return self.start + n * self.period


@dataclass(frozen=True)
class Slot:
    """One analysed frame's place on the grid."""

    n: int  # index on its schedule (counts again from 0 after a period change)
    due: float  # its deadline on the clock
    at_s: float  # seconds since the first slot of the playback
    skipped: int = 0  # slots before it missed entirely (the previous work ran past them)


def next_slot(schedule: FrameGrid, last: int | None, now: float) -> Slot:
    """The slot to run after slot ``last`` (None: none run yet) at clock ``now``; pure.

    The next slot when its deadline is still ahead (wait until it is due), else the latest slot
    already due, run at once; the ones between are skipped."""
    following = 0 if last is None else last + 1
    n = following
    if schedule.due(following) < now - EPSILON:
        n = max(following, math.floor((now - schedule.start) / schedule.period))
        if n > following and schedule.due(n) > now:  # the division rounded up across a deadline
            n -= 1
        elif schedule.due(n + 1) <= now:  # ... or down
            n += 1
    due = schedule.due(n)
    return Slot(n, due, due - schedule.origin, n - following)


def retimed(schedule: FrameGrid, last: int | None, period: float, now: float) -> tuple[FrameGrid, int | None]:
    """The schedule with a new ``period``: its grid starts at the deadline of slot ``last`` (which
    becomes slot 0), or at ``now`` when no slot was run; pure."""
    if last is None:
        return FrameGrid(now, period, now), None
    return FrameGrid(schedule.due(last), period, schedule.origin), 0


class FramePacer:
    """The deadline schedule of one playback; the grid starts at the first slot asked for."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.schedule: FrameGrid | None = None
        self.last: int | None = None  # the slot of ``schedule`` run last

    def upcoming(self, period: float) -> Slot:
        """The slot to run next at ``period`` seconds per frame, as of now; nothing is taken yet."""
        now = self.clock()
        if self.schedule is None or self.schedule.period != period:
            if self.schedule is None:
                self.schedule, self.last = FrameGrid(now, period, now), None
            else:
                self.schedule, self.last = retimed(self.schedule, self.last, period, now)
        return next_slot(self.schedule, self.last, now)

    def begin(self, slot: Slot) -> None:
        """``slot`` is being run: the next one follows it."""
        self.last = slot.n

    def wait_sync(self, period: float, sleep: Callable[[float], None] = time.sleep) -> Slot:
        """Sleep until the next slot is due, then take it."""
        slot = self.upcoming(period)
        while (delay := slot.due - self.clock()) > 0:
            sleep(delay)
            slot = self.upcoming(period)
        self.begin(slot)
        return slot

    async def wait(
        self, period: Callable[[], float], stop: asyncio.Event, poll_s: float = POLL_S
    ) -> Slot | None:
        """Wait on the event loop until the next slot is due and take it; None when ``stop`` was set.

        ``period`` is read again every ``poll_s``, so a pushed rate shortens a long wait at once."""
        while not stop.is_set():
            slot = self.upcoming(period())
            delay = slot.due - self.clock()
            if delay <= 0:
                self.begin(slot)
                return slot
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, poll_s)):
                    await stop.wait()
        return None
