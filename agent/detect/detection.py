"""At what size live frames are scanned for faces, so every face that counts is found (pure plan + one call).

A face detector finds faces down to a size in the image it scans: dlib's HOG detector
scans an 80x80 window, so a face box below about 80 px there is missed. Scanning a
640x480 frame at 320 px wide therefore misses every face under about 160 px, although
another face counts (can read the screen) from ``other_face_min_ratio`` of the user's
face height, and a face without the user from ``stranger_min_face_frac`` of the frame.

:func:`plan_width` chooses, for each analysed frame, the width the frame is scaled to
before detection: the smallest one at which the smallest face that counts is
``target_px`` high (so no more pixels are scanned than needed), between ``min_width``
and the frame's width times ``max_upsample`` (a frame is scaled *up* when the smallest
face that counts is below ``target_px`` at full resolution). The user's face height
comes from the previous frame's tracks. A fixed ``width`` replaces the plan. Widths are
multiples of ``step_px`` and the previous width is kept while it still suffices and is
at most ``keep_ratio`` too large, so a box size that wobbles does not change the width.

Enrollment and punch verification never use this: they detect at full resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from agent.detect.classify import user_track
from agent.detect.tracker import Track
from agent.face.engine import Box, Face, FaceEngine, FaceEngineError, Image

if TYPE_CHECKING:
    from agent.config import MonitorConfig

AUTO = "auto"
MIN_WIDTH_PX = 32
MAX_WIDTH_PX = 4096
MAX_SCAN_PIXELS = 4096 * 3072  # a frame of odd proportions is never scaled past this many pixels
WIDTH_EXPECTED = f"expected {AUTO} or a width of {MIN_WIDTH_PX} to {MAX_WIDTH_PX} pixels"


@dataclass(frozen=True)
class DetectionParams:
    """How live frames are sized for detection (TELEWORK_AGENT_DETECT_WIDTH, _DETECT_MAX_UPSAMPLE)."""

    width: int | None = None  # a fixed detection width in pixels; None: planned per frame
    max_upsample: float = 2.0  # the planned width is at most the frame's width times this
    target_px: float = 80.0  # the smallest face that counts is at least this high where it is scanned
    min_width: int = 320  # the planned width is at least this (or the frame's width times max_upsample)
    step_px: int = 32
    keep_ratio: float = 1.3  # box heights come in steps of about 1.2: one step does not change the width

    def __post_init__(self) -> None:
        if self.width is not None and not MIN_WIDTH_PX <= self.width <= MAX_WIDTH_PX:
            raise ValueError(
                f"detection width: expected {MIN_WIDTH_PX} to {MAX_WIDTH_PX} pixels, got {self.width}"
            )
        if not 1.0 <= self.max_upsample <= 4.0:
            raise ValueError(f"detection max upsample: expected 1 to 4, got {self.max_upsample}")
        if self.target_px <= 0 or self.min_width < MIN_WIDTH_PX or self.step_px < 1 or self.keep_ratio < 1:
            raise ValueError(
                "detection params: expected target_px > 0, min_width >= 32, step_px >= 1, keep_ratio >= 1, "
                f"got {self.target_px}, {self.min_width}, {self.step_px}, {self.keep_ratio}"
            )


def parse_width(text: str) -> int | None:
    """``auto`` -> None, else the width in pixels (32-4096); ValueError says what was expected."""
    value = text.strip().lower()
    if value == AUTO:
        return None
    digits = value.lstrip("0") or "0"
    if (
        not digits.isascii()
        or not digits.isdigit()
        or len(digits) > 4
        or not MIN_WIDTH_PX <= int(digits) <= MAX_WIDTH_PX
    ):
        raise ValueError(f"{WIDTH_EXPECTED}, got {text!r}")
    return int(digits)


def detection_from_config(config: MonitorConfig) -> DetectionParams:
    """The detection parameters of the agent's settings (validated when the settings were read)."""
    return DetectionParams(
        width=parse_width(config.agent_detect_width), max_upsample=config.agent_detect_max_upsample
    )


def smallest_counted_face(
    frame_height: int, user_height: float | None, other_face_min_ratio: float, stranger_min_face_frac: float
) -> float:
    """The height (full-frame pixels) of the smallest face that changes the frame's label.

    With the user's face known: another face counts from ``other_face_min_ratio`` of its
    height; without it, a face counts from ``stranger_min_face_frac`` of the frame height."""
    if user_height is not None and user_height > 0:
        return max(1.0, other_face_min_ratio * user_height)
    return max(1.0, stranger_min_face_frac * frame_height)


def plan_width(
    frame_width: int,
    smallest_px: float,
    params: DetectionParams,
    previous: int | None = None,
    frame_height: int | None = None,
) -> int:
    """The width to scale a ``frame_width`` frame to so a ``smallest_px`` face is ``target_px`` high.

    Never more than MAX_WIDTH_PX wide nor, given ``frame_height``, MAX_SCAN_PIXELS scanned."""
    if frame_width <= 0 or (frame_height is not None and frame_height <= 0):
        raise ValueError(f"frame size: expected positive numbers of pixels, got {frame_width}x{frame_height}")
    limit = MAX_WIDTH_PX
    if frame_height is not None:
        fitting = math.floor(math.sqrt(MAX_SCAN_PIXELS * frame_width / frame_height))
        limit = min(limit, max(MIN_WIDTH_PX, fitting))
    if params.width is not None:
        return min(params.width, limit)
    ceiling = min(limit, max(MIN_WIDTH_PX, math.floor(frame_width * params.max_upsample)))
    floor = min(params.min_width, ceiling)
    needed = frame_width * params.target_px / max(1e-6, smallest_px)
    width = min(ceiling, max(floor, math.ceil(needed / params.step_px) * params.step_px))
    if (
        previous is not None
        and floor <= previous <= ceiling
        and width <= previous <= width * params.keep_ratio
    ):
        return previous
    return width


def user_height(tracks: Sequence[Track], threshold: float) -> float | None:
    """The face height of the user's track (see :func:`~agent.detect.classify.user_track`), if any."""
    user = user_track(tracks, threshold)
    return None if user is None else user.size


def detect_at_width(engine: FaceEngine, image: Image, width: int) -> list[Face]:
    """Faces of ``image`` found on a copy scaled to ``width`` pixels wide (boxes, landmarks in ``image``)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise FaceEngineError(f"expected a BGR uint8 image of shape (H, W, 3), got {got}")
    height, frame_width = image.shape[:2]
    if width == frame_width:
        return engine.detect(image)
    factor = width / frame_width
    shape = (width, max(1, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    scaled: Image = np.asarray(cv2.resize(image, shape, interpolation=interpolation), dtype=np.uint8)
    back = frame_width / width
    faces = []
    for face in engine.detect(scaled):
        box = _clip(face.box.scaled(back), frame_width, height)
        if box.area > 0:
            points = tuple((x * back, y * back) for x, y in face.landmarks)
            size = None if face.height is None else face.height * back
            faces.append(Face(box, points, face.score, size))
    return faces


def _clip(box: Box, width: int, height: int) -> Box:
    x1, y1 = max(0, box.x), max(0, box.y)
    x2, y2 = min(width, box.x + box.w), min(height, box.y + box.h)
    return Box(x1, y1, max(0, x2 - x1), max(0, y2 - y1))
