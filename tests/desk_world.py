"""Shared pieces of the punch / control / local page / live settings tests.

Real faces from ../shared/faces pasted by the scene composer; the only fakes are at the
hardware edges: the camera (:class:`StillCamera`: a webcam that shows whatever image the test
puts in front of it, and counts what is read from it) and the clock (:class:`ManualClock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from agent.capture.scene import Appearance, CropCache, Scene, covered_frame, frame_at, office_background
from agent.capture.sources import Frame
from agent.desk import Desk
from agent.face.dlib_engine import DlibEngine
from agent.face.engine import Image
from agent.face.enroll import enroll, load_images
from agent.face.templates import Template, best_match
from agent.lock import LockResult
from agent.monitor import Monitor
from agent.watch import RecordingEvidenceStore, WatchedPipeline
from realtime.protocol import AgentSettings
from tests.faces import FACES, require_faces

USER = "obama/3.jpg"  # the user (template from obama/1.jpg and 2.jpg): dlib distance 0.24
STRANGER = "biden/1.jpg"  # someone else: distance 0.59


@cache
def engine() -> DlibEngine:
    return DlibEngine()


@cache
def template() -> Template:
    require_faces()
    result = enroll(engine(), load_images([FACES / "obama" / "1.jpg", FACES / "obama" / "2.jpg"]))
    if result.template is None:
        raise RuntimeError("the user's photos did not enroll")
    return result.template


@cache
def _crops() -> CropCache:
    return CropCache(DlibEngine(detect_width=2000).detect)


def scene_image(photo: str | None, covered: bool = False) -> Image:
    """One composed 640x480 frame: ``photo``'s face in front of the office background (or nobody)."""
    if covered:
        return covered_frame(640, 480)
    if photo is None:
        return office_background(640, 480).copy()
    require_faces()
    face = Appearance(FACES / photo, 0.0, 1.0, cx=0.45, height=0.45)
    scene = Scene(fps=2.0, duration_s=1.0, appearances=(face,))
    image = frame_at(scene, 0.0, _crops())
    if image is None:
        raise RuntimeError(f"no frame composed for {photo}")
    return image


class StillCamera:
    """A webcam that shows ``image`` (None: the camera delivers nothing); ``t`` is wall-clock seconds.

    Like a webcam, a read opens the device when it is closed; ``reads``, ``opens`` and ``closes``
    count what happened to it."""

    def __init__(self, image: Image | None) -> None:
        self.image = image
        self.ended = False
        self.t: float | None = None  # like a webcam: a frame not grabbed yet has no time
        self._start = time.monotonic()
        self.reads = 0
        self.opens = 1  # opened when made, as WebcamSource is
        self.closes = 0
        self.is_open = True

    def read(self) -> Frame | None:
        if not self.is_open:
            self.is_open, self.opens = True, self.opens + 1
        self.reads += 1
        image = self.image
        return None if image is None else Frame(time.monotonic() - self._start, image)

    def close(self) -> None:
        if self.is_open:
            self.is_open, self.closes = False, self.closes + 1

    def properties(self) -> dict[str, Any]:
        return {"index": 0, "width": 640, "height": 480, "fps": 30.0, "backend": "still"}


@dataclass
class Recorder:
    """A session stand-in for pure desk tests: settings, and the payloads emitted."""

    settings: AgentSettings = field(default_factory=AgentSettings)
    emitted: list[Any] = field(default_factory=list)
    tasks: tuple[str, ...] | None = None  # offered by the server; None: it does not say
    stamps: list[Any] = field(default_factory=list)  # each emitted payload's ts

    def emit(self, payload: Any, ts: Any = None) -> Any:
        self.emitted.append(payload)
        self.stamps.append(ts)
        return payload


@dataclass
class LockRecorder:
    """The OS screen lock, recorded instead of locking the developer's screen."""

    calls: int = 0
    locked: bool = True

    def __call__(self) -> LockResult:
        self.calls += 1
        if self.locked:
            return LockResult(True, "test-locker")
        return LockResult(False, "test-locker", "test-locker failed: exit code 1")


def frames(pipeline: WatchedPipeline) -> int:
    """How many frames the pipeline has analysed."""
    latest = pipeline.latest
    return 0 if latest is None else latest.seq


def watched_pipeline(settings: AgentSettings | None = None) -> WatchedPipeline:
    tpl = template()
    return WatchedPipeline(engine(), lambda e: best_match(tpl, e), settings)


class ManualClock:
    """The agent's clock, moved by the test (:class:`agent.clock.AgentClock`)."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def frame(self, t: float) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@contextlib.asynccontextmanager
async def running_monitor(
    desk: Desk,
    camera: StillCamera,
    evidence: RecordingEvidenceStore | None = None,
    gated: bool = False,
) -> AsyncIterator[Monitor]:
    """The real monitor on ``camera`` in real time, emitting through ``desk``, until the block ends;
    ``gated``: only on duty (the desk's camera gate, as the running agent), else always."""
    gate = desk.camera_gate if gated else None
    monitor = Monitor(desk, camera, desk.pipeline, evidence, realtime=True, clock=desk.event_clock, gate=gate)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        yield monitor
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
