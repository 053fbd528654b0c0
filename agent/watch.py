"""What the agent saw last, for punches and the local page: a Pipeline that keeps its latest frame.

:class:`WatchedPipeline` is the detection :class:`~agent.detect.pipeline.Pipeline` plus a
:class:`Snapshot` of the latest analysed frame (image, face boxes with their roles and
distances, the observation, the monotonic time it was analysed). The monitor runs
``process`` in a worker thread; readers (punches on the event loop, the page's HTTP
threads) take the snapshot under a lock. :func:`render_preview` draws the boxes on a copy
for the camera preview. :class:`RecordingEvidenceStore` remembers the last evidence taken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

from agent.detect.classify import Observation
from agent.detect.pipeline import FrameResult, Matcher, Pipeline
from agent.detect.tracker import visible
from agent.evidence import EvidenceRecord, LocalEvidence, encode_jpeg
from agent.face.engine import Box, FaceEngine, FaceEngineError, Image
from agent.punch import Verification, verification_of
from realtime.protocol import AgentSettings

PREVIEW_MAX = (640, 480)
COLOURS = {  # BGR
    "user": (60, 180, 60),
    "other": (40, 40, 230),
    "stranger": (40, 40, 230),
    "ignored": (160, 160, 160),
}


@dataclass(frozen=True)
class FaceBox:
    box: Box
    distance: float | None
    role: str


@dataclass(frozen=True)
class Snapshot:
    """The latest analysed frame: ``image`` None when the camera gave none."""

    seq: int  # analysed frames so far
    at: float  # monotonic seconds at analysis
    t: float  # the source's clock
    image: Image | None
    faces: tuple[FaceBox, ...]
    observation: Observation
    state: str | None

    def verification(self) -> Verification:
        return verification_of(self.observation, self.at)


class WatchedPipeline(Pipeline):
    """A Pipeline that keeps a Snapshot of its latest frame and can have its template replaced."""

    def __init__(
        self,
        engine: FaceEngine,
        matcher: Matcher,
        settings: AgentSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        has_template: bool = True,
    ) -> None:
        super().__init__(engine, matcher, settings)
        self.clock = clock
        self.has_template = has_template
        self._lock = threading.Lock()
        self._latest: Snapshot | None = None
        self._seq = 0
        self._changed = threading.Condition(self._lock)
        self.engine_lock = threading.Lock()  # the engine is used by the monitor, punches and registration
        self._verified: tuple[int, Verification] | None = None  # (snapshot seq, fresh verification)

    @property
    def latest(self) -> Snapshot | None:
        with self._lock:
            return self._latest

    def verification(self) -> Verification | None:
        latest = self.latest
        return None if latest is None else latest.verification()

    def verify_latest(self) -> Verification | None:
        """A fresh check of the latest frame: every face in it detected and embedded now.

        The tracker re-embeds a face only every few seconds, so someone who took the user's
        place in the same spot could still carry the user's distance; a punch must not rely
        on that. Runs the engine (about 0.1 s per face with dlib): call it from a worker thread."""
        snapshot = self.latest
        if snapshot is None or snapshot.image is None:
            return None if snapshot is None else snapshot.verification()
        with self._lock:
            cached = self._verified
        if cached is not None and cached[0] == snapshot.seq:
            return cached[1]
        distances: list[float | None] = []
        with self.engine_lock:
            for face in self.engine.detect(snapshot.image):
                try:
                    distances.append(self.matcher(self.engine.embed(snapshot.image, face)))
                except FaceEngineError:
                    distances.append(None)
        verification = Verification(snapshot.at, camera=True, distances=tuple(distances))
        with self._lock:
            self._verified = (snapshot.seq, verification)
        return verification

    def threshold(self) -> float:
        return self.engine.threshold(self.settings.threshold_level)

    def process(self, t: float, image: Image) -> FrameResult:
        with self.engine_lock:
            result = super().process(t, image)
        roles = {note.track: note.role for note in result.observation.faces}
        faces = tuple(
            FaceBox(tr.box, tr.distance, roles.get(tr.id, "ignored")) for tr in visible(self.tracks, t)
        )
        self._record(t, image, faces, result)
        return result

    def missing(self, t: float, reason: str = "no frame from the camera") -> FrameResult:
        result = super().missing(t, reason)
        self._record(t, None, (), result)
        return result

    def _record(self, t: float, image: Image | None, faces: tuple[FaceBox, ...], result: FrameResult) -> None:
        with self._changed:
            self._seq += 1
            self._latest = Snapshot(
                self._seq, self.clock(), t, image, faces, result.observation, result.state
            )
            self._changed.notify_all()

    @property
    def seq(self) -> int:
        """Frames analysed so far (the number of the latest snapshot, even once forgotten)."""
        with self._lock:
            return self._seq

    def wait_next(self, after: int, timeout: float) -> Snapshot | None:
        """Block until a snapshot newer than ``after`` exists (or ``timeout``); for worker threads."""

        def newer() -> bool:
            return self._seq > after and self._latest is not None

        with self._changed:
            self._changed.wait_for(newer, timeout)
            return self._latest if newer() else None

    def forget(self) -> None:
        """The camera closed: no frame to show or to vouch for anyone until it delivers again."""
        with self._lock:
            self._latest = None
            self._verified = None

    def replace_matcher(self, matcher: Matcher) -> None:
        """Use a new template from the next frame on; every face is embedded again."""
        self.matcher = matcher
        self.tracks = ()
        with self._lock:
            self._verified = None
        self.has_template = True


def render_preview(snapshot: Snapshot, threshold: float) -> bytes | None:
    """The snapshot's frame as JPEG with each face boxed (green: the user, red: others) and its distance."""
    if snapshot.image is None:
        return None
    image = np.ascontiguousarray(snapshot.image.copy())
    thickness = max(2, image.shape[1] // 320)
    for face in snapshot.faces:
        b = face.box
        colour = COLOURS.get(face.role, COLOURS["ignored"])
        cv2.rectangle(image, (b.x, b.y), (b.x + b.w, b.y + b.h), colour, thickness)
        label = face.role if face.distance is None else f"{face.role} {face.distance:.2f}/{threshold:.2f}"
        cv2.putText(
            image,
            label,
            (b.x, max(12, b.y - 6)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * thickness / 2,
            colour,
            thickness,
        )
    data, _w, _h = encode_jpeg(np.asarray(image, dtype=np.uint8), PREVIEW_MAX, quality=75)
    return data


class RecordingEvidenceStore(LocalEvidence):
    """Local evidence that remembers its last record (shown on the local page) and hands each
    record to ``forward`` (the session's spool, which uploads the images to the server)."""

    last: EvidenceRecord | None = None
    forward: Callable[[EvidenceRecord], None] | None = None

    def capture(self, camera: Image | None, reason: str, now: datetime | None = None) -> EvidenceRecord:
        record = super().capture(camera, reason, now)
        self.last = record
        if self.forward is not None:
            self.forward(record)
        return record
