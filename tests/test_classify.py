"""Per-frame classification: the user, big other faces, strangers, a covered camera, with the numbers."""

from __future__ import annotations

import numpy as np

from agent.detect.classify import ClassifyParams, FrameStats, classify, frame_stats, unavailable
from agent.detect.tracker import Track
from agent.face.engine import Box

P = ClassifyParams(threshold=0.55, other_face_min_ratio=0.5, stranger_min_face_frac=0.15)
LIT = FrameStats(luma_mean=110.0, luma_std=45.0)


def _track(track_id: int, h: int, distance: float | None) -> Track:
    box = Box(100 * track_id, 50, h, h)
    return Track(track_id, box, 0.0, 1.0, embedded_box=box, verified_at=1.0, distance=distance)


def test_user_alone_is_present() -> None:
    """One face within the threshold is the user: present, with its distance in the trace."""
    obs = classify(1.0, [_track(1, 200, 0.41)], 480, LIT, P)
    assert obs.label == "present"
    assert obs.user_distance == 0.41
    assert obs.trace() == {
        "t": 1.0,
        "label": "present",
        "threshold": 0.55,
        "faces": [{"track": 1, "distance": 0.41, "height_px": 200, "rel_size": 1.0, "role": "user"}],
        "luma_mean": 110.0,
        "luma_std": 45.0,
        "dark": False,
        "uniform": False,
    }


def test_user_and_big_other_face_is_peeking() -> None:
    """Another face at least other_face_min_ratio of the user's height makes the frame peeking."""
    obs = classify(1.0, [_track(1, 200, 0.41), _track(2, 110, 0.9)], 480, LIT, P)
    assert obs.label == "peeking"
    assert [(f.track, f.role, round(f.rel_size, 2)) for f in obs.faces] == [
        (1, "user", 1.0),
        (2, "other", 0.55),
    ]


def test_small_distant_face_is_ignored() -> None:
    """A face smaller than other_face_min_ratio of the user's is far away: still present."""
    obs = classify(1.0, [_track(1, 200, 0.41), _track(2, 90, 0.9)], 480, LIT, P)
    assert obs.label == "present"
    assert [f.role for f in obs.faces] == ["user", "ignored"]


def test_closest_matching_face_is_the_user() -> None:
    """With two faces within the threshold the closer one is the user, the other counts as another face."""
    obs = classify(1.0, [_track(1, 200, 0.50), _track(2, 200, 0.30)], 480, LIT, P)
    assert obs.label == "peeking"
    assert [(f.track, f.role) for f in obs.faces] == [(1, "other"), (2, "user")]


def test_strangers_only_is_impersonation() -> None:
    """Faces, none within the threshold, large enough to sit at the PC: impersonation."""
    obs = classify(1.0, [_track(1, 200, 0.80)], 480, LIT, P)
    assert obs.label == "impersonation"
    assert obs.faces[0].role == "stranger"
    assert obs.user_distance is None


def test_unembedded_face_is_not_the_user() -> None:
    """A face without a distance yet never counts as the user."""
    assert classify(1.0, [_track(1, 200, None)], 480, LIT, P).label == "impersonation"


def test_small_stranger_alone_is_away() -> None:
    """A stranger's face below stranger_min_face_frac of the frame height is a passer-by: away."""
    obs = classify(1.0, [_track(1, 60, 0.80)], 480, LIT, P)
    assert obs.label == "away"
    assert obs.faces[0].role == "ignored"


def test_no_face_in_lit_frame_is_away() -> None:
    """No face in a normal frame is away."""
    assert classify(1.0, [], 480, LIT, P).label == "away"


def test_dark_or_uniform_frame_without_face_is_blocked() -> None:
    """A dark or uniform frame without faces is camera_blocked; the trace says which."""
    dark = classify(1.0, [], 480, FrameStats(12.0, 20.0), P)
    uniform = classify(1.0, [], 480, FrameStats(120.0, 3.0), P)
    assert (dark.label, dark.dark, dark.uniform) == ("camera_blocked", True, False)
    assert (uniform.label, uniform.dark, uniform.uniform) == ("camera_blocked", False, True)


def test_face_in_dark_frame_wins_over_blocked() -> None:
    """A detected face means the camera sees: a dark frame with the user is present."""
    assert classify(1.0, [_track(1, 200, 0.4)], 480, FrameStats(20.0, 5.0), P).label == "present"


def test_frame_stats_measure_luminance() -> None:
    """frame_stats gives the mean and spread of the luminance."""
    black = np.zeros((480, 640, 3), np.uint8)
    half = black.copy()
    half[:, 320:] = 200
    assert frame_stats(black) == FrameStats(0.0, 0.0)
    stats = frame_stats(half)
    assert round(stats.luma_mean) == 100 and round(stats.luma_std) == 100


def test_unavailable_observation() -> None:
    """No frame gives camera_unavailable with the reason in the trace."""
    obs = unavailable(3.0, 0.55, "camera 0 delivered no frame")
    assert obs.label == "camera_unavailable"
    assert obs.trace() == {
        "t": 3.0,
        "label": "camera_unavailable",
        "threshold": 0.55,
        "faces": [],
        "reason": "camera 0 delivered no frame",
    }


def test_sizes_compare_by_landmark_height_when_known() -> None:
    """Two equal boxes whose landmark heights are 200 and 98: the second is 0.49 of the user, ignored."""
    box_user, box_other = Box(100, 50, 200, 200), Box(400, 50, 200, 200)
    user = Track(1, box_user, 0.0, 1.0, embedded_box=box_user, verified_at=1.0, distance=0.3, height=200.0)
    other = Track(2, box_other, 0.0, 1.0, embedded_box=box_other, verified_at=1.0, distance=0.9, height=98.0)
    obs = classify(1.0, [user, other], 480, LIT, P)
    assert obs.label == "present"
    assert [(f.height_px, round(f.rel_size, 2), f.role) for f in obs.faces] == [
        (200, 1.0, "user"),
        (98, 0.49, "ignored"),
    ]
