"""The ``dlib`` face backend: HOG detector, 5-point landmarks, ResNet embeddings.

The model files come from the ``face_recognition_models`` package (weights
usable commercially); nothing is downloaded. Detection runs on the image as
given (full resolution: enrollment and punch verification count every face
the photo holds); the live pipeline scales frames itself
(:mod:`agent.detect.detection`). The HOG detector scans an 80x80 window, so it
finds faces down to about 80 px high in the image it scans
(``DetectionParams.target_px``). The embedding is computed on the full-resolution
image from its 5 landmarks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np

from agent.face.engine import Box, Embedding, Face, FaceEngineError, Image, check_level, normalise

log = logging.getLogger(__name__)

MODEL_VERSION = "dlib_face_recognition_resnet_model_v1"
INSTALL_HINT = "pip install face_recognition_models"

# Largest unit-vector distance that still counts as the same person, per level
# 1 (lenient) .. 5 (strict). dlib's raw descriptors have norms of about 1.3-1.5,
# so its customary raw threshold 0.6 is about 0.42 here. Calibrated on
# ../shared/faces (18 single-face photos, 6 people): after normalisation all
# same-person pairs are <= 0.361 (raw <= 0.521) and all different-person pairs
# >= 0.442 (raw >= 0.656); level 3 sits in the middle of that gap.
THRESHOLDS: dict[int, float] = {1: 0.45, 2: 0.425, 3: 0.40, 4: 0.375, 5: 0.35}
# Distance between the eye centres, and from their midpoint to the nose, per box height (the mean
# over the single-face photos of ../shared/faces, pasted at 70-200 px): see landmark_height.
EYES_PER_HEIGHT = 0.409
NOSE_PER_HEIGHT = 0.310


@dataclass(frozen=True)
class DlibModels:
    """Paths of the model files the engine loads."""

    shape_predictor: Path
    recognition: Path


def model_paths() -> DlibModels:
    """Where ``face_recognition_models`` keeps its files; FaceEngineError when it is not installed."""
    try:
        import face_recognition_models as frm
    except ImportError as exc:
        raise FaceEngineError(
            f"the dlib face engine needs the face_recognition_models package: {INSTALL_HINT}"
        ) from exc
    return DlibModels(
        shape_predictor=Path(frm.pose_predictor_five_point_model_location()),
        recognition=Path(frm.face_recognition_model_location()),
    )


def _require(path: Path) -> str:
    if not path.is_file():
        raise FaceEngineError(f"dlib model file missing: {path} (install it with: {INSTALL_HINT})")
    return str(path)


def _check_image(image: Image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise FaceEngineError(f"expected a BGR uint8 image of shape (H, W, 3), got {got}")


class DlibEngine:
    """FaceEngine backed by dlib and the models of ``face_recognition_models``."""

    name = "dlib"
    model_version = MODEL_VERSION

    def __init__(
        self, upsample: int = 0, detect_width: int | None = None, models: DlibModels | None = None
    ) -> None:
        """``detect_width``: images wider than this are scaled down to it before detection (None,
        the default: the image's own size, as enrollment and punches need); ``upsample``: dlib's
        pyramid upsampling (each step finds faces half as large, at about 4x the cost).
        The models are loaded once per process, so several engines with other options are cheap."""
        if upsample < 0:
            raise ValueError(f"upsample: expected 0 or more, got {upsample}")
        if detect_width is not None and detect_width < 32:
            raise ValueError(f"detect_width: expected at least 32 pixels or None, got {detect_width}")
        paths = models or model_paths()
        self.upsample = upsample
        self.detect_width = detect_width
        self._detector, self._predictor, self._recogniser = _load(
            _require(paths.shape_predictor), _require(paths.recognition)
        )
        log.info(
            "dlib face engine ready",
            extra={"upsample": upsample, "detect_width": detect_width, "models": str(paths.recognition)},
        )

    def threshold(self, level: int) -> float:
        return THRESHOLDS[check_level(level)]

    def detect(self, image: Image) -> list[Face]:
        """Faces in ``image`` (BGR), highest detector score first."""
        _check_image(image)
        height, width = image.shape[:2]
        scale = 1.0 if self.detect_width is None else min(1.0, self.detect_width / width)
        small = (
            image
            if scale == 1.0
            else cv2.resize(
                image,
                (max(1, round(width * scale)), max(1, round(height * scale))),
                interpolation=cv2.INTER_AREA,
            )
        )
        rgb = np.ascontiguousarray(small[:, :, ::-1])
        rects, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
        faces = []
        full_rgb: Image | None = None
        for rect, score in zip(rects, scores, strict=True):
            box = _clip(
                Box(
                    round(rect.left() / scale),
                    round(rect.top() / scale),
                    round(rect.width() / scale),
                    round(rect.height() / scale),
                ),
                width,
                height,
            )
            if box.area > 0:
                if full_rgb is None:
                    full_rgb = np.ascontiguousarray(image[:, :, ::-1])
                points = self._landmarks(full_rgb, box)
                faces.append(Face(box, points, float(score), landmark_height(points)))
        return sorted(faces, key=lambda f: f.score, reverse=True)

    def embed(self, image: Image, face: Face) -> Embedding:
        """The unit-length 128-d embedding of ``face`` (landmarks are recomputed if absent)."""
        _check_image(image)
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        shape = self._predictor(rgb, _rect(face.box))
        descriptor = self._recogniser.compute_face_descriptor(rgb, shape)
        return normalise(np.array(descriptor, dtype=np.float32))

    def _landmarks(self, rgb: Image, box: Box) -> tuple[tuple[float, float], ...]:
        shape = self._predictor(rgb, _rect(box))
        return tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))


def landmark_height(points: tuple[tuple[float, float], ...]) -> float | None:
    """The face height that dlib's 5 landmarks (two eye-corner pairs, nose) imply, or None.

    HOG boxes come in steps of about 1.2x, so two faces' box heights can be 20 % off their
    true ratio; the landmarks follow the face continuously. The larger of two estimates
    (from the distance between the eye centres, and from the eyes' midpoint to the nose,
    which a turned head does not shorten) scaled by their mean ratio to the box height
    over ../shared/faces (0.409 and 0.310 of the box height)."""
    if len(points) != 5:
        return None
    p = np.asarray(points, dtype=np.float64)
    right, left = (p[0] + p[1]) / 2, (p[2] + p[3]) / 2
    eyes = float(np.linalg.norm(right - left))
    nose = float(np.linalg.norm(p[4] - (right + left) / 2))
    return max(eyes / EYES_PER_HEIGHT, nose / NOSE_PER_HEIGHT)


@lru_cache(maxsize=4)
def _load(
    shape_predictor: str, recognition: str
) -> tuple[dlib.fhog_object_detector, dlib.shape_predictor, dlib.face_recognition_model_v1]:
    """The dlib models, loaded once per process (about 100 MB of weights)."""
    try:
        return (
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(shape_predictor),
            dlib.face_recognition_model_v1(recognition),
        )
    except RuntimeError as exc:
        raise FaceEngineError(f"cannot load dlib models {shape_predictor}, {recognition}: {exc}") from exc


def _rect(box: Box) -> dlib.rectangle:
    return dlib.rectangle(box.x, box.y, box.x + box.w - 1, box.y + box.h - 1)


def _clip(box: Box, width: int, height: int) -> Box:
    x1, y1 = max(0, box.x), max(0, box.y)
    x2, y2 = min(width, box.x + box.w), min(height, box.y + box.h)
    return Box(x1, y1, x2 - x1, y2 - y1)
