"""Enrollment (images -> template) and verification (image + template -> match or not).

Each enrollment image goes through the quality gate, its faces found at full
resolution; accepted images give an embedding, rejected ones keep their reason.
Then the accepted images must show one person (:mod:`agent.face.identity`, at the
engine's loosest level): an image too far from the others is rejected with its
distance. Photos come from files (``load_images``) or from a frame source such as
the webcam (``capture``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from agent.capture.sources import IMAGE_SUFFIXES, FrameSource
from agent.face.engine import LEVELS, Box, Embedding, FaceEngine, Image, distance
from agent.face.identity import consistent
from agent.face.quality import QualityLimits, QualityResult, check_limits
from agent.face.templates import Template, TemplateError, best_match

log = logging.getLogger(__name__)

DEFAULT_LEVEL = 3
MAX_IMAGE_SIDE = 8192  # pixels; a larger photo is refused rather than scanned for minutes


class ImageLoadError(ValueError):
    """Some enrollment files are missing or are not images; the message lists each."""


@dataclass(frozen=True)
class ImageResult:
    """The gate's verdict on one enrollment image; ``embedding`` is set when accepted."""

    name: str
    quality: QualityResult
    embedding: Embedding | None = None
    box: Box | None = None
    other_person: tuple[float, float] | None = None  # (distance to the others, limit) when rejected so

    @property
    def accepted(self) -> bool:
        return self.embedding is not None and self.other_person is None

    @property
    def reason(self) -> str | None:
        if self.other_person is not None:
            found, limit = self.other_person
            return f"not the same person as the other images: distance {found:.2f}, need at most {limit:.2f}"
        return self.quality.reason


@dataclass(frozen=True)
class Enrollment:
    """Every image's verdict, and the template of the accepted ones (None if none was accepted)."""

    results: tuple[ImageResult, ...]
    template: Template | None

    @property
    def accepted(self) -> list[ImageResult]:
        return [r for r in self.results if r.accepted]

    @property
    def rejected(self) -> list[ImageResult]:
        return [r for r in self.results if not r.accepted]


@dataclass(frozen=True)
class ImageMatch:
    """Whether the best-matching face of an image is the template's person."""

    matched: bool
    distance: float | None  # None when the image holds no face
    threshold: float
    box: Box | None
    faces: int


def assess(engine: FaceEngine, name: str, image: Image, limits: QualityLimits | None = None) -> ImageResult:
    """Detect (at full resolution), gate and (if accepted) embed one image."""
    faces = engine.detect(image)
    quality = check_limits(image, faces, limits or QualityLimits())
    if not quality.ok:
        return ImageResult(name, quality)
    return ImageResult(name, quality, engine.embed(image, faces[0]), faces[0].box)


def enroll(
    engine: FaceEngine,
    images: Iterable[tuple[str, Image]],
    limits: QualityLimits | None = None,
    now: datetime | None = None,
) -> Enrollment:
    """Gate every ``(name, image)``; the template holds the embeddings of the accepted ones."""
    results: list[ImageResult] = []
    for index, (name, image) in enumerate(images, start=1):
        result = assess(engine, name, image, limits)
        results.append(result)
        log.info(
            "enrollment image %s: %s",
            name,
            "accepted" if result.accepted else f"rejected ({result.reason})",
            extra={"image": name, "n": index, "accepted": result.accepted, "reason": result.reason},
        )
    return _finish(engine, results, now)


def same_person(engine: FaceEngine, results: Sequence[ImageResult]) -> tuple[ImageResult, ...]:
    """``results`` with every accepted image too far from the other accepted ones rejected
    (pairwise distances within ``engine.threshold`` of the loosest level); order kept."""
    limit = engine.threshold(LEVELS[0])
    pairs = [(i, r.embedding) for i, r in enumerate(results) if r.accepted and r.embedding is not None]
    check = consistent([embedding for _, embedding in pairs], limit)
    out = list(results)
    for position, far in check.outliers.items():
        index = pairs[position][0]
        out[index] = replace(results[index], other_person=(far, limit))
        log.warning(
            "enrollment image %s: rejected (%s)",
            results[index].name,
            out[index].reason,
            extra={"image": results[index].name, "distance": round(far, 4), "limit": limit},
        )
    return tuple(out)


def _finish(engine: FaceEngine, checked: Sequence[ImageResult], now: datetime | None) -> Enrollment:
    results = same_person(engine, checked)
    embeddings = tuple(r.embedding for r in results if r.accepted and r.embedding is not None)
    created = now or datetime.now(UTC)
    template = Template(engine.name, engine.model_version, embeddings, created) if embeddings else None
    log.info(
        "enrollment done",
        extra={"images": len(results), "accepted": len(embeddings), "engine": engine.name},
    )
    return Enrollment(tuple(results), template)


