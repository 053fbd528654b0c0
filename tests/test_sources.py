"""Frame sources: probing a camera index that is not there says so in one line, OpenCV kept quiet."""

from __future__ import annotations

import cv2
import pytest

from agent.capture.sources import FrameSourceError, WebcamSource, list_cameras, open_camera, quiet_opencv

ABSENT = 63  # no PC has a camera at this index


def test_an_absent_camera_is_one_line_and_opencv_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    """Opening camera 63: FrameSourceError naming it and the cameras found; nothing on stdout or
    stderr from OpenCV's backends (they print a dozen lines per index otherwise)."""
    level = cv2.utils.logging.getLogLevel()
    with pytest.raises(
        FrameSourceError, match=r"^cannot open camera 63: no such camera, or it is in use \(cameras found: "
    ):
        WebcamSource(ABSENT)
    assert open_camera(ABSENT) is None
    list_cameras(2)
    out, err = capfd.readouterr()
    ours = "logger=agent.capture.sources "  # our own log lines, when a test before left a handler
    assert (out, [line for line in err.splitlines() if ours not in line]) == ("", [])
    assert cv2.utils.logging.getLogLevel() == level  # restored after each probe


def test_quiet_opencv_restores_the_level_after_an_error() -> None:
    """The log level comes back even when the probe raises."""
    level = cv2.utils.logging.getLogLevel()
    with pytest.raises(RuntimeError, match="probe failed"), quiet_opencv():
        assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_SILENT
        raise RuntimeError("probe failed")
    assert cv2.utils.logging.getLogLevel() == level
