"""Quality gate for enrollment images: pure function of an image and its detected faces.

An image passes when it holds exactly one face (the faces are found at full
resolution, so a second, smaller face is counted), the face is large enough, and
the face region is neither too dark (mean luminance of the face box, not of the
photo) nor too blurred (variance of the Laplacian of the face crop, measured at a
fixed size so it does not depend on the photo's resolution). A rejected image
carries one reason, with the value found and the one needed: ``no face found``,
``2 faces, need exactly 1``, ``face too small: 84 px, need 100``, ``too dark: face
region mean 31, need 40``, ``too blurred: face region sharpness 12.0, need 40.0``.
Whether the accepted images show one person is :mod:`agent.face.identity`'s part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from agent.face.engine import Box, Face, Image

# Defaults measured on ../shared/faces: faces there are 105-447 px high, 95-152 bright, and
# 79-1702 sharp; a Gaussian blur of sigma = 0.5 % of the photo width brings them to 4-35.
MIN_FACE_PX = 100  # face box height, pixels of the image
MIN_BRIGHTNESS = 40.0  # mean luminance 0..255
MIN_SHARPNESS = 40.0  # variance of the Laplacian of the face resized to SHARPNESS_SIZE
SHARPNESS_SIZE = 128  # face crops are resized to this height before measuring sharpness


@dataclass(frozen=True)
class QualityLimits:
    """The gate's thresholds."""

    min_face_px: int = MIN_FACE_PX
    min_brightness: float = MIN_BRIGHTNESS
    min_sharpness: float = MIN_SHARPNESS


@dataclass(frozen=True)
class QualityResult:
    """Verdict of the gate and the measurements behind it (None when not measured)."""

    ok: bool
    reason: str | None
    faces: int
    face_px: int | None = None
    brightness: float | None = None
    sharpness: float | None = None


def brightness(image: Image) -> float:
    """Mean luminance (0..255) of a BGR image."""
    if image.size == 0:
        return 0.0
    return float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).mean())


def sharpness(image: Image) -> float:
    """Variance of the Laplacian of ``image`` resized to SHARPNESS_SIZE pixels high."""
    if image.size == 0:
        return 0.0
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape
    size = (max(1, round(width * SHARPNESS_SIZE / height)), SHARPNESS_SIZE)
    interpolation = cv2.INTER_AREA if height > SHARPNESS_SIZE else cv2.INTER_LINEAR
    grey = cv2.resize(grey, size, interpolation=interpolation)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def crop(image: Image, box: Box) -> Image:
    """The part of ``image`` inside ``box`` (clipped to the image)."""
    height, width = image.shape[:2]
    x1, y1 = max(0, box.x), max(0, box.y)
    x2, y2 = min(width, box.x + box.w), min(height, box.y + box.h)
    return image[y1:y2, x1:x2]


def check(
    image: Image,
    faces: list[Face],
    min_face_px: int = MIN_FACE_PX,
    min_brightness: float = MIN_BRIGHTNESS,
    min_sharpness: float = MIN_SHARPNESS,
) -> QualityResult:
    """Whether ``image`` with its detected ``faces`` (found at full resolution) is good enough to
    enroll, and if not, the real reason. Brightness and sharpness are those of the face region."""
    count = len(faces)
    if count == 0:
        return QualityResult(False, "no face found", 0)
    if count > 1:
        return QualityResult(False, f"{count} faces, need exactly 1", count)
    box = faces[0].box
    face_px = box.h
    if face_px < min_face_px:
        return QualityResult(False, f"face too small: {face_px} px, need {min_face_px}", 1, face_px=face_px)
    face = crop(image, box)
    level = brightness(face)
    if level < min_brightness:
        return QualityResult(
            False, f"too dark: face region mean {_down(level, 0)}, need {min_brightness:g}", 1, face_px, level
        )
    sharp = sharpness(face)
    if sharp < min_sharpness:
        return QualityResult(
            False,
            f"too blurred: face region sharpness {_down(sharp, 1)}, need {min_sharpness:.1f}",
            1,
            face_px,
            level,
            sharp,
        )
    return QualityResult(True, None, 1, face_px, level, sharp)


def check_limits(image: Image, faces: list[Face], limits: QualityLimits) -> QualityResult:
    """``check`` with the thresholds of ``limits``."""
    return check(image, faces, limits.min_face_px, limits.min_brightness, limits.min_sharpness)


def _down(value: float, digits: int) -> str:
    """``value`` rounded down to ``digits`` decimals, so a value just under a limit never prints as it."""
    scale = 10**digits
    return f"{math.floor(value * scale) / scale:.{digits}f}"


def darken(image: Image, factor: float) -> Image:
    """``image`` with its brightness multiplied by ``factor`` (a helper for tests and scenes)."""
    darker: Image = np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)
    return darker