def verify(engine: FaceEngine, template: Template, image: Image, level: int = DEFAULT_LEVEL) -> ImageMatch:
    """Whether ``image`` shows the template's person at threshold ``level`` (closest face wins)."""
    template.check_engine(engine)
    threshold = engine.threshold(level)
    faces = engine.detect(image)
    best: tuple[float, Box] | None = None
    for face in faces:
        d = best_match(template, engine.embed(image, face))
        if best is None or d < best[0]:
            best = (d, face.box)
    if best is None:
        return ImageMatch(False, None, threshold, None, 0)
    return ImageMatch(best[0] <= threshold, best[0], threshold, best[1], len(faces))


def image_paths(paths: Iterable[Path | str]) -> list[Path]:
    """``paths`` with each folder replaced by the image files in it (name order)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            out.extend(sorted(found))
        else:
            out.append(path)
    return out


def load_images(paths: Iterable[Path | str]) -> list[tuple[str, Image]]:
    """Read image files (folders expand to their images); ImageLoadError lists every bad one."""
    images: list[tuple[str, Image]] = []
    problems: list[str] = []
    files = image_paths(paths)
    if not files:
        raise ImageLoadError("no enrollment images given (expected image files or folders holding them)")
    for path in files:
        if not path.is_file():
            problems.append(f"{path}: file not found")
            continue
        data = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            problems.append(f"{path}: not an image OpenCV can read (expected JPEG, PNG, BMP, WebP or TIFF)")
            continue
        height, width = image.shape[:2]
        if max(height, width) > MAX_IMAGE_SIDE:  # detection runs at full resolution: bounded
            problems.append(
                f"{path}: image too large: {width}x{height} px, need at most {MAX_IMAGE_SIDE} a side"
            )
            continue
        images.append((str(path), np.asarray(image, dtype=np.uint8)))
    if problems:
        raise ImageLoadError("cannot load enrollment images:\n  " + "\n  ".join(problems))
    return images


def capture(
    engine: FaceEngine,
    source: FrameSource,
    count: int,
    limits: QualityLimits | None = None,
    min_interval_s: float = 0.5,
    max_frames: int = 600,
    now: datetime | None = None,
) -> Enrollment:
    """Read frames from ``source`` until ``count`` pass the gate (at least ``min_interval_s`` apart on
    the source's clock) or ``max_frames`` reads; the Enrollment lists the accepted frames and the
    first frame of each kind of rejection (a frame of another person than the frames already taken
    is one kind)."""
    if count < 1:
        raise ValueError(f"count: expected at least 1 image, got {count}")
    accepted: list[ImageResult] = []
    rejected: dict[str, ImageResult] = {}
    last_t: float | None = None
    for _ in range(max_frames):
        frame = source.read()
        if frame is None:
            if source.ended:
                break
            continue
        if last_t is not None and frame.t - last_t < min_interval_s:
            continue
        result = assess(engine, f"frame at {frame.t:.2f} s", frame.image, limits)
        if result.accepted and result.embedding is not None and accepted:
            far = max(distance(result.embedding, a.embedding) for a in accepted if a.embedding is not None)
            if far > (limit := engine.threshold(LEVELS[0])):  # another person than the frames taken
                result = replace(result, other_person=(far, limit))
        if result.accepted:
            accepted.append(result)
            last_t = frame.t
            log.info(
                "enrollment capture %d/%d",
                len(accepted),
                count,
                extra={"n": len(accepted), "count": count, "t": frame.t},
            )
            if len(accepted) == count:
                break
        elif result.reason is not None and (kind := result.reason.split(":", 1)[0]) not in rejected:
            rejected[kind] = result
            log.info("enrollment frame rejected: %s", result.reason, extra={"reason": result.reason})
    if len(accepted) < count:
        log.warning(
            "enrollment capture incomplete",
            extra={"accepted": len(accepted), "count": count, "reasons": list(rejected)},
        )
    return _finish(engine, [*accepted, *rejected.values()], now)


__all__ = [
    "DEFAULT_LEVEL",
    "Enrollment",
    "ImageLoadError",
    "ImageMatch",
    "ImageResult",
    "Template",
    "TemplateError",
    "assess",
    "best_match",
    "capture",
    "enroll",
    "image_paths",
    "load_images",
    "same_person",
    "verify",
]
