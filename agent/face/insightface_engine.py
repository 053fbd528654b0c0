"""The ``insightface`` face engine: SCRFD detector and ArcFace recogniser from a model pack.

Models are read from ``<model_dir>/<pack>/*.onnx`` (see agent.face.models) through
insightface's model zoo on ONNX Runtime's CPU provider. Nothing is ever downloaded
here: a missing pack is a :class:`FaceEngineError` naming the folder and the
``telework models fetch`` command. insightface's pretrained packs are licensed for
non-commercial research only (agent.face.models.LICENSE_NOTICE).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from agent.face.engine import Box, Embedding, Face, FaceEngineError, Image, check_level, normalise
from agent.face.models import missing_pack_message, pack_dir, pack_files

log = logging.getLogger(__name__)

PROVIDERS = ["CPUExecutionProvider"]
INSTALL_HINT = "pip install 'telework-supporter[insightface]'"
# Smallest cosine similarity that counts as the same person, per level 1 (lenient) .. 5 (strict).
# ArcFace (w600k) same-person pairs typically score 0.3-0.7, different people below 0.2.
COSINE_BY_LEVEL = {1: 0.20, 2: 0.28, 3: 0.36, 4: 0.44, 5: 0.52}
# Files of the buffalo packs that are neither detector nor recogniser: loaded last, if at all.
_AUXILIARY = ("1k3d68", "2d106det", "genderage")
_PREFERRED = ("det", "scrfd", "w600k", "glint", "arcface")


def cosine_to_distance(cosine: float) -> float:
    """Euclidean distance between unit vectors whose cosine similarity is ``cosine``."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * cosine))


def load_order(files: list[Path]) -> list[Path]:
    """``files`` with likely detector/recogniser names first and auxiliary models last."""

    def rank(path: Path) -> tuple[int, str]:
        stem = path.stem.lower()
        if stem.startswith(_AUXILIARY):
            return 2, path.name
        return (0 if stem.startswith(_PREFERRED) else 1), path.name

    return sorted(files, key=rank)


class InsightFaceEngine:
    """SCRFD + ArcFace (insightface model zoo) behind the FaceEngine interface."""

    name = "insightface"

    def __init__(
        self,
        model_dir: Path,
        pack: str = "buffalo_s",
        det_size: tuple[int, int] = (320, 320),
        det_thresh: float = 0.5,
    ) -> None:
        if len(det_size) != 2 or any(v < 32 or v % 32 for v in det_size):
            raise ValueError(f"det_size: expected (width, height), multiples of 32, got {det_size!r}")
        self.model_version = pack
        self.det_size = (int(det_size[0]), int(det_size[1]))
        folder = pack_dir(model_dir, pack)
        files = pack_files(model_dir, pack)
        if not files:
            raise FaceEngineError(missing_pack_message(model_dir, pack))
        get_model = _model_zoo()
        models: dict[str, Any] = {}
        for path in load_order(files):
            if {"detection", "recognition"} <= models.keys():
                break
            model = _load(get_model, path)
            task = getattr(model, "taskname", None)
            if task in ("detection", "recognition") and task not in models:
                models[task] = model
                log.debug("insightface model loaded", extra={"task": task, "file": str(path)})
        missing = [t for t in ("detection", "recognition") if t not in models]
        if missing:
            raise FaceEngineError(
                f"insightface pack {pack!r} in {folder}: expected a detection (SCRFD) and a recognition "
                f"(ArcFace) model among {[p.name for p in files]}, found no {' and no '.join(missing)} model"
            )
        self._detector = models["detection"]
        self._recogniser = models["recognition"]
        self._detector.prepare(-1, input_size=self.det_size, det_thresh=det_thresh)
        self._recogniser.prepare(-1)
        self.embedding_size = int(self._recogniser.output_shape[-1])
        log.info(
            "insightface engine ready",
            extra={
                "pack": pack,
                "folder": str(folder),
                "detector": Path(self._detector.model_file).name,
                "recogniser": Path(self._recogniser.model_file).name,
                "det_size": self.det_size,
            },
        )

    def threshold(self, level: int) -> float:
        return cosine_to_distance(COSINE_BY_LEVEL[check_level(level)])

    def detect(self, image: Image) -> list[Face]:
        """Faces in ``image`` (BGR uint8), best score first, boxes clipped to the image."""
        _check_image(image)
        dets, kpss = self._detector.detect(image, input_size=self.det_size)
        height, width = image.shape[:2]
        faces: list[Face] = []
        for i in np.argsort(-dets[:, 4], kind="stable"):
            box = _box(dets[i, :4], width, height)
            if box.area == 0:
                continue
            points = kpss[i] if kpss is not None else np.empty((0, 2), dtype=np.float32)
            landmarks = tuple((float(x), float(y)) for x, y in points)
            faces.append(Face(box=box, landmarks=landmarks, score=float(dets[i, 4])))
        return faces

    def embed(self, image: Image, face: Face) -> Embedding:
        """ArcFace embedding of the face aligned on its 5 keypoints (norm_crop), unit length."""
        _check_image(image)
        if len(face.landmarks) != 5:
            raise FaceEngineError(
                "insightface embeds faces with the 5 keypoints of its own detector "
                f"(eyes, nose, mouth corners); got {len(face.landmarks)} landmarks"
            )
        from insightface.utils import face_align

        kps = np.asarray(face.landmarks, dtype=np.float32)
        with (
            warnings.catch_warnings()
        ):  # norm_crop uses scikit-image's deprecated SimilarityTransform.estimate
            warnings.simplefilter("ignore", FutureWarning)
            aligned = face_align.norm_crop(image, landmark=kps, image_size=self._recogniser.input_size[0])
        return normalise(self._recogniser.get_feat(aligned))


def _model_zoo() -> Any:
    try:
        import onnxruntime
        from insightface.model_zoo import get_model
    except ImportError as exc:
        raise FaceEngineError(
            f"the insightface engine needs insightface and onnxruntime: {INSTALL_HINT} ({exc})"
        ) from exc
    onnxruntime.set_default_logger_severity(3)
    return get_model


def _load(get_model: Any, path: Path) -> Any:
    try:
        # A path ending in .onnx never downloads (download defaults to False as well).
        return get_model(str(path), providers=PROVIDERS, download=False)
    except Exception as exc:  # onnx/onnxruntime raise many types for a bad file
        raise FaceEngineError(f"cannot load model {path}: {type(exc).__name__}: {exc}") from exc


def _box(xyxy: np.ndarray, width: int, height: int) -> Box:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    left, top = max(0, round(x1)), max(0, round(y1))
    right, bottom = min(width, round(x2)), min(height, round(y2))
    return Box(left, top, max(0, right - left), max(0, bottom - top))


def _check_image(image: Image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = (
            f"{image.dtype} array of shape {image.shape}"
            if isinstance(image, np.ndarray)
            else type(image).__name__
        )
        raise FaceEngineError(f"expected a BGR uint8 image of shape (H, W, 3), got {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise FaceEngineError(f"expected a non-empty image, got shape {image.shape}")
