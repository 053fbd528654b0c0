"""A clock for tests of real-time playback (agent/pacing.py) that no real time passes on."""

from __future__ import annotations


class SteppedClock:
    """A monotonic clock that moves only when told: by the work done, or by a sleep slept."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, f"slept {seconds}"
        self.now += seconds
