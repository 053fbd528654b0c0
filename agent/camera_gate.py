"""When the camera may be open: only while the user is on duty, or for the moment a punch-in is
verified or a face registered at the user's request.

:class:`CameraGate` is held by the :class:`~agent.desk.Desk` (which knows the duty state) and
read by the :class:`~agent.monitor.Monitor` (which opens and closes the frame source). Off duty
the gate is closed: the monitor closes the source and reads nothing, so no frame is analysed,
no periodic evidence and no incident is taken. A punch-in opens it for its verification
(:meth:`CameraGate.use`), and an accepted punch-in keeps it open for the duty
(:meth:`CameraGate.start_duty`); a punch-out closes it (:meth:`CameraGate.end_duty`).

A file played with ``--fast`` does not run on while the camera is used off duty: the monitor
reads one frame per :meth:`CameraGate.want_frame` of the desk (a camera, in real time, gives
its frames at the analysis rate anyway), so a punch-in is verified on the file's next frame
and the duty's events start right after it.

:func:`camera_status` (pure) says whether the camera is on and why, for the local page.
Use the gate on the agent's event loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from realtime.protocol import PresenceState

Use = Literal["verifying", "registering"]  # a moment of camera off duty, asked for by the user
Why = Literal["off_duty", "on_duty", "verifying", "registering"]
USES: tuple[Use, ...] = ("verifying", "registering")


@dataclass(frozen=True)
class CameraStatus:
    """Whether the camera may be open, and why; ``since``: the duty's start when on duty."""

    on: bool
    why: Why
    since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "on": self.on,
            "why": self.why,
            "since": None if self.since is None else self.since.isoformat(),
        }


@dataclass(frozen=True)
class DutyStart:
    """An accepted punch-in: the state the duty starts in, for the monitor's state machine."""

    at: datetime
    state: PresenceState


def camera_status(on_duty: bool, since: datetime | None, uses: Counter[str]) -> CameraStatus:
    """Pure: the camera is on while on duty, else while a verification or registration needs it."""
    if on_duty:
        return CameraStatus(True, "on_duty", since)
    for use in USES:
        if uses[use] > 0:
            return CameraStatus(True, use)
    return CameraStatus(False, "off_duty")


class CameraGate:
    """The duty state as the camera sees it; :meth:`changed` wakes the monitor at every change."""

    def __init__(self, on_duty: bool = False, since: datetime | None = None) -> None:
        self._on_duty = on_duty
        self._since = since if on_duty else None
        self._uses: Counter[str] = Counter()
        self._start: DutyStart | None = None
        self._frames_wanted = 0
        self._changed = asyncio.Event()

    @property
    def status(self) -> CameraStatus:
        return camera_status(self._on_duty, self._since, self._uses)

    @property
    def on_duty(self) -> bool:
        """Whether what the camera sees is to be reported (states, incidents, evidence)."""
        return self._on_duty

    def start_duty(self, start: DutyStart) -> None:
        """An accepted punch-in: the camera stays open, and the monitor starts from ``start.state``."""
        self._on_duty, self._since, self._start = True, start.at, start
        self._frames_wanted = 0
        self._changed.set()

    def end_duty(self) -> None:
        """An accepted punch-out: the camera closes (unless a registration still needs it)."""
        self._on_duty, self._since, self._start = False, None, None
        self._frames_wanted = 0
        self._changed.set()

    def want_frame(self) -> None:
        """The desk looks at the next frame (off duty, a ``--fast`` file gives one per call)."""
        self._frames_wanted += 1
        self._changed.set()

    @property
    def frames_wanted(self) -> int:
        return self._frames_wanted

    def take_frame(self) -> bool:
        """Whether a frame was asked for off duty (and count it given)."""
        if self._frames_wanted <= 0:
            return False
        self._frames_wanted -= 1
        return True

    def take_start(self) -> DutyStart | None:
        """The duty start not yet applied by the monitor (then forgotten)."""
        start, self._start = self._start, None
        return start

    @contextlib.contextmanager
    def use(self, purpose: Use) -> Iterator[None]:
        """The camera open for ``purpose`` while the block runs (a no-op on duty: it is open)."""
        self._uses[purpose] += 1
        self._changed.set()
        try:
            yield
        finally:
            self._uses[purpose] -= 1
            if not self.status.on:
                self._frames_wanted = 0
            self._changed.set()

    async def changed(self, timeout_s: float | None = None) -> bool:
        """Wait until the gate changes (True) or ``timeout_s`` passes (False); a change that
        happened since the previous call counts."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()
        except TimeoutError:
            return False
        self._changed.clear()
        return True
