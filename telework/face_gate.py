"""The face gate of the console and the gateway: the agent's own enrollment gate (storage.face_intake).

The console may not import the agent layer; this module (the ``telework`` layer, which may)
wraps :func:`agent.face.enroll.assess` (the quality gate, faces found at full resolution) and
:func:`agent.face.enroll.same_person` (one person across the user's images), so an image
uploaded in the console passes exactly the checks an enrollment on a PC does.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.face.engine import FaceEngine
from agent.face.enroll import ImageResult, assess, same_person
from agent.face.quality import QualityResult
from agent.face.select import load_engine
from core.settings import ServerSettings
from storage.face_intake import GateFactory, Pixels, Vector, Verdict

NEW = "the new image"


class AgentGate:
    """:class:`web.faces.FaceGate` over a face engine of the agent."""

    def __init__(self, engine: FaceEngine) -> None:
        self.face_engine = engine
        self.engine = engine.name
        self.model_version = engine.model_version

    def assess(self, image: Pixels) -> Verdict:
        result = assess(self.face_engine, NEW, image)
        if result.accepted and result.embedding is not None:
            return Verdict(None, result.embedding)
        return Verdict(result.reason or "no face found")

    def other_person(self, embedding: Vector, others: Sequence[Vector]) -> str | None:
        if not others:
            return None
        passed = QualityResult(True, None, 1)
        results = [ImageResult(f"image {i}", passed, e) for i, e in enumerate(others)]
        results.append(ImageResult(NEW, passed, embedding))
        checked = same_person(self.face_engine, results)
        return None if checked[-1].accepted else checked[-1].reason


def gate_factory(settings: ServerSettings) -> GateFactory:
    """Loads the engine the settings name (``TELEWORK_FACE_ENGINE``) when first needed."""

    def make() -> AgentGate:
        kind = settings.face_engine
        assert kind in ("auto", "dlib", "insightface")
        return AgentGate(load_engine(kind, settings.face_model_dir, settings.face_model_pack))  # type: ignore[arg-type]

    return make
