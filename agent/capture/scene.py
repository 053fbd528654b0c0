"""Scene composer: real face crops pasted onto a generated background, following a timeline.

A Scene says who is in front of the camera when (``Appearance``: a photo, a
time span, where the face's centre is and how tall the face is, relative to the
frame), when the camera is covered (a nearly black, uniform frame) and when it
is unavailable (``read()`` gives None). ``SceneSource`` plays it as a
FrameSource on a virtual clock: each read advances ``t`` by 1/fps, nothing
depends on the wall clock, and the same scene gives the same frames.

Face crops are cut once per photo around the face the detector finds there
(plus a margin), and blended in with a feathered elliptical mask so the
pasted face looks like a face to the detector, not like a sticker.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from agent.capture.sources import Frame
from agent.face.engine import Box, Face, Image

log = logging.getLogger(__name__)

Detector = Callable[[Image], list[Face]]
Span = tuple[float, float]


class SceneError(ValueError):
    """A scene cannot be composed (unreadable photo, no face at the requested index, bad timeline)."""


@dataclass(frozen=True)
class Appearance:
    """A face in front of the camera from ``start_s`` to ``end_s`` (end excluded).

    ``cx``, ``cy``: the face's centre as a fraction of the frame's width and height;
    ``height``: the face's height (``Face.size`` of the photo's face) as a fraction of the frame's height;
    ``face_index``: which face of the photo, counted from the left (for group photos).
    """

    photo: Path
    start_s: float
    end_s: float
    cx: float = 0.5
    cy: float = 0.45
    height: float = 0.4
    face_index: int = 0

    def __post_init__(self) -> None:
        if not self.end_s > self.start_s >= 0:
            raise SceneError(
                f"appearance of {self.photo}: expected 0 <= start_s < end_s, got {self.start_s}..{self.end_s}"
            )
        if not 0 < self.height <= 2:
            raise SceneError(
                f"appearance of {self.photo}: height is a fraction of the frame, got {self.height}"
            )

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class Scene:
    """A timeline of appearances, covered spans and unavailable spans, in seconds."""

    width: int = 640
    height: int = 480
    fps: float = 2.0
    duration_s: float | None = None  # None: until the last appearance or span ends
    appearances: tuple[Appearance, ...] = ()
    covered: tuple[Span, ...] = ()
    unavailable: tuple[Span, ...] = ()
    background: Image | None = field(default=None, repr=False, compare=False)  # None: generated office
    seed: int = 0  # background texture and sensor noise
    noise: float = 0.0  # standard deviation of per-frame sensor noise (deterministic per frame)

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise SceneError(f"scene size: expected at least 32x32, got {self.width}x{self.height}")
        if self.fps <= 0:
            raise SceneError(f"scene fps: expected a positive number, got {self.fps}")
        for name, spans in (("covered", self.covered), ("unavailable", self.unavailable)):
            for start, end in spans:
                if not end > start >= 0:
                    raise SceneError(f"{name} span: expected 0 <= start < end, got {start}..{end}")
        if self.background is not None and self.background.shape[:2] != (self.height, self.width):
            raise SceneError(
                f"background: expected {self.width}x{self.height}, "
                f"got {self.background.shape[1]}x{self.background.shape[0]}"
            )

    @property
    def end_s(self) -> float:
        if self.duration_s is not None:
            return self.duration_s
        ends = [a.end_s for a in self.appearances] + [e for _, e in self.covered + self.unavailable]
        return max(ends, default=0.0)

    def is_covered(self, t: float) -> bool:
        return any(s <= t < e for s, e in self.covered)

    def is_unavailable(self, t: float) -> bool:
        return any(s <= t < e for s, e in self.unavailable)


@dataclass(frozen=True)
class FaceCrop:
    """A face cut from a photo: the crop, the face box inside it, a feathered alpha mask (0..1), and
    the face's height (the detector's ``Face.size``: from landmarks when it estimates them)."""

    image: Image
    box: Box
    alpha: np.ndarray
    height: float


class CropCache:
    """Face crops by (photo, face index), cut once with ``detect`` plus ``margin`` (fraction of the box)."""

    def __init__(self, detect: Detector, margin: float = 0.5) -> None:
        self.detect = detect
        self.margin = margin
        self._crops: dict[tuple[Path, int], FaceCrop] = {}

    def get(self, photo: Path, face_index: int = 0) -> FaceCrop:
        key = (Path(photo), face_index)
        if key not in self._crops:
            self._crops[key] = self._cut(*key)
        return self._crops[key]

    def _cut(self, photo: Path, face_index: int) -> FaceCrop:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            raise SceneError(f"cannot read photo {photo} (missing or not an image)")
        faces = sorted(self.detect(np.asarray(image, dtype=np.uint8)), key=lambda f: f.box.x)
        if face_index >= len(faces):
            raise SceneError(f"photo {photo}: face {face_index} requested, {len(faces)} found")
        face = faces[face_index]
        box = face.box
        # Square region around the face centre, margin on every side, padded by edge replication.
        side = round(max(box.w, box.h) * (1 + 2 * self.margin))
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        pad = side
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        crop = padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side].copy()
        inner = Box(box.x - x0, box.y - y0, box.w, box.h)
        log.debug("face crop cut", extra={"photo": str(photo), "face": face_index, "side": side})
        alpha = _feathered_ellipse(side, self.margin)
        return FaceCrop(np.asarray(crop, dtype=np.uint8), inner, alpha, face.size)


def _feathered_ellipse(side: int, margin: float) -> np.ndarray:
    """An elliptical mask, opaque over the face and its nearest surroundings, fading towards the crop edge."""
    mask = np.zeros((side, side), dtype=np.float32)
    centre = (side // 2, side // 2)
    axes = (round(side * 0.40), round(side * 0.46))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, thickness=-1)
    sigma = max(1.0, side * margin / (1 + 2 * margin) * 0.25)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def office_background(width: int, height: int, seed: int = 0) -> Image:
    """A plain, office-like backdrop: wall gradient, window, shelf with books, desk edge, light texture."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    wall = np.array([196, 206, 214], np.float32) * (1.05 - 0.25 * rows)
    image = np.broadcast_to(wall, (height, width, 3)).copy()
    # Window on the left, lighter, with mullions.
    wx0, wy0, wx1, wy1 = int(width * 0.05), int(height * 0.08), int(width * 0.28), int(height * 0.55)
    image[wy0:wy1, wx0:wx1] = (235, 232, 222)
    image[wy0:wy1, (wx0 + wx1) // 2 - 2 : (wx0 + wx1) // 2 + 2] = (150, 150, 150)
    image[(wy0 + wy1) // 2 - 2 : (wy0 + wy1) // 2 + 2, wx0:wx1] = (150, 150, 150)
    # Shelf with books on the right.
    sx0, sx1, sy = int(width * 0.72), int(width * 0.97), int(height * 0.32)
    image[sy : sy + 6, sx0:sx1] = (60, 90, 120)
    x = sx0 + 4
    while x < sx1 - 10:
        w = int(rng.integers(8, 18))
        h = int(rng.integers(int(height * 0.10), int(height * 0.16)))
        colour = rng.integers(40, 200, size=3).astype(np.float32)
        image[sy - h : sy, x : min(x + w, sx1 - 4)] = colour
        x += w + 2
    # Desk edge at the bottom.
    image[int(height * 0.88) :] = (70, 100, 130)
    image += rng.normal(0.0, 3.0, size=image.shape).astype(np.float32)
    scene: Image = np.clip(image, 0, 255).astype(np.uint8)
    return scene


def covered_frame(width: int, height: int, seed: int = 0) -> Image:
    """A lens covered by a finger or tape: nearly black and uniform, with faint noise."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(10.0, 1.5, size=(height, width, 3)), 0, 255).astype(np.uint8)


def paste(frame: Image, crop: FaceCrop, cx: float, cy: float, face_px: float) -> Image:
    """``frame`` with ``crop`` scaled so its face is ``face_px`` high, face centred at (cx, cy) pixels."""
    scale = face_px / crop.height
    side = max(2, round(crop.image.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    patch = cv2.resize(crop.image, (side, side), interpolation=interpolation).astype(np.float32)
    alpha = cv2.resize(crop.alpha, (side, side), interpolation=cv2.INTER_LINEAR)[:, :, None]
    face_cx = (crop.box.x + crop.box.w / 2) * scale
    face_cy = (crop.box.y + crop.box.h / 2) * scale
    x0, y0 = round(cx - face_cx), round(cy - face_cy)
    height, width = frame.shape[:2]
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    if fx0 >= fx1 or fy0 >= fy1:
        return frame
    out = frame.copy()
    region = out[fy0:fy1, fx0:fx1].astype(np.float32)
    p = patch[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    a = alpha[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    out[fy0:fy1, fx0:fx1] = np.clip(region * (1 - a) + p * a, 0, 255).astype(np.uint8)
    return out


def frame_at(scene: Scene, t: float, crops: CropCache, background: Image | None = None) -> Image | None:
    """The frame the camera shows at ``t``; None while unavailable. Pure given the same crops."""
    if scene.is_unavailable(t):
        return None
    index = math.floor(t * scene.fps + 1e-6)
    if scene.is_covered(t):
        return covered_frame(scene.width, scene.height, seed=scene.seed * 1_000_003 + index)
    if background is None:
        background = (
            scene.background
            if scene.background is not None
            else office_background(scene.width, scene.height, scene.seed)
        )
    frame = background
    for appearance in scene.appearances:
        if appearance.active(t):
            crop = crops.get(appearance.photo, appearance.face_index)
            frame = paste(
                frame,
                crop,
                appearance.cx * scene.width,
                appearance.cy * scene.height,
                appearance.height * scene.height,
            )
    if scene.noise > 0:
        rng = np.random.default_rng(scene.seed * 1_000_003 + index)
        noisy = frame.astype(np.float32) + rng.normal(0.0, scene.noise, size=frame.shape).astype(np.float32)
        frame = np.clip(noisy, 0, 255).astype(np.uint8)
    return frame if frame is not background else background.copy()


class SceneSource:
    """A Scene played as a FrameSource: read ``n`` is at t = n / fps; ``ended`` after the scene's end."""

    def __init__(self, scene: Scene, detect: Detector | None = None, crops: CropCache | None = None) -> None:
        if crops is None:
            if detect is None:
                raise SceneError(
                    "SceneSource needs a face detector (e.g. DlibEngine().detect) or a CropCache"
                )
            crops = CropCache(detect)
        self.scene = scene
        self.crops = crops
        self.ended = False
        self._index = 0
        self._background = (
            scene.background
            if scene.background is not None
            else office_background(scene.width, scene.height, scene.seed)
        )

    @property
    def t(self) -> float:
        """Time of the next frame."""
        return self._index / self.scene.fps

    def frame_at(self, t: float) -> Image | None:
        return frame_at(self.scene, t, self.crops, self._background)

    def read(self) -> Frame | None:
        if self.ended:
            return None
        t = self.t
        if t >= self.scene.end_s:
            self.ended = True
            return None
        self._index += 1
        image = self.frame_at(t)
        return None if image is None else Frame(t, image)

    def close(self) -> None:
        self.ended = True
