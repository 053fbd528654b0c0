"""``--source`` of ``telework agent``: ``webcam[:INDEX]``, ``video:PATH``, ``folder:PATH``, ``scene:demo``.

``scene:demo`` is a looping 100-second scene that plays every state with the sample
faces the insightface package ships (``insightface/data/images``: ``Tom_Hanks_54745.png``
is the user, a face of the group photo ``t1.jpg`` the peeker and the impersonator), so
the demo needs no camera and no test data. Its template is enrolled from the user's
photo at start when no ``--template`` is given.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dlib

from agent.capture.scene import Appearance, CropCache, Scene, SceneSource
from agent.capture.sources import FrameSource, ImageFolderSource, VideoFileSource, WebcamSource
from agent.face.engine import Box, Face, Image

SourceKind = Literal["webcam", "video", "folder", "scene"]
SCENES = ("demo",)
DEMO_USER = "Tom_Hanks_54745.png"
DEMO_GROUP = "t1.jpg"
DEMO_INTRUDER_INDEX = 4  # face of t1.jpg counted from the left; dlib distance to the user 0.59


class SourceSpecError(ValueError):
    """A ``--source`` value that cannot be used."""


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    index: int = 0
    path: Path | None = None
    scene: str | None = None

    @property
    def realtime(self) -> bool:
        """Whether frames come at the wall clock's pace (a camera) rather than as fast as read."""
        return self.kind == "webcam"


def parse_source(text: str) -> SourceSpec:
    """Pure: ``webcam``, ``webcam:1``, ``video:clip.mp4``, ``folder:frames/``, ``scene:demo``."""
    kind, _, rest = text.strip().partition(":")
    if kind == "webcam":
        if not rest:
            return SourceSpec("webcam")
        if not rest.isdigit():
            raise SourceSpecError(f"--source webcam:INDEX: expected a camera index 0, 1, ..., got {rest!r}")
        return SourceSpec("webcam", index=int(rest))
    if kind in ("video", "folder"):
        if not rest:
            raise SourceSpecError(f"--source {kind}:PATH: the path is missing")
        return SourceSpec(kind, path=Path(rest).expanduser())  # type: ignore[arg-type]
    if kind == "scene":
        if rest not in SCENES:
            raise SourceSpecError(f"--source scene:NAME: expected one of {', '.join(SCENES)}, got {rest!r}")
        return SourceSpec("scene", scene=rest)
    raise SourceSpecError(
        f"--source: expected webcam[:INDEX], video:PATH, folder:PATH or scene:demo, got {text!r}"
    )


def sample_images() -> Path:
    """The folder of sample face images inside the installed insightface package."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or spec.origin is None:
        raise SourceSpecError(
            "scene:demo needs the sample images of the insightface package: pip install insightface"
        )
    folder = Path(spec.origin).parent / "data" / "images"
    if not (folder / DEMO_USER).is_file() or not (folder / DEMO_GROUP).is_file():
        raise SourceSpecError(f"scene:demo: sample images {DEMO_USER}, {DEMO_GROUP} not found in {folder}")
    return folder


def photo_detector() -> Callable[[Image], list[Face]]:
    """A full-resolution HOG detector (upsampled once) for cutting faces out of small sample photos."""
    detector = dlib.get_frontal_face_detector()

    def detect(image: Image) -> list[Face]:
        rects = detector(image[:, :, ::-1].copy(), 1)
        return [Face(Box(r.left(), r.top(), r.width(), r.height()), (), 1.0) for r in rects]

    return detect


def demo_scene(folder: Path, fps: float = 2.0) -> Scene:
    """100 s: user, a peeker beside, nobody (away), a stranger alone, user, covered lens, no camera."""
    user, group = folder / DEMO_USER, folder / DEMO_GROUP
    return Scene(
        fps=fps,
        duration_s=100.0,
        appearances=(
            Appearance(user, 0.0, 25.0, cx=0.4, height=0.45),
            Appearance(group, 10.0, 18.0, cx=0.78, cy=0.4, height=0.4, face_index=DEMO_INTRUDER_INDEX),
            Appearance(group, 60.0, 68.0, cx=0.5, height=0.45, face_index=DEMO_INTRUDER_INDEX),
            Appearance(user, 70.0, 100.0, cx=0.42, height=0.45),
        ),
        covered=((80.0, 86.0),),
        unavailable=((92.0, 96.0),),
    )


def open_source(spec: SourceSpec, fps: float = 2.0) -> tuple[FrameSource, Callable[[], FrameSource] | None]:
    """The frame source, and for scenes a function that opens it again (the demo loops)."""
    if spec.kind == "webcam":
        return WebcamSource(spec.index), None
    if spec.kind == "video":
        return VideoFileSource(spec.path or Path(), fps=fps), None
    if spec.kind == "folder":
        return ImageFolderSource(spec.path or Path(), fps=fps), None
    scene = demo_scene(sample_images(), fps)
    crops = CropCache(photo_detector())

    def reopen() -> FrameSource:
        return SceneSource(scene, crops=crops)

    return reopen(), reopen
