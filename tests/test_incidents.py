"""Incident building (pure): incident events -> merged incidents with evidence and trace; rebuild plans."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.incidents import Draft, Plan, StoredIncident, build_incidents, plan, window_start
from workers.intervals import Ev

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
SHA = [f"{i:064x}" for i in range(10)]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def inc(seq: int, second: float, kind: str, phase: str, *evidence: int, **trace: Any) -> Ev:
    payload = {"kind": kind, "phase": phase, "evidence": [SHA[i] for i in evidence], "trace": trace or None}
    return Ev(id=f"e{seq:03d}", seq=seq, ts=at(second), type="incident", payload=payload)


def summary(drafts: list[Draft]) -> list[tuple[str, float, float | None, tuple[str, ...], tuple[str, ...]]]:
    return [
        (
            d.kind,
            (d.started_at - T0).total_seconds(),
            None if d.ended_at is None else (d.ended_at - T0).total_seconds(),
            tuple(SHA.index(s) for s in d.evidence),  # type: ignore[misc]
            d.event_ids,
        )
        for d in drafts
    ]


def test_repeats_within_the_window_merge_and_beyond_it_stay_separate() -> None:
    """Peeking at 0-10 s and 50-55 s merge (gap 40 <= 60); again at 200 s is a new incident."""
    events = [
        inc(1, 0, "peeking", "start", 0, faces=2),
        inc(2, 10, "peeking", "end", 1),
        inc(3, 50, "peeking", "start", 2),
        inc(4, 55, "peeking", "end"),
        inc(5, 200, "peeking", "start", 3),
        inc(6, 230, "peeking", "end"),
    ]
    drafts = build_incidents(events, merge_window_s=60)
    assert summary(drafts) == [
        ("peeking", 0, 55, (0, 1, 2), ("e001", "e002", "e003", "e004")),
        ("peeking", 200, 230, (3,), ("e005", "e006")),
    ]
    assert drafts[0].trace["episode_count"] == 2
    assert drafts[0].trace["episodes"][0]["steps"][0] == {
        "event_id": "e001",
        "phase": "start",
        "ts": at(0).isoformat(),
        "trace": {"faces": 2},
    }
    assert summary(build_incidents(events, merge_window_s=39)) == [
        ("peeking", 0, 10, (0, 1), ("e001", "e002")),
        ("peeking", 50, 55, (2,), ("e003", "e004")),
        ("peeking", 200, 230, (3,), ("e005", "e006")),
    ]


def test_kinds_do_not_merge_and_evidence_is_kept_once() -> None:
    """Overlapping peeking and impersonation are two incidents; a start while open adds its evidence once."""
    events = [
        inc(1, 0, "impersonation", "start", 4),
        inc(2, 5, "peeking", "start", 5),
        inc(3, 6, "impersonation", "start", 4, 6),
        inc(4, 20, "impersonation", "end", 6),
        inc(5, 21, "peeking", "end"),
    ]
    assert summary(build_incidents(events, 60)) == [
        ("impersonation", 0, 20, (4, 6), ("e001", "e003", "e004")),
        ("peeking", 5, 21, (5,), ("e002", "e005")),
    ]


def test_out_of_order_duplicates_open_and_orphan_end() -> None:
    """Shuffled duplicates build the same; an open episode stays open unless closed; an orphan end is kept."""
    events = [
        inc(1, 0, "camera_blocked", "start", 7),
        inc(2, 100, "camera_blocked", "end"),
        inc(3, 400, "peeking", "end", 8),
        inc(4, 500, "camera_blocked", "start"),
    ]
    shuffled = events * 2
    random.Random(3).shuffle(shuffled)
    assert summary(build_incidents(shuffled, 60)) == [
        ("camera_blocked", 0, 100, (7,), ("e001", "e002")),
        ("peeking", 400, 400, (8,), ("e003",)),
        ("camera_blocked", 500, None, (), ("e004",)),
    ]
    assert summary(build_incidents(events, 60, close_at=at(560)))[-1] == (
        "camera_blocked",
        500,
        560,
        (),
        ("e004",),
    )


def _stored(id_: int, start: float, end: float | None, *events: str, locked: bool = False) -> StoredIncident:
    return StoredIncident(
        id=id_,
        kind="peeking",
        started_at=at(start),
        ended_at=None if end is None else at(end),
        event_ids=frozenset(events),
        locked=locked,
    )


def test_window_start_reaches_back_to_incidents_a_late_event_can_join() -> None:
    """Stored incidents ending within the merge window before the new event (or open) pull the window back."""
    stored = [_stored(1, 0, 10, "a"), _stored(2, 100, 130, "b"), _stored(3, 300, None, "c")]
    assert window_start(stored[:2], at(180), 60) == at(100)
    assert window_start(stored[:2], at(191), 60) == at(191)
    assert window_start(stored, at(500), 60) == at(300)


def test_plan_keeps_ids_merges_unreviewed_and_keeps_reviewed() -> None:
    """A late event bridging two incidents: the first takes both; an unreviewed second goes, locked stays."""
    events = [
        inc(1, 0, "peeking", "start"),
        inc(2, 10, "peeking", "end"),
        inc(3, 100, "peeking", "start"),
        inc(4, 110, "peeking", "end"),
    ]
    before = [_stored(1, 0, 10, "e001", "e002"), _stored(2, 100, 110, "e003", "e004")]
    assert plan(before, build_incidents(events, 60)) == Plan()
    bridged = build_incidents([*events, inc(5, 50, "peeking", "start"), inc(6, 60, "peeking", "end")], 60)
    assert plan(before, bridged) == Plan(update=((1, bridged[0]),), delete=(2,))
    locked = [before[0], _stored(2, 100, 110, "e003", "e004", locked=True)]
    assert plan(locked, bridged) == Plan(update=((1, bridged[0]),))
    assert plan([], bridged) == Plan(insert=(bridged[0],))
