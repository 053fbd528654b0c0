"""Face tracking by box overlap: which tracks continue, which need an embedding, and why."""

from __future__ import annotations

import pytest

from agent.detect.tracker import (
    Track,
    TrackerParams,
    needs_embedding,
    record_distances,
    update_tracks,
    visible,
)
from agent.face.engine import Box

P = TrackerParams(match_iou=0.3, changed_iou=0.6, reverify_s=5.0, max_missed=2)
USER = Box(200, 100, 200, 200)


def _verified(box: Box, t: float, distance: float = 0.3, track_id: int = 1) -> Track:
    return Track(
        id=track_id, box=box, first_seen=t, last_seen=t, embedded_box=box, verified_at=t, distance=distance
    )


def test_new_face_starts_a_track_that_needs_embedding() -> None:
    """A detection matching no track becomes a new track with the next id, due for embedding."""
    up = update_tracks((), [USER], 0.0, 1, P)
    assert [(tr.id, tr.box, tr.first_seen) for tr in up.tracks] == [(1, USER, 0.0)]
    assert up.need_embedding == (1,)
    assert up.detection_of == {1: 0}
    assert up.next_id == 2


def test_still_face_is_not_embedded_again_until_reverify() -> None:
    """A verified track whose box barely moves needs no embedding until reverify_s has passed."""
    track = _verified(USER, 0.0)
    moved = Box(204, 102, 200, 200)
    up = update_tracks((track,), [moved], 0.5, 2, P)
    assert up.need_embedding == ()
    assert up.tracks[0].box == moved and up.tracks[0].distance == 0.3
    assert update_tracks((track,), [moved], 4.5, 2, P).need_embedding == ()
    assert update_tracks((track,), [moved], 5.0, 2, P).need_embedding == (1,)
    assert needs_embedding(update_tracks((track,), [moved], 5.0, 2, P).tracks[0], 5.0, P) == "reverify"


def test_big_change_of_box_needs_embedding() -> None:
    """A track whose box changed a lot since its last embedding is embedded again ("moved")."""
    track = _verified(USER, 0.0)
    shifted = Box(290, 100, 200, 200)  # IoU with USER 0.38: same track, changed box
    up = update_tracks((track,), [shifted], 0.5, 2, P)
    assert [tr.id for tr in up.tracks] == [1]
    assert up.need_embedding == (1,)
    assert needs_embedding(up.tracks[0], 0.5, P) == "moved"


def test_far_box_is_a_new_track_and_old_one_is_kept_while_missed() -> None:
    """A box not overlapping the track starts a new track; the unmatched one survives max_missed frames."""
    track = _verified(USER, 0.0)
    far = Box(10, 10, 100, 100)
    up = update_tracks((track,), [far], 0.5, 2, P)
    assert [(tr.id, tr.missed, tr.last_seen) for tr in up.tracks] == [(1, 1, 0.0), (2, 0, 0.5)]
    assert up.need_embedding == (2,)
    assert [tr.id for tr in visible(up.tracks, 0.5)] == [2]
    up2 = update_tracks(up.tracks, [far], 1.0, up.next_id, P)
    assert [(tr.id, tr.missed) for tr in up2.tracks] == [(1, 2), (2, 0)]
    up3 = update_tracks(up2.tracks, [far], 1.5, up2.next_id, P)
    assert [tr.id for tr in up3.tracks] == [2]


def test_missed_track_comes_back_without_embedding() -> None:
    """A face missed for one frame continues its track and keeps its distance (no new embedding)."""
    track = _verified(USER, 0.0)
    gone = update_tracks((track,), [], 0.5, 2, P)
    back = update_tracks(gone.tracks, [USER], 1.0, gone.next_id, P)
    assert [(tr.id, tr.missed, tr.distance) for tr in back.tracks] == [(1, 0, 0.3)]
    assert back.need_embedding == ()


def test_matching_is_one_to_one_best_overlap_first() -> None:
    """Two tracks and two boxes pair by best IoU, never two boxes to one track."""
    a = _verified(Box(0, 0, 100, 100), 0.0, track_id=1)
    b = _verified(Box(300, 0, 100, 100), 0.0, track_id=2)
    up = update_tracks((a, b), [Box(305, 0, 100, 100), Box(5, 0, 100, 100)], 0.5, 3, P)
    assert up.detection_of == {1: 1, 2: 0}
    assert up.need_embedding == ()
    assert up.next_id == 3


def test_record_distances_sets_verification() -> None:
    """Recorded distances set distance, verified_at and the embedded box of those tracks only."""
    up = update_tracks((), [USER, Box(10, 10, 80, 80)], 2.0, 1, P)
    tracks = record_distances(up.tracks, {2: 0.9}, 2.0)
    assert [(tr.id, tr.distance, tr.verified_at, tr.embedded_box) for tr in tracks] == [
        (1, None, None, None),
        (2, 0.9, 2.0, Box(10, 10, 80, 80)),
    ]


def test_tracks_carry_each_detections_landmark_height() -> None:
    """A face's landmark height goes into its track, new or continued; a wrong count is refused."""
    up = update_tracks((), [USER], 0.0, 1, P, heights=[201.5])
    assert [(tr.height, tr.size) for tr in up.tracks] == [(201.5, 201.5)]
    up = update_tracks(up.tracks, [USER], 0.5, up.next_id, P, heights=[None])
    assert [(tr.height, tr.size) for tr in up.tracks] == [(None, 200.0)]  # no estimate: the box's height
    with pytest.raises(ValueError, match=r"^heights: expected one per box \(1\), got 2$"):
        update_tracks((), [USER], 0.0, 1, P, heights=[1.0, 2.0])
