"""Planning the live detection width, and the one-person check of enrollment images (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import load_monitor_config
from agent.detect.detection import (
    WIDTH_EXPECTED,
    DetectionParams,
    detection_from_config,
    parse_width,
    plan_width,
    smallest_counted_face,
    user_height,
)
from agent.detect.tracker import Track
from agent.face.engine import Box, normalise
from agent.face.identity import consistent
from core.config import ConfigError

AUTO = DetectionParams()


def test_smallest_counted_face_follows_the_user_or_the_frame() -> None:
    """User 216 px high, ratio 0.5: the smallest face that counts is 108 px; without a user, 15 % of 480."""
    assert smallest_counted_face(480, 216.0, 0.5, 0.15) == 108.0
    assert smallest_counted_face(480, None, 0.5, 0.15) == 72.0
    assert smallest_counted_face(480, 0.0, 0.5, 0.15) == 72.0


def test_plan_scans_the_smallest_counted_face_at_80_px() -> None:
    """A 640-wide frame: 108 px faces -> 480 px wide (0.75: 81 px); 72 px -> 736 (upsampled); 40 -> capped."""
    assert plan_width(640, 108.0, AUTO) == 480
    assert plan_width(640, 72.0, AUTO) == 736
    assert plan_width(640, 40.0, AUTO) == 1280  # max_upsample 2: faces below 40 px are not promised
    assert plan_width(640, 400.0, AUTO) == 320  # never below min_width
    assert plan_width(640, 40.0, DetectionParams(max_upsample=1.0)) == 640
    assert plan_width(640, 72.0, DetectionParams(width=320)) == 320  # a fixed width wins


def test_plan_is_capped_for_odd_frames() -> None:
    """A 100000 px wide or tall frame is never scanned past 4096 px wide or 4096 x 3072 pixels."""
    assert plan_width(100_000, 15.0, AUTO, frame_height=100) == 4096
    assert plan_width(100, 15.0, AUTO, frame_height=100_000) == 112  # sqrt(4096 * 3072 * 100 / 100000)
    assert plan_width(100, 15.0, DetectionParams(width=4096), frame_height=100_000) == 112
    with pytest.raises(ValueError, match="frame size: expected positive numbers of pixels, got 0x480"):
        plan_width(0, 15.0, AUTO, frame_height=480)


def test_plan_keeps_its_width_through_one_box_step() -> None:
    """The previous width stays while it suffices and is at most 1.3x the needed one; else it follows."""
    assert plan_width(640, 108.0, AUTO, previous=576) == 576  # 576 <= 480 * 1.3
    assert plan_width(640, 108.0, AUTO, previous=640) == 480  # 640 > 624: too wasteful
    assert plan_width(640, 90.0, AUTO, previous=480) == 576  # 480 would scan 90 px faces at 67 px


@given(
    frame_width=st.integers(32, 4096),
    smallest=st.floats(1.0, 5000.0),
    previous=st.none() | st.integers(1, 9000),
    upsample=st.floats(1.0, 4.0),
)
def test_plan_is_bounded_and_sufficient(
    frame_width: int, smallest: float, previous: int | None, upsample: float
) -> None:
    """Any plan lies between its floor and ceiling, and scans the smallest counted face at >= 80 px
    whenever the ceiling allows it."""
    params = DetectionParams(max_upsample=upsample)
    width = plan_width(frame_width, smallest, params, previous)
    ceiling = min(4096, max(32, int(frame_width * upsample)))
    assert min(320, ceiling) <= width <= ceiling
    if frame_width * 80.0 / smallest <= min(320, ceiling) or width < ceiling:
        assert smallest * width / frame_width >= 80.0 - 1e-6


def test_user_height_is_the_matching_tracks_size() -> None:
    """The user's height comes from the closest track within the threshold, landmark height first."""
    box = Box(0, 0, 200, 200)
    tracks = [
        Track(1, box, 0.0, 0.0, distance=0.30, height=190.5),
        Track(2, Box(300, 0, 100, 100), 0.0, 0.0, distance=0.20),
        Track(3, box, 0.0, 0.0, distance=0.90, height=50.0),
    ]
    assert user_height(tracks, 0.4) == 100.0
    assert user_height(tracks[:1], 0.4) == 190.5
    assert user_height(tracks[2:], 0.4) is None


