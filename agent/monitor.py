"""The agent's detection loop: frames from a source, through the pipeline, out as protocol events.

Per analysed frame (``analysis_fps`` of the current settings; the session's settings
are re-read every frame, so a settings push applies at once):

* a state change -> ``StateEvent`` with the decision trace in ``payload.trace``;
* entering peeking / impersonation / camera_blocked -> evidence (webcam still and
  screenshot, :mod:`agent.evidence`) and ``IncidentEvent(phase="start")`` with the
  evidence sha256 list; leaving it -> ``IncidentEvent(phase="end")``;
* every ``evidence_interval_s`` -> periodic evidence in a ``StateEvent`` repeating the
  current state (``payload.evidence``).

The camera runs only on duty (``gate``, :mod:`agent.camera_gate`): while the gate is closed
the source is closed and nothing is read. Opened for a punch-in's verification or a face
registration, frames are analysed for the desk but nothing is reported; an accepted
punch-in starts the state machine in the duty's first state, and from then on everything
is reported until the punch-out closes the camera. Without a gate (benchmarks, tests of
the pipeline) every frame is analysed and reported.

Time: every event is stamped by the agent's one clock (:mod:`agent.clock`) when it is
emitted. ``realtime`` (a webcam, the demo): reads follow the deadline schedule of
:mod:`agent.pacing` (one every 1/``analysis_fps`` s on a fixed grid, never counted from the end
of the work) and the pipeline's time is monotonic seconds since start. Otherwise
(``--fast``: a file played as fast as it can be read) the pipeline's time is the source's
stream time, continued across reopenings, and a :class:`~agent.clock.FrameClock` follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.camera_gate import CameraGate
from agent.capture.sources import Frame, FrameSource, FrameSourceError
from agent.clock import AgentClock, FrameClock, WallClock
from agent.detect.pipeline import FrameResult, Pipeline
from agent.detect.state_machine import MachineState, Streak, incident_phases
from agent.evidence import LocalEvidence
from agent.face.engine import Image
from agent.pacing import FramePacer
from agent.ports import Emitter
from agent.watch import WatchedPipeline
from core.config import ConfigError
from realtime.protocol import AgentSettings, IncidentPayload, PresenceState, StatePayload

log = logging.getLogger(__name__)

EPSILON = 1e-6
SETTINGS_POLL_S = 0.1  # a long wait for the next frame re-reads the settings (and the gate) this often


@dataclass
class MonitorStats:
    frames_read: int = 0
    frames_analysed: int = 0
    frames_missing: int = 0
    embeddings: int = 0
    events: int = 0
    camera_opened: int = 0
    camera_closed: int = 0


def started_machine(state: PresenceState, t: float) -> MachineState:
    """Pure: the state machine of a duty that starts in ``state`` at ``t`` (the verified punch-in)."""
    return MachineState(state=state, entered_at=t, streak=Streak(state, t, 1), last_t=t)


class Monitor:
    """Runs ``pipeline`` on ``source`` and emits through ``emitter`` until stopped or the source ends.

    ``realtime``: pace reads by the wall clock (webcam, demo); False plays a file or a
    scene as fast as the CPU allows. ``reopen``: called when the source ends to play it
    again (the demo scene loops); its frames continue the clock after the last one.
    ``gate``: the camera only while it is open (None: always). ``opener``: opens the camera
    again after the gate closed it (None: ``source`` is read again; a webcam reopens its
    device on the next read). ``clock``: the agent's clock (default: the wall clock when
    ``realtime``, else a frame clock).
    """

    def __init__(
        self,
        emitter: Emitter,
        source: FrameSource,
        pipeline: Pipeline,
        evidence: LocalEvidence | None = None,
        realtime: bool = True,
        reopen: Callable[[], FrameSource] | None = None,
        clock: AgentClock | None = None,
        gate: CameraGate | None = None,
        opener: Callable[[], FrameSource] | None = None,
    ) -> None:
        self.emitter = emitter
        self.source: FrameSource | None = source
        self.pipeline = pipeline
        self.evidence = evidence
        self.realtime = realtime
        self.reopen = reopen
        self.clock: AgentClock = clock or (WallClock() if realtime else FrameClock())
        self.gate = gate
        self.opener = opener or (lambda: source)
        self.stats = MonitorStats()
        self.parked = asyncio.Event()  # set while the camera is closed and the loop waits for the gate
        self._offset = 0.0  # fast: added to source times after a reopen
        self._last_t: float | None = None
        self._next_due = 0.0  # fast: the stream time of the next frame to analyse
        self._pacer = FramePacer()  # realtime: the reads' deadlines; a new grid each time the camera opens
        self._last_evidence_t: float | None = None
        self._mono_start = time.monotonic()

    @property
    def camera_wanted(self) -> bool:
        return self.gate is None or self.gate.status.on

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> MonitorStats:
        """Analyse frames until ``stop`` is set or a non-looping source ends."""
        try:
            while not stop.is_set():
                if not self.camera_wanted:
                    self._close()
                    await self._park(stop)
                    continue
                if self._held():
                    await self._park(stop)
                    continue
                settings = self.emitter.settings
                self.pipeline.settings = settings
                if self._last_t is not None:  # a pushed analysis_fps applies to the frame awaited now
                    self._next_due = self._last_t + 1.0 / settings.analysis_fps
                if self.realtime and await self._wait_due(stop):
                    break
                if not self.camera_wanted:
                    continue
                if self.source is None and not await self._open(settings):
                    continue
                if not await self._analyse_next(settings):
                    break
        finally:
            self._close()
        log.info("monitor stopped", extra={"stats": vars(self.stats)})
        return self.stats

    async def _analyse_next(self, settings: AgentSettings) -> bool:
        """Read one frame and analyse it when due; False when the source ended for good."""
        frame, t = await asyncio.to_thread(self._read)
        if frame is None:
            if self.source is not None and self.source.ended:
                if self.reopen is None:
                    return False
                self._restart()
                return True
            self.stats.frames_missing += 1
            if not self.realtime and t < self._next_due - EPSILON:
                return True
            self.clock.frame(t)
            self._after(self.pipeline.missing(t), None, settings)
            return True
        if not self.realtime and t < self._next_due - EPSILON:
            return True  # between analysed frames
        self.clock.frame(t)
        result = await asyncio.to_thread(self.pipeline.process, t, frame.image)
        self.stats.frames_analysed += 1
        self.stats.embeddings += result.embedded
        self._after(result, frame.image, settings)
        return True

    def _time_of(self, frame: Frame) -> float:
        """The pipeline's time of a frame: monotonic seconds since start (realtime), else stream time."""
        if self.realtime:
            return max(time.monotonic() - self._mono_start, self._last_t or 0.0)
        return frame.t + self._offset

    def _read(self) -> tuple[Frame | None, float]:
        """The next frame and its time on the pipeline's clock (for a missing one: when it was due)."""
        source = self.source
        if source is None:
            return None, self._missing_time(None)
        before = source.t
        frame = source.read()
        self.stats.frames_read += frame is not None
        if frame is not None:
            return frame, self._time_of(frame)
        return None, self._missing_time(before)

    def _missing_time(self, source_t: float | None) -> float:
        if self.realtime:
            return max(time.monotonic() - self._mono_start, self._last_t or 0.0)
        if source_t is not None:
            return source_t + self._offset
        if self._last_t is None:
            return 0.0
        return max(self._last_t, self._next_due)

    def _continue_after(self) -> None:
        """Source times of a reopened source start again at 0: continue after the last frame."""
        period = 1.0 / self.pipeline.settings.analysis_fps
        self._offset = (self._last_t if self._last_t is not None else 0.0) + period

    def _restart(self) -> None:
        if self.reopen is None:
            return
        if self.source is not None:
            self.source.close()
        self._continue_after()
        self.source = self.reopen()
        log.info("source restarted", extra={"offset_s": round(self._offset, 3)})

    async def _open(self, settings: AgentSettings) -> bool:
        """Open the camera (the gate wants it); when it cannot be opened, a missing frame says why."""
        try:
            self.source = await asyncio.to_thread(self.opener)
        except FrameSourceError as exc:
            if not self.realtime:  # a file that cannot be opened again will not come back
                raise ConfigError("TELEWORK_AGENT_SOURCE", str(exc)) from None
            log.warning("camera not opened", extra={"error": str(exc)})
            t = self._missing_time(None)
            self.clock.frame(t)
            self._after(self.pipeline.missing(t, f"cannot open the camera: {exc}"), None, settings)
            return False
        if self._last_t is not None and not self.realtime:
            self._continue_after()
        self.stats.camera_opened += 1
        log.info("camera opened", extra={"why": None if self.gate is None else self.gate.status.why})
        return True

    def _close(self) -> None:
        """Close the camera; the next duty starts afresh (no tracks, no state, no frame to show)."""
        if self.source is None:
            return
        self.source.close()
        self.source = None
        self.pipeline.tracks = ()
        self.pipeline.machine = MachineState()
        if isinstance(self.pipeline, WatchedPipeline):
            self.pipeline.forget()
        self._pacer = FramePacer()
        self._last_evidence_t = None
        self.stats.camera_closed += 1
        log.info("camera closed", extra={"why": None if self.gate is None else self.gate.status.why})

    def _held(self) -> bool:
        """A ``--fast`` file off duty (verifying, registering) gives a frame only when one is asked for."""
        if self.gate is None or self.realtime or self.gate.on_duty:
            return False
        return self.gate.frames_wanted == 0

    async def _park(self, stop: asyncio.Event) -> None:
        """Until the gate changes or ``stop`` is set (nothing is read meanwhile)."""
        if self.gate is None:
            return
        self.parked.set()
        stopped = asyncio.create_task(stop.wait())
        changed = asyncio.create_task(self.gate.changed())
        try:
            await asyncio.wait([stopped, changed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopped, changed):
                task.cancel()
            await asyncio.gather(stopped, changed, return_exceptions=True)
            self.parked.clear()

    async def _wait_due(self, stop: asyncio.Event) -> bool:
        """Sleep until the next read is due on the schedule; True when stopped meanwhile.

        The period is re-read from the settings every ``SETTINGS_POLL_S``, so a pushed
        analysis_fps shortens a long wait at once; a gate that closes ends the wait too."""
        while not stop.is_set() and self.camera_wanted:
            slot = self._pacer.upcoming(1.0 / self.emitter.settings.analysis_fps)
            delay = slot.due - self._pacer.clock()
            if delay <= 0:
                self._pacer.begin(slot)
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, SETTINGS_POLL_S)):
                    await stop.wait()
        return stop.is_set()

    # ------------------------------------------------------------- emitting

    def _after(self, result: FrameResult, image: Image | None, settings: AgentSettings) -> None:
        t = result.observation.t
        self._last_t = t
        self._next_due = t + 1.0 / settings.analysis_fps
        if self.gate is not None:
            start = self.gate.take_start()
            if start is not None:  # an accepted punch-in: the duty starts in its verified state
                self.pipeline.machine = started_machine(start.state, t)
                self._last_evidence_t = t
                return
            if not self.gate.on_duty:
                self.gate.take_frame()  # the frame asked for (a --fast file gives one per request)
                return  # a verification or registration off duty: nothing is reported
        transition = result.transition
        if transition is not None:
            phases = incident_phases(transition)
            for kind, phase in phases:
                if phase == "end":
                    self._emit(IncidentPayload(kind=kind, phase="end", trace=transition.trace))
            self._emit(StatePayload(state=transition.state, trace=transition.trace))
            for kind, phase in phases:
                if phase == "start":
                    evidence, trace = self._evidence(image, f"incident_start:{kind}", t)
                    payload = IncidentPayload(
                        kind=kind, phase="start", evidence=evidence, trace={**transition.trace, **trace}
                    )
                    self._emit(payload)
        if (
            self.evidence is not None
            and result.state is not None
            and self._last_evidence_t is not None
            and t - self._last_evidence_t >= settings.evidence_interval_s
        ):
            evidence, trace = self._evidence(image, "periodic", t)
            self._emit(StatePayload(state=result.state, evidence=evidence, trace=trace))
        if self._last_evidence_t is None and result.state is not None:
            self._last_evidence_t = t  # the periodic clock starts with the first state

    def _evidence(self, image: Image | None, reason: str, t: float) -> tuple[list[str], dict[str, Any]]:
        self._last_evidence_t = t
        if self.evidence is None:
            return [], {"evidence": {"reason": reason, "images": [], "missing": ["evidence disabled"]}}
        try:
            record = self.evidence.capture(image, reason, now=self.clock.now())
        except OSError as exc:  # a full or read-only disk must not stop detection
            log.error("evidence not stored", extra={"reason": reason, "error": str(exc)})
            return [], {"evidence": {"reason": reason, "images": [], "missing": [f"not stored: {exc}"]}}
        return record.sha256s, {"evidence": record.trace()}

    def _emit(self, payload: StatePayload | IncidentPayload) -> None:
        self.emitter.emit(payload, ts=self.clock.now())
        self.stats.events += 1
