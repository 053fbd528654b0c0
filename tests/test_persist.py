"""Pure parts of the persistence worker: stream event -> row, entry -> persist or dead-letter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text

from core.config import ConfigError
from core.settings import ServerSettings
from realtime.protocol import (
    IncidentEvent,
    IncidentPayload,
    StateEvent,
    StatePayload,
    StreamEvent,
    encode,
    new_event_id,
)
from workers.dead_letter import DeadLetterReason, classify, dead_letter
from workers.persist_store import persist_batch, to_row
from workers.run import run_worker

JST = timezone(timedelta(hours=9))


def stream_event(seq: int = 1, tenant: str = "acme", ts: datetime | None = None) -> StreamEvent:
    when = ts or datetime(2026, 11, 25, 9, 0, 0, tzinfo=JST)
    return StreamEvent(
        tenant=tenant,
        agent_id="pc-1",
        session_id="sess-1",
        received_at=datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC),
        event=IncidentEvent(
            id=new_event_id(),
            seq=seq,
            ts=when,
            payload=IncidentPayload(kind="peeking", phase="start", evidence=["a.jpg"]),
        ),
    )


def test_to_row_maps_every_column_in_utc():
    """to_row fills every EventRecord column; datetimes become UTC, the payload stays JSON data."""
    entry = stream_event(seq=7)
    stored = datetime(2026, 11, 25, 10, 0, 0, tzinfo=JST)
    row = to_row(entry, stored)
    assert row == {
        "id": str(entry.event.id),
        "tenant_id": "acme",
        "agent_id": "pc-1",
        "seq": 7,
        "ts": datetime(2026, 11, 25, 0, 0, 0, tzinfo=UTC),
        "type": "incident",
        "payload": {"kind": "peeking", "phase": "start", "evidence": ["a.jpg"], "trace": None},
        "session_id": "sess-1",
        "received_at": datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC),
        "stored_at": datetime(2026, 11, 25, 1, 0, 0, tzinfo=UTC),
    }
    assert row["ts"].utcoffset() == timedelta(0)


def _fields(entry: StreamEvent) -> dict[str, str]:
    return {"e": encode(entry)}


def test_classify_accepts_a_valid_entry_up_to_the_delivery_limit():
    """A valid entry delivered exactly max_deliveries times is still persisted; str and bytes both work."""
    entry = stream_event()
    assert classify(_fields(entry), 5, 5) == entry
    assert classify({b"e": encode(entry).encode()}, 1, 5) == entry


def test_classify_reasons_name_expected_and_arrived():
    """Each malformed entry gets a reason naming what was expected and what arrived."""
    good = json.loads(encode(stream_event()))
    naive = json.loads(encode(stream_event()))
    naive["event"]["ts"] = "2026-11-25T09:00:00"
    two_bad = json.loads(encode(stream_event()))
    two_bad["tenant"] = "Bad Tenant"
    two_bad["event"]["seq"] = 0
    wrong_type = dict(good, event=dict(good["event"], type="lunch"))
    cases: dict[str, tuple[Mapping[Any, Any], str]] = {
        "no e": ({"x": "1", "y": "2"}, "entry has no field 'e'; fields: x, y"),
        "deleted": ({}, "entry has no fields (deleted or trimmed from the stream before it was persisted)"),
        "not json": (
            {"e": "{not json"},
            "field 'e' is not valid JSON: Invalid JSON: key must be a string at line 1 column 2",
        ),
        "not utf-8": (
            {b"e": b"\xff{}"},
            "field 'e' is not UTF-8 text: 'utf-8' codec can't decode byte 0xff in position 0: "
            "invalid start byte",
        ),
        "not object": ({"e": "[1]"}, "invalid StreamEvent: Input should be an object"),
        "naive ts": (
            {"e": json.dumps(naive)},
            "invalid StreamEvent: event.ts: Input should have timezone info",
        ),
        "two errors": (
            {"e": json.dumps(two_bad)},
            "invalid StreamEvent: tenant: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$' "
            "(and 1 more error)",
        ),
        "event type": (
            {"e": json.dumps(wrong_type)},
            "invalid StreamEvent: event: Input tag 'lunch' found using 'type' does not match any of the "
            "expected tags: 'state', 'duty', 'task', 'incident', 'gap', 'usage'",
        ),
    }
    for name, (fields, reason) in cases.items():
        assert classify(fields, 1, 5) == DeadLetterReason(reason), name


def test_classify_over_delivered_and_decode_reason_wins():
    """Past max_deliveries a valid entry is dead-lettered; a malformed one keeps its decode reason."""
    assert classify(_fields(stream_event()), 6, 5) == DeadLetterReason("delivered 6 times (limit 5)")
    assert classify({"x": "1"}, 9, 5) == DeadLetterReason("entry has no field 'e'; fields: x")


def test_dead_letter_keeps_fields_as_text():
    """The dead letter carries the stream, entry id, reason, deliveries and the original fields as text."""
    at = datetime(2026, 11, 25, tzinfo=UTC)
    letter = dead_letter("tw:{acme}:events", "1-0", {b"e": b"\xff"}, "why", 2, at)
    assert (letter.stream, letter.entry_id, letter.reason, letter.deliveries) == (
        "tw:{acme}:events",
        "1-0",
        "why",
        2,
    )
    assert letter.fields == {"e": "\\xff"}
    assert letter.failed_at == at


def test_persist_batch_inserts_once_and_counts_new_rows(engine):
    """persist_batch stores each event id once and returns only the newly inserted count."""
    now = datetime.now(UTC)
    tenant = f"t{uuid.uuid4().hex[:10]}"
    rows = [to_row(stream_event(seq=i + 1, tenant=tenant), now) for i in range(50)]
    assert persist_batch(engine, rows) == 50
    extra = [to_row(stream_event(seq=100, tenant=tenant), now)]
    assert persist_batch(engine, rows[10:20] + extra) == 1
    assert persist_batch(engine, []) == 0
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM event WHERE tenant_id = :t"), {"t": tenant}).scalar()
        payload = conn.execute(
            text("SELECT payload FROM event WHERE seq = 100 AND tenant_id = :t"), {"t": tenant}
        )
        stored = payload.scalar()
    assert count == 51
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored == {"kind": "peeking", "phase": "start", "evidence": ["a.jpg"], "trace": None}


def test_state_event_row_type():
    """A state event's row has type 'state' and its payload as a dict."""
    now = datetime.now(UTC)
    entry = StreamEvent(
        tenant="acme",
        agent_id="pc-1",
        session_id="s",
        received_at=now,
        event=StateEvent(id=new_event_id(), seq=1, ts=now, payload=StatePayload(state="away")),
    )
    row = to_row(entry, now)
    assert (row["type"], row["payload"]) == ("state", {"state": "away", "trace": None, "evidence": []})


def test_run_worker_requires_redis_url(tmp_path):
    """Without TELEWORK_REDIS_URL the worker refuses to start and says how to get a Redis."""
    with pytest.raises(ConfigError) as info:
        run_worker(ServerSettings(data_dir=tmp_path))
    assert info.value.key == "TELEWORK_REDIS_URL"
    assert "`telework up` starts an embedded Redis" in str(info.value)
