"""The pipeline benchmark's hand-formatted frames (benchmarks/pipeline.py) are valid protocol."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from realtime.protocol import Events, StateEvent, new_event_id, parse_agent_frame
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules

from pipeline import STATES, events_frame


def test_benchmark_frames_are_valid_protocol() -> None:
    """An events frame the load generator formats parses as the protocol's Events, seq and time intact."""
    ids = [str(new_event_id()) for _ in range(3)]
    now = datetime(2026, 12, 1, 9, 30, 5, 123456, tzinfo=UTC)
    frame = parse_agent_frame(events_frame(ids, 41, now.isoformat().replace("+00:00", "Z")))
    assert isinstance(frame, Events)
    assert all(isinstance(e, StateEvent) for e in frame.events)
    assert [(str(e.id), e.seq, e.ts) for e in frame.events] == [(i, 41 + n, now) for n, i in enumerate(ids)]
    assert [e.payload.state for e in frame.events if isinstance(e, StateEvent)] == [
        STATES[s % len(STATES)] for s in (41, 42, 43)
    ]
