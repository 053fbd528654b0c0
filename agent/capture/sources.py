"""Frame sources: ``read()`` gives the next frame or None, ``close()`` releases it.

A Frame carries ``t``, seconds on the source's clock (wall-clock seconds since
opening for a webcam; the position in the stream for files and scenes), and a
BGR ``uint8`` image. ``read()`` returning None means no frame is available now:
the camera is unavailable, or a file/folder has ended (``ended`` tells which).
Every source is a :class:`FrameSource`. A source never waits: a reader that plays it in
real time reads on the deadline schedule of :mod:`agent.pacing` (the monitor, ``agent try``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import cv2
import numpy as np

from agent.face.engine import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class FrameSourceError(RuntimeError):
    """A frame source cannot be opened (missing file, no such camera, unreadable folder)."""


class Frame(NamedTuple):
    t: float
    image: Image


class FrameSource(Protocol):
    """What the pipeline reads frames from."""

    @property
    def ended(self) -> bool:
        """True once a finite source (file, folder, scene) has no more frames; a webcam never ends
        (None from it means unavailable)."""
        ...

    @property
    def t(self) -> float | None:
        """The time on the source's clock of the frame the next read gives, so a missing frame is
        timed as the source would have; None when it cannot say (a webcam: the reader times it)."""
        ...

    def read(self) -> Frame | None:
        """The next frame, or None when none is available right now."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CameraInfo:
    """What OpenCV reports about one camera index."""

    index: int
    width: int
    height: int
    fps: float
    backend: str


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own log silenced while probing cameras: a missing index makes its backends print
    a dozen lines each on stderr; the agent says what failed in one line of its own."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_camera(index: int) -> cv2.VideoCapture | None:
    """The camera at ``index`` opened, or None when there is none there (or it is in use)."""
    with quiet_opencv():
        capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        return None
    return capture


def list_cameras(max_index: int = 4) -> list[CameraInfo]:
    """Cameras at indexes 0..max_index that open and deliver a frame."""
    found = []
    for index in range(max_index + 1):
        capture = open_camera(index)
        if capture is None:
            continue
        try:
            ok, image = capture.read()
            if not ok or image is None:
                continue
            found.append(
                CameraInfo(
                    index=index,
                    width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or image.shape[1],
                    height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or image.shape[0],
                    fps=float(capture.get(cv2.CAP_PROP_FPS) or 0.0),
                    backend=capture.getBackendName(),
                )
            )
        finally:
            capture.release()
    log.info("cameras listed", extra={"max_index": max_index, "found": [c.index for c in found]})
    return found


class WebcamSource:
    """A camera by OpenCV index. A failed grab returns None (camera unavailable) and is retried on
    the next read; the camera is reopened after ``reopen_after`` consecutive failures."""

    def __init__(self, index: int = 0, width: int = 640, height: int = 480, reopen_after: int = 10) -> None:
        self.index, self.width, self.height, self.reopen_after = index, width, height, reopen_after
        self._failures = 0
        self.ended = False
        self._start = time.monotonic()
        self._capture = self._open()
        if self._capture is None:
            raise FrameSourceError(
                f"cannot open camera {index}: no such camera, or it is in use "
                f"(cameras found: {[c.index for c in list_cameras()] or 'none'})"
            )

    @property
    def t(self) -> None:
        """None: a frame not grabbed yet has no time (whoever reads times a failed grab)."""
        return None

    def _open(self) -> cv2.VideoCapture | None:
        capture = open_camera(self.index)
        if capture is None:
            return None
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        return capture

    def read(self) -> Frame | None:
        if self._capture is None or self._failures >= self.reopen_after:
            if self._capture is not None:
                self._capture.release()
            self._capture = self._open()
            self._failures = 0
            if self._capture is None:
                return None
        ok, image = self._capture.read()
        if not ok or image is None:
            self._failures += 1
            if self._failures == 1:
                log.warning("camera delivered no frame", extra={"camera": self.index})
            return None
        self._failures = 0
        return Frame(time.monotonic() - self._start, _bgr(image))

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class VideoFileSource:
    """Frames of a video file, subsampled to ``fps`` (None = every frame); ``t`` is the stream position."""

    def __init__(self, path: Path | str, fps: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FrameSourceError(f"video file not found: {self.path}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps: expected a positive number or None, got {fps}")
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            self._capture.release()
            raise FrameSourceError(f"cannot open video file {self.path}: not a video OpenCV can decode")
        self.native_fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
        self.fps = fps
        self.ended = False
        self._index = 0  # frames decoded so far
        self._next_t = 0.0

    @property
    def t(self) -> float:
        """The earliest stream position the next frame given can have."""
        return max(self._next_t, self._index / self.native_fps)

    def read(self) -> Frame | None:
        while not self.ended:
            ok, image = self._capture.read()
            if not ok or image is None:
                self.ended = True
                break
            t = self._index / self.native_fps
            self._index += 1
            if self.fps is None or t + 1e-9 >= self._next_t:
                self._next_t = t + (1.0 / self.fps if self.fps else 0.0)
                return Frame(t, _bgr(image))
        return None

    def close(self) -> None:
        self.ended = True
        self._capture.release()


class ImageFolderSource:
    """The images of a folder in name order, one every 1/``fps`` seconds of stream time."""

    def __init__(self, path: Path | str, fps: float = 2.0) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FrameSourceError(f"image folder not found: {self.path}")
        if fps <= 0:
            raise ValueError(f"fps: expected a positive number, got {fps}")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FrameSourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.path}")
        self.fps = fps
        self.ended = False
        self._index = 0

    @property
    def t(self) -> float:
        """Stream time of the next image."""
        return self._index / self.fps

    def read(self) -> Frame | None:
        while self._index < len(self.files):
            path = self.files[self._index]
            t = self._index / self.fps
            self._index += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping unreadable image", extra={"path": str(path)})
                continue
            return Frame(t, _bgr(image))
        self.ended = True
        return None

    def close(self) -> None:
        self._index = len(self.files)
        self.ended = True


def _bgr(image: np.ndarray) -> Image:
    """Camera/video frames as 3-channel BGR uint8 (some backends give grey or BGRA)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.asarray(image, dtype=np.uint8)
