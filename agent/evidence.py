"""Evidence of an incident: a webcam still (JPEG, at most 640x480) and a screenshot (at most 1920x1080).

Taken at each incident start and every ``evidence_interval_s``. Each image is stored
in a local folder under its sha256 (``<sha256>.jpg``; the spool and upload are a later
issue) and referenced by that hash in the events. Without a display (no ``DISPLAY`` on
Linux, or any ``mss`` error) the record says ``screenshot unavailable: <reason>`` and
the agent carries on; the same for a missing camera frame.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from agent.face.engine import Image
from core.private import write_private

log = logging.getLogger(__name__)

CAMERA_MAX = (640, 480)
SCREEN_MAX = (1920, 1080)
JPEG_QUALITY = 85

Kind = Literal["camera", "screen"]
ScreenGrabber = Callable[[], Image]


class ScreenshotUnavailable(RuntimeError):
    """No screenshot can be taken here (no display, capture refused)."""


@dataclass(frozen=True)
class EvidenceImage:
    kind: Kind
    sha256: str
    width: int
    height: int
    size: int  # bytes of the JPEG
    path: Path


@dataclass(frozen=True)
class EvidenceRecord:
    """What one evidence capture produced, and what it could not."""

    taken_at: datetime
    reason: str  # "incident_start:peeking", "periodic", ...
    images: tuple[EvidenceImage, ...]
    missing: tuple[str, ...] = ()  # e.g. "screenshot unavailable: no display (DISPLAY is not set)"

    @property
    def sha256s(self) -> list[str]:
        return [img.sha256 for img in self.images]

    def trace(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "reason": self.reason,
            "images": [
                {"kind": i.kind, "sha256": i.sha256, "width": i.width, "height": i.height, "bytes": i.size}
                for i in self.images
            ],
            "missing": list(self.missing),
        }


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size with the same aspect ratio inside max_width x max_height (never enlarged)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size: expected positive width and height, got {width}x{height}")
    scale = min(1.0, max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_jpeg(
    image: Image, max_size: tuple[int, int], quality: int = JPEG_QUALITY
) -> tuple[bytes, int, int]:
    """``image`` (BGR) scaled down to fit ``max_size``, as JPEG bytes, with its width and height."""
    height, width = image.shape[:2]
    w, h = fit_within(width, height, *max_size)
    if (w, h) != (width, height):
        image = np.asarray(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a {width}x{height} image as JPEG")
    return buf.tobytes(), w, h


def grab_screen() -> Image:
    """A screenshot of all monitors (BGR) with ``mss``; ScreenshotUnavailable says why not."""
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not has_display:
        raise ScreenshotUnavailable("no display (DISPLAY is not set)")
    try:
        import mss

        with mss.MSS() as sct:
            shot = sct.grab(sct.monitors[0])
            image = np.asarray(shot, dtype=np.uint8)
    except Exception as exc:  # mss raises ScreenShotError and platform errors alike
        raise ScreenshotUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return np.ascontiguousarray(image[:, :, :3])


def to_prune(files: list[tuple[float, str]], keep: int, protect: set[str]) -> list[str]:
    """Pure: of (mtime, name) pairs, the names beyond the newest ``keep``, never a protected one."""
    ordered = sorted(files, reverse=True)
    return [name for _, name in ordered[keep:] if name not in protect]


class LocalEvidence:
    """Evidence images in a local folder (0700), each named by its sha256 (0600).

    ``keep`` bounds the folder to that many newest images (the server's copy comes from
    the agent's spool; this folder only serves the local page); None keeps everything.
    """

    def __init__(
        self, folder: Path | str, screen: ScreenGrabber | None = grab_screen, keep: int | None = None
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder.chmod(0o700)  # third parties' faces and the screen: private to the user
        self.screen = screen  # None: screenshots disabled
        self.keep = keep

    def path_of(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.jpg"

    def put(self, data: bytes) -> str:
        """Store JPEG bytes under their sha256 (written once, atomically) and return the hash."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path_of(sha)
        if not target.exists():
            write_private(target, data)  # 0600, in one step
        return sha

    def _prune(self, protect: set[str]) -> None:
        files = [(p.stat().st_mtime, p.name) for p in self.folder.glob("*.jpg")]
        for name in to_prune(files, self.keep or 0, protect):
            (self.folder / name).unlink(missing_ok=True)

    def _image(self, kind: Kind, image: Image, max_size: tuple[int, int]) -> EvidenceImage:
        data, w, h = encode_jpeg(image, max_size)
        sha = self.put(data)
        return EvidenceImage(kind, sha, w, h, len(data), self.path_of(sha))

    def capture(self, camera: Image | None, reason: str, now: datetime | None = None) -> EvidenceRecord:
        """Store the webcam still and a screenshot; anything unavailable is noted, never raised."""
        images: list[EvidenceImage] = []
        missing: list[str] = []
        if camera is None:
            missing.append("camera still unavailable: no frame from the camera")
        else:
            images.append(self._image("camera", camera, CAMERA_MAX))
        if self.screen is None:
            missing.append("screenshot unavailable: screenshots disabled")
        else:
            try:
                images.append(self._image("screen", self.screen(), SCREEN_MAX))
            except (ScreenshotUnavailable, ValueError, OSError) as exc:
                missing.append(f"screenshot unavailable: {exc}")
        record = EvidenceRecord(now or datetime.now(UTC), reason, tuple(images), tuple(missing))
        if self.keep is not None:
            self._prune({i.path.name for i in images})
        log.info(
            "evidence taken",
            extra={
                "reason": reason,
                "images": [f"{i.kind}:{i.sha256[:12]}" for i in images],
                "missing": missing,
            },
        )
        return record
