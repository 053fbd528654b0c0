"""The face-engine interface every backend implements (dlib, insightface).

Images are numpy arrays in OpenCV's BGR order, ``uint8``, shape (H, W, 3).
Embeddings are L2-normalised float32 vectors, so engines compare them the same
way: the Euclidean distance between two unit vectors (0 = identical, 2 = opposite).
Each engine says, per threshold level 1 (lenient) to 5 (strict), the largest
distance that still counts as the same person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Embedding = npt.NDArray[np.float32]
LEVELS = (1, 2, 3, 4, 5)


class FaceEngineError(RuntimeError):
    """A face engine cannot be loaded or used (missing models, bad input)."""


@dataclass(frozen=True)
class Box:
    """A face box in pixels of the image it was found in."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return max(0, self.w) * max(0, self.h)

    def iou(self, other: Box) -> float:
        """Intersection over union of two boxes (0..1)."""
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2 = min(self.x + self.w, other.x + other.w)
        y2 = min(self.y + self.h, other.y + other.h)
        inter = max(0, x2 - x1) * max(0, y2 - y1)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, factor: float) -> Box:
        return Box(
            round(self.x * factor), round(self.y * factor), round(self.w * factor), round(self.h * factor)
        )


@dataclass(frozen=True)
class Face:
    """One detected face: box, landmarks (N x 2, image pixels) and detector score.

    ``height``: the face's height estimated from its landmarks, when the engine's boxes come
    in coarse steps (dlib's HOG boxes: steps of about 1.2x), so faces compare by size
    precisely; None: the box's height is precise enough."""

    box: Box
    landmarks: tuple[tuple[float, float], ...]
    score: float
    height: float | None = None

    @property
    def size(self) -> float:
        """The face's height in pixels: ``height`` if estimated, else the box's."""
        return self.height if self.height is not None else float(self.box.h)


class FaceEngine(Protocol):
    """What the agent needs from a face backend."""

    name: str  # "dlib" | "insightface"
    model_version: str  # e.g. "dlib_face_recognition_resnet_model_v1" or "buffalo_s"

    def detect(self, image: Image) -> list[Face]:
        """Faces in ``image`` (BGR), best first."""
        ...

    def embed(self, image: Image, face: Face) -> Embedding:
        """The unit-length embedding of ``face`` found in ``image``."""
        ...

    def threshold(self, level: int) -> float:
        """Largest distance between unit embeddings that counts as a match at ``level`` (1-5)."""
        ...


def distance(a: Embedding, b: Embedding) -> float:
    """Euclidean distance between two unit embeddings."""
    return float(np.linalg.norm(a.astype(np.float32) - b.astype(np.float32)))


def normalise(vector: npt.ArrayLike) -> Embedding:
    """``vector`` scaled to unit length, as float32."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise FaceEngineError("cannot normalise an all-zero embedding")
    return (v / norm).astype(np.float32)


def check_level(level: int) -> int:
    if level not in LEVELS:
        raise ValueError(f"threshold level: expected 1 to 5, got {level!r}")
    return level
