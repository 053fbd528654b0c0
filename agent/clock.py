"""The agent's one clock: every event it stamps (states, incidents, punches, tasks) takes its time here.

:class:`WallClock` (a camera, or a file played at real time): the wall clock read once at
start, then advanced by ``time.monotonic``, so a clock stepped back (NTP, the user) never
makes events go backwards. It is kept near the wall clock (:func:`corrected`): when the
wall clock is ahead by more than ``STEP_S`` (the PC was suspended, NTP stepped forward) it
jumps forward to it; when it is behind by more than ``STEP_S`` it is approached by
advancing at ``SLEW`` of the real rate until they meet. Either way no answer is ever
earlier than a previous one.

:class:`FrameClock` (``--fast``: a file played as fast as it can be read): the wall clock at
start plus the stream time of the newest frame, so events are spaced as in the recording,
whatever their type, and a punch made meanwhile carries the time of the frame it was
verified on.

Both have ``now()`` and ``frame(t)``: the time to stamp a frame taken at ``t`` seconds on its
source's continuing clock (a wall clock ignores ``t``: the frame is being read now).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

STEP_S = 2.0  # farther than this from the wall clock: corrected
SLEW = 0.5  # rate while the wall clock is behind (it went back): half speed, never backwards


class AgentClock(Protocol):
    """Where every event of one agent takes its time."""

    def now(self) -> datetime:
        """The agent's time now: aware UTC, never earlier than an earlier answer."""
        ...

    def frame(self, t: float) -> datetime:
        """The time of a frame at ``t`` seconds on its source's continuing clock (then ``now()``)."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def corrected(last: datetime, elapsed_s: float, wall: datetime) -> datetime:
    """Pure: the clock's next answer, ``elapsed_s`` monotonic seconds after it answered ``last``,
    with the wall clock reading ``wall``. Never earlier than ``last``."""
    elapsed = max(0.0, elapsed_s) if math.isfinite(elapsed_s) else 0.0
    ahead = last + timedelta(seconds=elapsed)
    behind_s = (wall - ahead).total_seconds()
    if behind_s > STEP_S:
        return wall  # the wall clock moved on without us (suspend, NTP step forward)
    if behind_s < -STEP_S:
        return last + timedelta(seconds=elapsed * SLEW)  # the wall clock went back: slow down
    return ahead


class WallClock:
    """Wall time anchored once at start, advanced by the monotonic clock, never backwards."""

    def __init__(
        self, wall: Callable[[], datetime] = utc_now, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()  # the monitor's thread, the event loop and the page's threads
        self._last = wall().astimezone(UTC)
        self._at = monotonic()

    def now(self) -> datetime:
        with self._lock:
            at = self._monotonic()
            self._last = corrected(self._last, at - self._at, self._wall().astimezone(UTC))
            self._at = at
            return self._last

    def frame(self, t: float) -> datetime:
        return self.now()


class FrameClock:
    """The wall clock at start plus the newest frame's stream time: ``--fast`` playback."""

    def __init__(self, start: datetime | None = None) -> None:
        self.start = (start or utc_now()).astimezone(UTC)
        self._lock = threading.Lock()
        self._last = self.start

    def now(self) -> datetime:
        with self._lock:
            return self._last

    def frame(self, t: float) -> datetime:
        """Advance to ``start + t`` (never back: an earlier ``t`` keeps the time reached)."""
        if not math.isfinite(t):
            raise ValueError(f"frame time: expected a finite number of seconds, got {t!r}")
        with self._lock:
            self._last = max(self._last, self.start + timedelta(seconds=max(0.0, t)))
            return self._last


def clock_for(fast: bool) -> AgentClock:
    """The clock of ``telework agent``: frames' stream time with ``--fast``, else the wall clock."""
    return FrameClock() if fast else WallClock()
