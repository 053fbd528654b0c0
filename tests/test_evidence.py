"""Evidence: webcam still and screenshot as size-limited JPEGs stored by sha256, with or without a display."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.evidence import (
    LocalEvidence,
    ScreenshotUnavailable,
    encode_jpeg,
    fit_within,
    grab_screen,
    to_prune,
)

NOW = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def _image(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)


def test_fit_within_keeps_aspect_and_never_enlarges() -> None:
    """Sizes shrink to fit the box with their aspect ratio; smaller ones are unchanged."""
    assert fit_within(1280, 720, 640, 480) == (640, 360)
    assert fit_within(1280, 1024, 640, 480) == (600, 480)
    assert fit_within(3840, 2160, 1920, 1080) == (1920, 1080)
    assert fit_within(320, 240, 640, 480) == (320, 240)
    with pytest.raises(ValueError, match="expected positive width and height, got 0x10"):
        fit_within(0, 10, 640, 480)


def test_encode_jpeg_scales_down() -> None:
    """A 1280x960 frame becomes a decodable 640x480 JPEG."""
    data, w, h = encode_jpeg(_image(1280, 960), (640, 480))
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert (w, h) == (640, 480)
    assert decoded is not None
    assert decoded.shape == (480, 640, 3)


def test_capture_stores_both_images_by_sha256(tmp_path: Path) -> None:
    """Camera still <= 640x480 and screenshot <= 1920x1080 are stored as <sha256>.jpg (0600, in a
    0700 folder), in the record."""
    store = LocalEvidence(tmp_path / "evidence", screen=lambda: _image(2560, 1440, seed=1))
    record = store.capture(_image(1280, 720), "incident_start:peeking", now=NOW)
    assert [(i.kind, i.width, i.height) for i in record.images] == [
        ("camera", 640, 360),
        ("screen", 1920, 1080),
    ]
    assert record.missing == ()
    for img in record.images:
        data = img.path.read_bytes()
        assert img.path == tmp_path / "evidence" / f"{img.sha256}.jpg"
        assert hashlib.sha256(data).hexdigest() == img.sha256
        assert len(data) == img.size
        assert img.path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "evidence").stat().st_mode & 0o777 == 0o700
    assert record.sha256s == [i.sha256 for i in record.images]
    assert record.trace()["reason"] == "incident_start:peeking"
    assert record.trace()["taken_at"] == "2025-01-06T09:00:00+00:00"
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == sorted(
        f"{s}.jpg" for s in record.sha256s
    )


def test_same_image_is_stored_once(tmp_path: Path) -> None:
    """The same still twice has the same sha256 and one file."""
    store = LocalEvidence(tmp_path, screen=None)
    a = store.capture(_image(640, 480), "periodic", now=NOW)
    b = store.capture(_image(640, 480), "periodic", now=NOW)
    assert a.sha256s == b.sha256s
    assert len(list(tmp_path.glob("*.jpg"))) == 1
    assert a.missing == ("screenshot unavailable: screenshots disabled",)


def test_no_display_is_recorded_and_camera_still_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without DISPLAY the real grabber refuses with the reason; the record says so and keeps the still."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ScreenshotUnavailable, match=r"^no display \(DISPLAY is not set\)$"):
        grab_screen()
    record = LocalEvidence(tmp_path).capture(_image(640, 480), "incident_start:impersonation", now=NOW)
    assert [i.kind for i in record.images] == ["camera"]
    assert record.missing == ("screenshot unavailable: no display (DISPLAY is not set)",)


def test_mss_error_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DISPLAY that mss cannot open gives 'screenshot unavailable: <mss error>' and no exception."""
    monkeypatch.setenv("DISPLAY", ":97")
    record = LocalEvidence(tmp_path).capture(_image(640, 480), "periodic", now=NOW)
    assert [i.kind for i in record.images] == ["camera"]
    assert len(record.missing) == 1
    assert record.missing[0].startswith("screenshot unavailable: ")
    assert "display" in record.missing[0].lower()


def test_missing_camera_frame_is_recorded(tmp_path: Path) -> None:
    """No camera frame: only the screenshot, and the record says the still is unavailable."""
    record = LocalEvidence(tmp_path, screen=lambda: _image(800, 600)).capture(None, "periodic", now=NOW)
    assert [(i.kind, i.width, i.height) for i in record.images] == [("screen", 800, 600)]
    assert record.missing == ("camera still unavailable: no frame from the camera",)


def test_to_prune_keeps_the_newest_and_the_protected() -> None:
    """Beyond the newest `keep` files the oldest go, except the ones just taken."""
    files = [(1.0, "a.jpg"), (3.0, "c.jpg"), (2.0, "b.jpg"), (4.0, "d.jpg")]
    assert to_prune(files, 2, set()) == ["b.jpg", "a.jpg"]
    assert to_prune(files, 2, {"a.jpg"}) == ["b.jpg"]
    assert to_prune(files, 10, set()) == []


def test_store_with_keep_bounds_the_folder(tmp_path: Path) -> None:
    """Five captures with keep=2 leave exactly the two newest camera stills on disk."""
    store = LocalEvidence(tmp_path, screen=None, keep=2)
    shas = []
    for i in range(5):
        image = np.full((48, 64, 3), 40 * i, dtype=np.uint8)
        shas.append(store.capture(image, "periodic").sha256s[0])
        os.utime(store.path_of(shas[-1]), (1000 + i, 1000 + i))
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == sorted(f"{s}.jpg" for s in shas[-2:])