@given(st.text(max_size=12))
def test_parse_width_accepts_auto_or_a_bounded_number(text: str) -> None:
    """Any text parses to None (auto) or a width of 32-4096, or fails naming what was expected."""
    try:
        width = parse_width(text)
    except ValueError as exc:
        assert str(exc) == f"{WIDTH_EXPECTED}, got {text!r}"
    else:
        assert width is None or 32 <= width <= 4096
        assert (width is None) == (text.strip().lower() == "auto")


def test_parse_width_examples() -> None:
    """auto, padded numbers and leading zeros parse; 31, 4097, 1e3, -640 and full-width digits do not."""
    assert [parse_width(v) for v in ("auto", " AUTO ", "640", "0640", "32", "4096")] == [
        None,
        None,
        640,
        640,
        32,
        4096,
    ]
    for bad in ("31", "4097", "1e3", "-640", "\uff16\uff14\uff10", "", "640px", "9" * 400):
        with pytest.raises(ValueError, match="expected auto or a width of 32 to 4096 pixels"):
            parse_width(bad)


def test_detection_settings_from_the_environment() -> None:
    """TELEWORK_AGENT_DETECT_WIDTH and _MAX_UPSAMPLE reach the pipeline; a bad value names its variable."""
    assert detection_from_config(load_monitor_config({})) == DetectionParams(width=None, max_upsample=2.0)
    env = {"TELEWORK_AGENT_DETECT_WIDTH": "800", "TELEWORK_AGENT_DETECT_MAX_UPSAMPLE": "1"}
    assert detection_from_config(load_monitor_config(env)) == DetectionParams(width=800, max_upsample=1.0)
    with pytest.raises(ConfigError) as caught:
        load_monitor_config({"TELEWORK_AGENT_DETECT_WIDTH": "10"})
    assert str(caught.value) == (
        "TELEWORK_AGENT_DETECT_WIDTH: Value error, expected auto or a width of 32 to 4096 pixels (got '10')"
    )
    with pytest.raises(ConfigError) as caught:
        load_monitor_config({"TELEWORK_AGENT_DETECT_MAX_UPSAMPLE": "8"})
    assert str(caught.value) == (
        "TELEWORK_AGENT_DETECT_MAX_UPSAMPLE: Input should be less than or equal to 4 (got '8')"
    )
    with pytest.raises(ValueError, match="detection width: expected 32 to 4096 pixels, got 5"):
        DetectionParams(width=5)


# -- one person per template ------------------------------------------------------------------------------


def _unit(*values: float) -> np.ndarray:
    return normalise(np.array(values, dtype=np.float32))


def test_an_outlier_goes_with_its_largest_distance() -> None:
    """Three close vectors and one far: the far one is removed, with its largest distance to the rest."""
    a, b, c = _unit(1, 0, 0), _unit(0.98, 0.2, 0), _unit(0.98, 0, 0.2)
    far = _unit(0, 1, 0)
    result = consistent([a, b, far, c], 0.45)
    assert result.kept == (0, 1, 3)
    assert list(result.outliers) == [2]
    expected = max(float(np.linalg.norm(far - v)) for v in (a, b, c))
    assert result.outliers[2] == pytest.approx(expected)


def test_two_different_people_keep_the_first() -> None:
    """Two images too far apart: the first stays, the second is the outlier."""
    result = consistent([_unit(1, 0), _unit(0, 1)], 0.45)
    assert result.kept == (0,)
    assert result.outliers == {1: pytest.approx(2**0.5)}


def test_a_chain_keeps_its_larger_consistent_part() -> None:
    """A-B close, B-C close, A-C far: one end goes, and nothing is kept that is far from a kept one."""
    a, b, c = _unit(1, 0), _unit(0.97, 0.243), _unit(0.88, 0.475)
    result = consistent([a, b, c], 0.30)
    assert len(result.kept) == 2 and 1 in result.kept
    assert all(
        float(np.linalg.norm([a, b, c][i] - [a, b, c][k])) <= 0.30 for i in result.kept for k in result.kept
    )


def test_consistent_edge_cases() -> None:
    """No embeddings keep nothing; one is always kept; identical ones are all kept."""
    assert consistent([], 0.45).kept == ()
    assert consistent([_unit(1, 0)], 0.45).kept == (0,)
    assert consistent([_unit(1, 0)] * 4, 0.0).kept == (0, 1, 2, 3)
