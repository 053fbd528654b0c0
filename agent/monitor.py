"""The agent's detection loop: frames from a source, through the pipeline, out as protocol events.

Per analysed frame (``analysis_fps`` of the current settings; the session's settings
are re-read every frame, so a settings push applies at once):

* a state change -> ``StateEvent`` with the decision trace in ``payload.trace``;
* entering peeking / impersonation / camera_blocked -> evidence (webcam still and
  screenshot, :mod:`agent.evidence`) and ``IncidentEvent(phase="start")`` with the
  evidence sha256 list; leaving it -> ``IncidentEvent(phase="end")``;
* every ``evidence_interval_s`` -> periodic evidence in a ``StateEvent`` repeating the
  current state (``payload.evidence``).

Event timestamps follow the source's clock from the moment the monitor started, so a
scene played faster than real time still gives events spaced as in the scene.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.capture.sources import Frame, FrameSource
from agent.detect.pipeline import FrameResult, Pipeline
from agent.detect.state_machine import incident_phases
from agent.evidence import LocalEvidence
from agent.face.engine import Image
from agent.ports import Emitter
from realtime.protocol import AgentSettings, IncidentPayload, StatePayload

log = logging.getLogger(__name__)

EPSILON = 1e-6
SETTINGS_POLL_S = 0.1  # a long wait for the next frame re-reads the settings this often


@dataclass
class MonitorStats:
    frames_read: int = 0
    frames_analysed: int = 0
    frames_missing: int = 0
    embeddings: int = 0
    events: int = 0


class Monitor:
    """Runs ``pipeline`` on ``source`` and emits through ``emitter`` until stopped or the source ends.

    ``realtime``: pace reads by the wall clock (webcam, demo); False plays a file or a
    scene as fast as the CPU allows. ``reopen``: called when the source ends to play it
    again (the demo scene loops); its frames continue the clock after the last one.
    """

    def __init__(
        self,
        emitter: Emitter,
        source: FrameSource,
        pipeline: Pipeline,
        evidence: LocalEvidence | None = None,
        realtime: bool = True,
        reopen: Callable[[], FrameSource] | None = None,
        started_at: datetime | None = None,
    ) -> None:
        self.emitter = emitter
        self.source = source
        self.pipeline = pipeline
        self.evidence = evidence
        self.realtime = realtime
        self.reopen = reopen
        self.started_at = started_at or datetime.now(UTC)
        self.stats = MonitorStats()
        self._offset = 0.0  # added to source times after a reopen
        self._last_t: float | None = None
        self._next_due = 0.0
        self._last_evidence_t: float | None = None
        self._wall_start = time.monotonic()
        self._last_wall = self._wall_start

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> MonitorStats:
        """Analyse frames until ``stop`` is set or a non-looping source ends."""
        try:
            while not stop.is_set():
                settings = self.emitter.settings
                self.pipeline.settings = settings
                if self._last_t is not None:  # a pushed analysis_fps applies to the frame awaited now
                    self._next_due = self._last_t + 1.0 / settings.analysis_fps
                if self.realtime and await self._wait_due(stop):
                    break
                frame, t_missing = await asyncio.to_thread(self._read)
                if frame is None:
                    if self.source.ended:
                        if self.reopen is None:
                            break
                        self._restart()
                        continue
                    self.stats.frames_missing += 1
                    t = t_missing
                    if t < self._next_due - EPSILON and not self.realtime:
                        continue
                    result = self.pipeline.missing(t)
                    self._after(result, None, settings)
                    continue
                t = frame.t + self._offset
                if t < self._next_due - EPSILON:
                    continue  # between analysed frames
                result = await asyncio.to_thread(self.pipeline.process, t, frame.image)
                self.stats.frames_analysed += 1
                self.stats.embeddings += result.embedded
                self._after(result, frame.image, settings)
        finally:
            self.source.close()
        log.info("monitor stopped", extra={"stats": vars(self.stats)})
        return self.stats

    def _read(self) -> tuple[Frame | None, float]:
        """The next frame, and (for a missing one) the time it was due on the source's clock."""
        before = self.source.t
        frame = self.source.read()
        self.stats.frames_read += frame is not None
        if frame is not None:
            return frame, frame.t + self._offset
        if before is not None:
            return None, before + self._offset
        if self._last_t is None:
            return None, time.monotonic() - self._wall_start
        return None, max(self._last_t, self._next_due)

    def _restart(self) -> None:
        if self.reopen is None:
            return
        self.source.close()
        period = 1.0 / self.pipeline.settings.analysis_fps
        self._offset = (self._last_t if self._last_t is not None else 0.0) + period
        self.source = self.reopen()
        log.info("source restarted", extra={"offset_s": round(self._offset, 3)})

    async def _wait_due(self, stop: asyncio.Event) -> bool:
        """Sleep until the next analysis is due on the wall clock; True when stopped meanwhile.

        The period is re-read from the settings every ``SETTINGS_POLL_S``, so a pushed
        analysis_fps shortens a long wait at once."""
        if self._last_t is None:
            return False
        while not stop.is_set():
            self._next_due = self._last_t + 1.0 / self.emitter.settings.analysis_fps
            delay = self._next_due - (self._last_t + (time.monotonic() - self._last_wall))
            if delay <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, SETTINGS_POLL_S)):
                    await stop.wait()
        return stop.is_set()

    # ------------------------------------------------------------- emitting

    def ts_of(self, t: float) -> datetime:
        return self.started_at + timedelta(seconds=t)

    def _after(self, result: FrameResult, image: Image | None, settings: AgentSettings) -> None:
        t = result.observation.t
        self._last_t, self._last_wall = t, time.monotonic()
        self._next_due = t + 1.0 / settings.analysis_fps
        transition = result.transition
        ts = self.ts_of(t)
        if transition is not None:
            phases = incident_phases(transition)
            for kind, phase in phases:
                if phase == "end":
                    self._emit(IncidentPayload(kind=kind, phase="end", trace=transition.trace), ts)
            self._emit(StatePayload(state=transition.state, trace=transition.trace), ts)
            for kind, phase in phases:
                if phase == "start":
                    evidence, trace = self._evidence(image, f"incident_start:{kind}", t, ts)
                    payload = IncidentPayload(
                        kind=kind, phase="start", evidence=evidence, trace={**transition.trace, **trace}
                    )
                    self._emit(payload, ts)
        if (
            self.evidence is not None
            and result.state is not None
            and self._last_evidence_t is not None
            and t - self._last_evidence_t >= settings.evidence_interval_s
        ):
            evidence, trace = self._evidence(image, "periodic", t, ts)
            self._emit(StatePayload(state=result.state, evidence=evidence, trace=trace), ts)
        if self._last_evidence_t is None and result.state is not None:
            self._last_evidence_t = t  # the periodic clock starts with the first state

    def _evidence(
        self, image: Image | None, reason: str, t: float, ts: datetime
    ) -> tuple[list[str], dict[str, Any]]:
        self._last_evidence_t = t
        if self.evidence is None:
            return [], {"evidence": {"reason": reason, "images": [], "missing": ["evidence disabled"]}}
        try:
            record = self.evidence.capture(image, reason, now=ts)
        except OSError as exc:  # a full or read-only disk must not stop detection
            log.error("evidence not stored", extra={"reason": reason, "error": str(exc)})
            return [], {"evidence": {"reason": reason, "images": [], "missing": [f"not stored: {exc}"]}}
        return record.sha256s, {"evidence": record.trace()}

    def _emit(self, payload: StatePayload | IncidentPayload, ts: datetime) -> None:
        self.emitter.emit(payload, ts=ts)
        self.stats.events += 1
