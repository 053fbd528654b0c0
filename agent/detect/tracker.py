"""Face tracks across analysed frames, by box overlap (pure).

Embedding a face is the expensive step (dlib: ~100 ms), detection the cheap one
(~10 ms at reduced size). So faces are followed from frame to frame by the IoU of
their boxes, and a track is embedded only when it is new, when its box moved or
changed size a lot since its last embedding, or when its last verification is older
than ``reverify_s``. A track missed by the detector is kept for ``max_missed``
analysed frames so one missed detection does not cost a new embedding.

:func:`update_tracks` matches detections to tracks and says which need an
embedding; :func:`record_distances` stores the distances the pipeline computed.
Both return new values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from agent.face.engine import Box


@dataclass(frozen=True)
class TrackerParams:
    match_iou: float = 0.3  # a detection continues a track when their boxes overlap this much
    changed_iou: float = 0.6  # below this IoU with the box last embedded, embed again
    reverify_s: float = 5.0  # embed each track again at least this often
    max_missed: int = 2  # analysed frames a track survives without a detection


@dataclass(frozen=True)
class Track:
    """One face followed across frames; ``distance`` is to the user's template at ``verified_at``."""

    id: int
    box: Box
    first_seen: float
    last_seen: float
    embedded_box: Box | None = None
    verified_at: float | None = None
    distance: float | None = None
    missed: int = 0
    height: float | None = None  # the face's height from its landmarks (Face.height), if estimated

    @property
    def size(self) -> float:
        """The face's height in pixels: the landmark estimate if any, else the box's."""
        return self.height if self.height is not None else float(self.box.h)

    def visible_at(self, t: float) -> bool:
        return self.last_seen == t


@dataclass(frozen=True)
class TrackUpdate:
    tracks: tuple[Track, ...]
    need_embedding: tuple[int, ...]  # track ids, in detection order
    detection_of: Mapping[int, int]  # track id -> index of its detection in this frame
    next_id: int


def needs_embedding(track: Track, t: float, params: TrackerParams) -> str | None:
    """Why ``track`` must be embedded at ``t`` ("new", "moved", "reverify"), or None."""
    if track.verified_at is None or track.embedded_box is None or track.distance is None:
        return "new"
    if track.box.iou(track.embedded_box) < params.changed_iou:
        return "moved"
    if t - track.verified_at >= params.reverify_s:
        return "reverify"
    return None


def _pairs(tracks: Sequence[Track], boxes: Sequence[Box], min_iou: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, best overlap first: (track index, box index)."""
    scored = [(track.box.iou(box), ti, bi) for ti, track in enumerate(tracks) for bi, box in enumerate(boxes)]
    scored = [s for s in scored if s[0] >= min_iou]
    scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    used_t: set[int] = set()
    used_b: set[int] = set()
    pairs = []
    for _, ti, bi in scored:
        if ti not in used_t and bi not in used_b:
            used_t.add(ti)
            used_b.add(bi)
            pairs.append((ti, bi))
    return pairs


def update_tracks(
    tracks: Sequence[Track],
    boxes: Sequence[Box],
    t: float,
    next_id: int,
    params: TrackerParams = TrackerParams(),
    heights: Sequence[float | None] | None = None,
) -> TrackUpdate:
    """Continue ``tracks`` with the face ``boxes`` detected at time ``t`` (``heights``: each box's
    face height from landmarks, or None)."""
    if heights is not None and len(heights) != len(boxes):
        raise ValueError(f"heights: expected one per box ({len(boxes)}), got {len(heights)}")
    sizes = list(heights) if heights is not None else [None] * len(boxes)
    pairs = _pairs(tracks, boxes, params.match_iou)
    box_of = {ti: bi for ti, bi in pairs}
    matched_boxes = {bi for _, bi in pairs}
    out: list[Track] = []
    detection_of: dict[int, int] = {}
    for ti, track in enumerate(tracks):
        if ti in box_of:
            bi = box_of[ti]
            out.append(replace(track, box=boxes[bi], last_seen=t, missed=0, height=sizes[bi]))
            detection_of[track.id] = box_of[ti]
        elif track.missed < params.max_missed:
            out.append(replace(track, missed=track.missed + 1))
    for bi, box in enumerate(boxes):
        if bi not in matched_boxes:
            out.append(Track(id=next_id, box=box, first_seen=t, last_seen=t, height=sizes[bi]))
            detection_of[next_id] = bi
            next_id += 1
    need = [
        tr.id
        for tr in sorted(out, key=lambda tr: detection_of.get(tr.id, -1))
        if tr.visible_at(t) and needs_embedding(tr, t, params) is not None
    ]
    return TrackUpdate(tuple(out), tuple(need), detection_of, next_id)


def record_distances(tracks: Sequence[Track], distances: Mapping[int, float], t: float) -> tuple[Track, ...]:
    """``tracks`` with the template distances just computed for some of them (by track id)."""
    return tuple(
        replace(tr, distance=distances[tr.id], verified_at=t, embedded_box=tr.box)
        if tr.id in distances
        else tr
        for tr in tracks
    )


def visible(tracks: Sequence[Track], t: float) -> tuple[Track, ...]:
    """The tracks whose face was detected at ``t``."""
    return tuple(tr for tr in tracks if tr.visible_at(t))
