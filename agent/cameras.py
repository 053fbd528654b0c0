"""Camera management: list the cameras with their properties, choose one, set its resolution.

``telework agent cameras`` prints :func:`agent.capture.sources.list_cameras`;
``--camera INDEX`` and ``--resolution WxH`` (TELEWORK_AGENT_CAMERA / _RESOLUTION) choose
the webcam of ``--source webcam``. :class:`Camera` is that webcam as a frame source that
also reports what the device actually delivers (drivers round a requested resolution to
one they support), shown on the local page. A covered or unavailable camera is reported
by the detection itself (states ``camera_blocked`` / ``camera_unavailable``).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import cv2

from agent.capture.sources import CameraInfo, Frame, FrameSourceError, WebcamSource, list_cameras

log = logging.getLogger(__name__)

RESOLUTION = re.compile(r"^\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*$")
DEFAULT_RESOLUTION = (640, 480)


def parse_resolution(value: str) -> tuple[int, int]:
    """``"1280x720"`` -> (1280, 720); ValueError says what was expected."""
    match = RESOLUTION.match(value or "")
    if match is None:
        raise ValueError(f"resolution: expected WIDTHxHEIGHT such as 640x480, got {value!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= 7680 and 16 <= height <= 4320):
        raise ValueError(f"resolution: expected 16x16 to 7680x4320, got {width}x{height}")
    return width, height


def describe(cameras: list[CameraInfo]) -> list[str]:
    """One line per camera for the CLI."""
    if not cameras:
        return ["no camera found (indexes 0-4 tried)"]
    return [f"{c.index}\t{c.width}x{c.height}\t{c.fps:g} fps\t{c.backend}" for c in cameras]


class Camera(WebcamSource):
    """A webcam by index at a requested resolution, reporting its actual properties."""

    def __init__(self, index: int = 0, width: int = 640, height: int = 480, reopen_after: int = 10) -> None:
        self._info_lock = threading.Lock()
        super().__init__(index, width, height, reopen_after)

    def properties(self) -> dict[str, Any]:
        """Index, requested and actual resolution, fps and backend of the open device."""
        with self._info_lock:
            capture = self._capture
            info: dict[str, Any] = {
                "index": self.index,
                "requested": f"{self.width}x{self.height}",
                "width": self.width,
                "height": self.height,
                "fps": 0.0,
                "backend": "closed",
            }
            if capture is not None and capture.isOpened():
                info["width"] = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or self.width
                info["height"] = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or self.height
                info["fps"] = round(float(capture.get(cv2.CAP_PROP_FPS) or 0.0), 1)
                info["backend"] = capture.getBackendName()
            return info

    def read(self) -> Frame | None:
        with self._info_lock:
            return super().read()

    def switch(self, index: int, width: int, height: int) -> dict[str, Any]:
        """Use camera ``index`` at ``width`` x ``height`` from the next frame on; FrameSourceError (the
        current camera kept) when it cannot be opened. Returns the new properties."""
        capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            capture.release()
            raise FrameSourceError(f"cannot open camera {index}: no such camera, or it is in use")
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        with self._info_lock:
            old, self._capture = self._capture, capture
            self.index, self.width, self.height, self._failures = index, width, height, 0
        if old is not None and old is not capture:
            old.release()
        log.info("camera switched", extra={"camera": index, "resolution": f"{width}x{height}"})
        return self.properties()


__all__ = ["Camera", "CameraInfo", "describe", "list_cameras", "parse_resolution"]
