"""One analysed frame: detect, track, embed what needs it, classify, step the state machine.

The engine detects on every analysed frame, scaled to the width
:func:`~agent.detect.detection.plan_width` chooses so that the smallest face that counts
(relative to the user's face of the previous frame) is found; only face tracks that are
new, moved, or due for re-verification are embedded (:mod:`agent.detect.tracker`). The classification and the
state machine are pure; this class only holds their state between frames and calls
the engine. Settings can be replaced at any time (``pipeline.settings = ...``): the
next frame uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.detect.classify import ClassifyParams, Observation, classify, frame_stats, unavailable
from agent.detect.detection import (
    DetectionParams,
    detect_at_width,
    plan_width,
    smallest_counted_face,
    user_height,
)
from agent.detect.state_machine import MachineParams, MachineState, Transition, step
from agent.detect.tracker import Track, TrackerParams, record_distances, update_tracks, visible
from agent.face.engine import Embedding, Face, FaceEngine, FaceEngineError, Image
from realtime.protocol import AgentSettings

log = logging.getLogger(__name__)

Matcher = Callable[[Embedding], float]  # embedding -> distance to the user's template


@dataclass(frozen=True)
class FrameResult:
    """What one analysed frame gave: the observation, the transition it caused, the work done."""

    observation: Observation
    transition: Transition | None
    state: str | None
    detected: int = 0
    embedded: int = 0
    detect_width: int | None = None  # the width the frame was scanned at (None: no frame)


class Pipeline:
    """Per-frame analysis with any :class:`~agent.face.engine.FaceEngine` and a template matcher."""

    def __init__(
        self,
        engine: FaceEngine,
        matcher: Matcher,
        settings: AgentSettings | None = None,
        tracker: TrackerParams | None = None,
        embed_every_frame: bool = False,
        detection: DetectionParams | None = None,
    ) -> None:
        self.engine = engine
        self.matcher = matcher
        self.settings = settings or AgentSettings()
        self.tracker_params = tracker or TrackerParams()
        self.detection = detection or DetectionParams()
        self._width: tuple[tuple[bool, int], int] | None = None  # ((user known, frame width), width)
        self.embed_every_frame = embed_every_frame  # the naive baseline, for benchmarks
        self.tracks: tuple[Track, ...] = ()
        self.machine = MachineState()
        self._next_id = 1

    @property
    def state(self) -> str | None:
        return self.machine.state

    def classify_params(self) -> ClassifyParams:
        return ClassifyParams(
            threshold=self.engine.threshold(self.settings.threshold_level),
            other_face_min_ratio=self.settings.other_face_min_ratio,
        )

    def machine_params(self) -> MachineParams:
        return MachineParams.from_settings(self.settings)

    def detect(self, image: Image) -> tuple[list[Face], int]:
        """The faces of a live frame and the width it was scanned at (planned from the current tracks)."""
        params = self.classify_params()
        user = user_height(self.tracks, params.threshold)
        smallest = smallest_counted_face(
            image.shape[0], user, params.other_face_min_ratio, params.stranger_min_face_frac
        )
        basis = (user is not None, image.shape[1])  # a width planned on another basis is not kept
        previous = self._width[1] if self._width is not None and self._width[0] == basis else None
        width = plan_width(image.shape[1], smallest, self.detection, previous, image.shape[0])
        self._width = (basis, width)
        return detect_at_width(self.engine, image, width), width

    def process(self, t: float, image: Image) -> FrameResult:
        """Analyse the frame taken at ``t`` (seconds on the source's clock)."""
        faces, width = self.detect(image)
        update = update_tracks(
            self.tracks,
            [f.box for f in faces],
            t,
            self._next_id,
            self.tracker_params,
            [f.height for f in faces],
        )
        if self.embed_every_frame:
            todo = [tr.id for tr in visible(update.tracks, t)]
        else:
            todo = list(update.need_embedding)
        distances: dict[int, float] = {}
        for track_id in todo:
            face = faces[update.detection_of[track_id]]
            try:
                distances[track_id] = self.matcher(self.engine.embed(image, face))
            except FaceEngineError as exc:  # left unverified: tried again next frame
                log.warning("face not embedded", extra={"t": t, "track": track_id, "error": str(exc)})
        self.tracks = record_distances(update.tracks, distances, t)
        self._next_id = update.next_id
        obs = classify(t, visible(self.tracks, t), image.shape[0], frame_stats(image), self.classify_params())
        return self._step(obs, detected=len(faces), embedded=len(distances), width=width)

    def missing(self, t: float, reason: str = "no frame from the camera") -> FrameResult:
        """Record that no frame was available at ``t`` (camera unavailable)."""
        self.tracks = ()
        obs = unavailable(t, self.engine.threshold(self.settings.threshold_level), reason)
        return self._step(obs)

    def _step(
        self, obs: Observation, detected: int = 0, embedded: int = 0, width: int | None = None
    ) -> FrameResult:
        self.machine, transition = step(self.machine, obs, self.machine_params())
        if transition is not None:
            log.info(
                "state %s -> %s",
                transition.previous,
                transition.state,
                extra={"t": obs.t, "rule": transition.trace["rule"], "held_s": transition.trace["held_s"]},
            )
        return FrameResult(obs, transition, self.machine.state, detected, embedded, width)
