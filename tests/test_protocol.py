"""Wire protocol v1 and the pure session core: round trips and every error path, no I/O."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.detect.classify import FaceNote, FrameStats, Observation
from agent.detect.state_machine import MachineParams, MachineState, step
from agent.evidence import EvidenceImage, EvidenceRecord
from agent.lock import LockResult
from realtime.protocol import (
    MAX_SEQ,
    Ack,
    AgentSettings,
    DeadLetter,
    DutyEvent,
    DutyPayload,
    Error,
    Events,
    GapEvent,
    GapPayload,
    Heartbeat,
    Hello,
    IncidentEvent,
    IncidentPayload,
    LiveState,
    ProtocolError,
    SettingsPush,
    StateEvent,
    StatePayload,
    StreamEvent,
    TaskEvent,
    TaskPayload,
    TasksPush,
    UsageEvent,
    UsageMinute,
    UsagePayload,
    Welcome,
    encode,
    encode_evidence_chunk,
    new_event_id,
    parse_agent_frame,
    parse_evidence_chunk,
    parse_record,
    parse_server_frame,
)
from realtime.session import (
    Rejection,
    check_event_times,
    close_reason,
    handle_frame,
    handle_hello,
    highest_seq,
    out_of_window,
)

TS = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
LIMIT = 4096


def all_events() -> list[Any]:
    return [
        StateEvent(id=new_event_id(), seq=1, ts=TS, payload=StatePayload(state="away", trace={"faces": 0})),
        DutyEvent(id=new_event_id(), seq=2, ts=TS, payload=DutyPayload(on_duty=True, verified=True)),
        TaskEvent(id=new_event_id(), seq=3, ts=TS, payload=TaskPayload(task="report")),
        IncidentEvent(
            id=new_event_id(),
            seq=4,
            ts=TS,
            payload=IncidentPayload(kind="peeking", phase="start", evidence=["ev-1"]),
        ),
        GapEvent(id=new_event_id(), seq=5, ts=TS, payload=GapPayload(images_overwritten=7)),
    ]


def event_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(new_event_id()),
        "seq": 1,
        "ts": "2025-04-01T09:00:00+00:00",
        "type": "state",
        "payload": {"state": "present"},
    }
    data.update(changes)
    return data


def events_raw(*events: dict[str, Any]) -> str:
    return json.dumps({"type": "events", "events": list(events)})


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    "frame",
    [
        Hello(token="twa_x", agent_version="0.1.0", protocol=1),
        Events(events=all_events()),
        Heartbeat(ts=TS),
    ],
    ids=["hello", "events", "heartbeat"],
)
def test_agent_frames_round_trip(frame: Any) -> None:
    """Every agent frame survives encode -> parse_agent_frame unchanged."""
    assert parse_agent_frame(encode(frame)) == frame


@pytest.mark.parametrize(
    "frame",
    [
        Welcome(session_id="s1", tenant="acme", agent_id="pc-1", server_time=TS, settings=AgentSettings()),
        Welcome(
            session_id="s1",
            tenant="acme",
            agent_id="pc-1",
            server_time=TS,
            settings=AgentSettings(),
            tasks=["Design review", "顧客対応"],
        ),
        Ack(seq=42),
        Heartbeat(ts=TS),
        SettingsPush(settings=AgentSettings(threshold_level=5, incident_action="lock")),
        TasksPush(tasks=["Design review", "顧客対応"]),
        TasksPush(tasks=[]),
        Error(code="invalid_field", message="seq: bad", field="events.0.seq"),
    ],
    ids=["welcome", "welcome-tasks", "ack", "heartbeat", "settings", "tasks", "tasks-empty", "error"],
)
def test_server_frames_round_trip(frame: Any) -> None:
    """Every server frame survives encode -> parse_server_frame unchanged."""
    assert parse_server_frame(encode(frame)) == frame


def test_welcome_without_tasks_means_the_server_does_not_say() -> None:
    """A welcome without a ``tasks`` field (a server that does not say) parses with tasks None, not []."""
    welcome = Welcome(
        session_id="s1", tenant="acme", agent_id="pc-1", server_time=TS, settings=AgentSettings()
    )
    data = json.loads(encode(welcome))
    del data["tasks"]
    parsed = parse_server_frame(json.dumps(data))
    assert isinstance(parsed, Welcome) and parsed.tasks is None


@pytest.mark.parametrize(
    ("tasks", "field"),
    [([""], "tasks.0"), (["x" * 201], "tasks.0"), (["t"] * 501, "tasks")],
    ids=["empty-name", "long-name", "too-many"],
)
def test_tasks_push_rejects_bad_task_lists(tasks: list[str], field: str) -> None:
    """A tasks frame with an empty or over-long name, or over 500 names, is a ProtocolError on that field."""
    with pytest.raises(ProtocolError) as info:
        parse_server_frame(json.dumps({"type": "tasks", "tasks": tasks}))
    assert (info.value.code, info.value.field) == ("invalid_field", field)


@pytest.mark.parametrize("event", all_events(), ids=lambda e: e.type)
def test_every_event_type_round_trips_in_a_stream_entry(event: Any) -> None:
    """Each event type survives as a StreamEvent record, with its concrete class."""
    entry = StreamEvent(tenant="acme", agent_id="pc-1", session_id="s1", received_at=TS, event=event)
    back = parse_record(encode(entry), StreamEvent)
    assert back == entry
    assert type(back.event) is type(event)


def test_stream_event_built_without_validation_encodes_identically() -> None:
    """The gateway's model_construct fast path writes the same JSON as a validated StreamEvent."""
    events = all_events()
    for event in events:
        fields = {"tenant": "acme", "agent_id": "pc-1", "session_id": "s1", "received_at": TS, "event": event}
        assert encode(StreamEvent.model_construct(**fields)) == encode(StreamEvent(**fields))


def test_live_state_and_dead_letter_round_trip() -> None:
    """The internal records decode back to equal models."""
    live = LiveState(
        tenant="acme", agent_id="pc-1", online=True, state="away", since=TS, last_seen=TS, last_seq=3
    )
    dead = DeadLetter(
        stream="tw:{acme}:events", entry_id="1-0", reason="bad", deliveries=6, fields={"e": "x"}, failed_at=TS
    )
    assert parse_record(encode(live), LiveState) == live
    assert parse_record(encode(dead), DeadLetter) == dead


# ---------------------------------------------------------------- error paths

ERRORS = [
    (
        "unknown frame type",
        json.dumps({"type": "bogus"}),
        "unknown_type",
        "unknown frame type 'bogus'; expected one of hello, events, heartbeat",
        "type",
    ),
    (
        "unknown event type",
        events_raw(event_dict(type="mood")),
        "unknown_type",
        "unknown event type 'mood'; expected one of state, duty, task, incident, gap, usage",
        "events.0.type",
    ),
    (
        "bad field",
        events_raw(event_dict(), event_dict(seq=0)),
        "invalid_field",
        "events.1.seq: Input should be greater than or equal to 1",
        "events.1.seq",
    ),
    (
        "naive timestamp",
        events_raw(event_dict(ts="2025-04-01T09:00:00")),
        "invalid_field",
        "events.0.ts: Input should have timezone info",
        "events.0.ts",
    ),
    (
        "non-v7 id",
        events_raw(event_dict(id=str(uuid.uuid4()))),
        "invalid_field",
        "events.0.id: Value error, expected a UUIDv7, got version 4",
        "events.0.id",
    ),
    (
        "extra field",
        json.dumps({"type": "heartbeat", "ts": "2025-04-01T09:00:00+00:00", "extra": 1}),
        "invalid_field",
        "extra: Extra inputs are not permitted",
        "extra",
    ),
    (
        "extra event field",
        events_raw(event_dict(extra=1)),
        "invalid_field",
        "events.0.extra: Extra inputs are not permitted",
        "events.0.extra",
    ),
    ("missing type", json.dumps({"ts": 1}), "invalid_field", "type: field required", "type"),
    (
        "invalid JSON",
        "{not json",
        "invalid_json",
        "frame is not valid JSON: key must be a string at line 1 column 2",
        None,
    ),
    ("not an object", "[1, 2]", "invalid_frame", "expected a JSON object, got array", None),
]


@pytest.mark.parametrize(
    ("raw", "code", "message", "field"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_parse_errors_name_code_message_and_field(
    raw: str, code: str, message: str, field: str | None
) -> None:
    """parse_agent_frame raises a ProtocolError with the exact code, message and field."""
    with pytest.raises(ProtocolError) as info:
        parse_agent_frame(raw, LIMIT)
    assert (info.value.code, info.value.message, info.value.field) == (code, message, field)


@pytest.mark.parametrize(
    ("raw", "code", "message", "field"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_session_turns_every_parse_error_into_an_error_frame(
    raw: str, code: str, message: str, field: str | None
) -> None:
    """handle_frame answers each bad frame with the matching Error frame instead of raising."""
    assert handle_frame(raw, LIMIT) == Error(code=code, message=message, field=field)


# ------------------------------------------------------------------ session core


def hello_raw(**changes: Any) -> str:
    data: dict[str, Any] = {"type": "hello", "token": "twa_x", "agent_version": "0.1.0", "protocol": 1}
    data.update(changes)
    return json.dumps(data)


def test_handle_hello_accepts_a_v1_hello() -> None:
    """A well-formed v1 hello is returned as the Hello model."""
    assert handle_hello(hello_raw(), LIMIT) == Hello(token="twa_x", agent_version="0.1.0", protocol=1)


def test_handle_hello_rejects_unsupported_version_with_1002() -> None:
    """Protocol 99 -> close 1002 naming the supported versions."""
    assert handle_hello(hello_raw(protocol=99), LIMIT) == Rejection(
        1002, "unsupported protocol version 99; supported: 1"
    )


def test_handle_hello_checks_the_version_before_unknown_fields() -> None:
    """A future hello with fields v1 does not know is still told about the version."""
    assert handle_hello(hello_raw(protocol=2, resume="x"), LIMIT) == Rejection(
        1002, "unsupported protocol version 2; supported: 1"
    )


def test_handle_hello_rejects_another_first_frame_with_1002() -> None:
    """A first frame that is not a hello (valid or not) -> close 1002 naming its type."""
    heartbeat = encode(Heartbeat(ts=TS))
    assert handle_hello(heartbeat, LIMIT) == Rejection(1002, "expected a hello frame first, got heartbeat")
    assert handle_hello(events_raw(event_dict(seq=0)), LIMIT) == Rejection(
        1002, "expected a hello frame first, got events"
    )


def test_handle_hello_rejects_a_malformed_hello_with_1002() -> None:
    """A hello with a bad field or no JSON at all -> close 1002 with the parse error."""
    assert handle_hello(hello_raw(token=""), LIMIT) == Rejection(
        1002, "invalid hello frame: token: String should have at least 1 character"
    )
    assert handle_hello("nope", LIMIT) == Rejection(
        1002, "invalid hello frame: frame is not valid JSON: expected ident at line 1 column 2"
    )


def test_second_hello_is_an_error_frame() -> None:
    """A hello after the handshake gets an error frame; the session is not closed."""
    assert handle_frame(hello_raw(), LIMIT) == Error(
        code="unexpected_hello",
        message="hello is only valid as the first frame; this session is already established",
        field="type",
    )


def test_handle_frame_passes_events_and_heartbeats_through() -> None:
    """Valid events and heartbeat frames come back as their models."""
    batch = Events(events=all_events())
    assert handle_frame(encode(batch), LIMIT * 4) == batch
    assert handle_frame(encode(Heartbeat(ts=TS)), LIMIT) == Heartbeat(ts=TS)


def test_highest_seq() -> None:
    """highest_seq is the maximum seq of a batch, in any order, and 0 for none."""
    events = all_events()
    assert highest_seq(list(reversed(events))) == 5
    assert highest_seq([]) == 0


def test_close_reason_fits_a_close_frame() -> None:
    """Long reasons are cut to 123 UTF-8 bytes, short ones kept."""
    assert close_reason("short") == "short"
    cut = close_reason("é" * 200)
    assert len(cut.encode()) <= 123
    assert cut.endswith("...")
    assert Rejection(1002, "x" * 500).reason == "x" * 120 + "..."


def test_oversize_frames_close_with_1009_naming_the_limit() -> None:
    """A frame above the limit, text or binary (evidence chunks too), closes 1009, before or after hello."""
    reason = f"frame is {LIMIT + 1} bytes; the limit is {LIMIT} bytes"
    with pytest.raises(ProtocolError) as info:
        parse_agent_frame("x" * (LIMIT + 1), LIMIT)
    assert (info.value.code, info.value.message) == ("frame_too_large", reason)
    assert handle_frame("x" * (LIMIT + 1), LIMIT) == Rejection(1009, reason)
    assert handle_frame(b"TWE1" + b"\0" * (LIMIT - 3), LIMIT) == Rejection(1009, reason)
    assert handle_hello(b"x" * (LIMIT + 1), LIMIT) == Rejection(1009, reason)
    assert handle_hello("é" * (LIMIT // 2 + 1), LIMIT) == Rejection(
        1009, f"frame is {LIMIT + 2} bytes; the limit is {LIMIT} bytes"
    )


def test_binary_frames_that_are_not_evidence_chunks_get_an_error_frame() -> None:
    """A binary frame after hello gets invalid_frame (even if it holds JSON); before hello it closes 1002."""
    assert handle_frame(encode(Heartbeat(ts=TS)).encode(), LIMIT) == Error(
        code="invalid_frame",
        message="expected a JSON text frame or an evidence chunk (binary, starting with b'TWE1'), "
        "got a binary frame of 48 bytes",
        field=None,
    )
    assert handle_hello(hello_raw().encode(), LIMIT) == Rejection(
        1002, "expected a hello frame first, got a binary frame"
    )
    assert handle_hello(b"TWE1\0\0\0\0", LIMIT) == Rejection(
        1002, "expected a hello frame first, got an evidence chunk"
    )


def test_rejections_name_their_kind_for_log_throttling() -> None:
    """Every pre-authentication rejection carries a short fixed kind, the log throttle's key."""
    kinds = [
        handle_hello("x" * (LIMIT + 1), LIMIT),
        handle_hello(encode(Heartbeat(ts=TS)), LIMIT),
        handle_hello(json.dumps({"type": "x\r\nlevel=error"}), LIMIT),
        handle_hello(hello_raw(token=""), LIMIT),
        handle_hello(hello_raw(protocol=7), LIMIT),
    ]
    assert [(r.close_code, r.kind) for r in kinds if isinstance(r, Rejection)] == [
        (1009, "too_large"),
        (1002, "no_hello"),
        (1002, "no_hello"),
        (1002, "bad_hello"),
        (1002, "unsupported_version"),
    ]
    assert kinds[2] == Rejection(1002, "expected a hello frame first, got an unknown frame type")


# --------------------------------------------------------- bounds at the boundary

BIG = 2**63  # one above MAX_SEQ


def usage_dict(**minute: Any) -> dict[str, Any]:
    fields = {
        "start": "2025-04-01T09:00:00+00:00",
        "sent": 1,
        "received": 2,
        "peak_sent_kbps": 1.5,
        "peak_received_kbps": 0.5,
    }
    return event_dict(type="usage", payload={"minutes": [fields | minute]})


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


TIME_ERROR = "Value error, expected a time from 2000 to 9000 (UTC), got "
BOUNDS = [
    (
        "seq above 63 bits",
        event_dict(seq=BIG),
        "events.0.seq",
        f"Input should be less than or equal to {MAX_SEQ}",
    ),
    (
        "gap count above 63 bits",
        event_dict(type="gap", payload={"images_overwritten": BIG}),
        "events.0.payload.images_overwritten",
        f"Input should be less than or equal to {MAX_SEQ}",
    ),
    (
        "usage bytes above 63 bits",
        usage_dict(received=BIG),
        "events.0.payload.minutes.0.received",
        f"Input should be less than or equal to {MAX_SEQ}",
    ),
    (
        "usage minute in year 9500",
        usage_dict(start="9500-01-01T00:00:00+00:00"),
        "events.0.payload.minutes.0.start",
        TIME_ERROR + "9500-01-01T00:00:00+00:00",
    ),
    (
        "ts year 9999 west of UTC",
        event_dict(ts="9999-12-31T23:00:00-14:00"),
        "events.0.ts",
        TIME_ERROR + "9999-12-31T23:00:00-14:00",
    ),
    (
        "ts year 1 east of UTC",
        event_dict(ts="0001-01-01T00:30:00+01:00"),
        "events.0.ts",
        TIME_ERROR + "0001-01-01T00:30:00+01:00",
    ),
    (
        "ts before 2000",
        event_dict(ts="1999-12-31T23:59:59Z"),
        "events.0.ts",
        TIME_ERROR + "1999-12-31T23:59:59+00:00",
    ),
    (
        "ts as a huge number",
        event_dict(ts=10**18),
        "events.0.ts",
        "Value error, expected an ISO 8601 time with its zone, got the number 1000000000000000000",
    ),
    (
        "task name over 200",
        event_dict(type="task", payload={"task": "x" * 201}),
        "events.0.payload.task",
        "String should have at most 200 characters",
    ),
    (
        "NUL in a task name",
        event_dict(type="task", payload={"task": "a\x00b"}),
        "events.0.payload.task",
        "Value error, expected text without NUL characters, got one at position 1",
    ),
    (
        "evidence reference over 128",
        event_dict(payload={"state": "away", "evidence": ["e" * 129]}),
        "events.0.payload.evidence.0",
        "String should have at most 128 characters",
    ),
    (
        "trace 17 levels deep",
        event_dict(payload={"state": "away", "trace": nested(17)}),
        "events.0.payload.trace",
        "Value error, expected at most 16 levels of nesting, got more",
    ),
    (
        "trace 300 levels deep",
        event_dict(payload={"state": "away", "trace": nested(150)}),
        "events.0.payload.trace",
        "Value error, expected at most 16 levels of nesting, got more",
    ),
    (
        "trace over 16 KiB",
        event_dict(payload={"state": "away", "trace": {"x": "a" * 16_380}}),
        "events.0.payload.trace",
        "Value error, expected at most 16384 bytes of JSON, got 16388",
    ),
    (
        "trace integer above 63 bits",
        event_dict(type="incident", payload={"kind": "peeking", "phase": "start", "trace": {"n": [BIG]}}),
        "events.0.payload.trace",
        "Value error, expected signed 64-bit integers, got one of 64 bits",
    ),
    (
        "NUL in a trace key",
        event_dict(payload={"state": "away", "trace": {"a\x00": 1}}),
        "events.0.payload.trace",
        "Value error, expected text without NUL characters, got one at position 1",
    ),
]


@pytest.mark.parametrize(("event", "field", "why"), [b[1:] for b in BOUNDS], ids=[b[0] for b in BOUNDS])
def test_values_out_of_bounds_are_invalid_fields(event: dict[str, Any], field: str, why: str) -> None:
    """Integers above 63 bits, insane timestamps, long or NUL text, deep or big traces: named errors."""
    assert handle_frame(events_raw(event), 64 * 1024) == Error(
        code="invalid_field", message=f"{field}: {why}", field=field
    )


def test_values_at_the_bounds_pass() -> None:
    """MAX_SEQ, the range's first and last instants, 16-deep traces and 200-character tasks pass."""
    frame = handle_frame(
        events_raw(
            event_dict(seq=MAX_SEQ, ts="2000-01-01T09:00:00+09:00"),
            event_dict(seq=2, ts="9000-12-31T09:59:59-14:00", payload={"state": "away", "trace": nested(16)}),
            event_dict(seq=3, type="task", payload={"task": "x" * 200}),
            usage_dict(sent=MAX_SEQ, received=0),
        ),
        64 * 1024,
    )
    assert isinstance(frame, Events)
    assert [e.seq for e in frame.events] == [MAX_SEQ, 2, 3, 1]
    for event in frame.events:  # every instant converts to the widest zones without overflow
        for hours in (-24, 24):
            event.ts.astimezone(
                timezone(timedelta(hours=hours) - timedelta(microseconds=1) * (1 if hours > 0 else -1))
            )


def test_evidence_chunk_header_is_bounded() -> None:
    """An evidence chunk with a 64-bit offset or size, or a taken_at in year 9999: invalid_chunk naming it."""
    header: dict[str, Any] = {
        "type": "evidence_chunk",
        "sha256": "ab" * 32,
        "kind": "camera",
        "purpose": "periodic",
        "taken_at": "2025-04-01T09:00:00+00:00",
        "size": 10,
        "offset": 0,
    }
    changes: list[tuple[dict[str, Any], str]] = [
        ({"offset": BIG}, "offset"),
        ({"size": BIG}, "size"),
        ({"taken_at": "9999-12-31T23:59:59-01:00"}, "taken_at"),
    ]
    for change, field in changes:
        head = json.dumps(header | change).encode()
        with pytest.raises(ProtocolError) as info:
            parse_evidence_chunk(b"TWE1" + len(head).to_bytes(4, "big") + head + b"x")
        assert (info.value.code, info.value.field) == ("invalid_chunk", field)


def agent_incident_trace(faces: int) -> dict[str, Any]:
    """The trace the agent really sends with an incident start: state-machine decision, evidence, lock."""
    notes = tuple(
        FaceNote(
            track=i,
            distance=0.3 + i / 100,
            height_px=120 + i,
            rel_size=0.95,
            role="user" if i == 0 else "other",
        )
        for i in range(faces)
    )

    def seen(t: float) -> Observation:
        return Observation(t=t, label="peeking", threshold=0.4, faces=notes, stats=FrameStats(121.4, 40.2))

    ms, _ = step(MachineState(), seen(0.0), MachineParams())
    ms, transition = step(ms, seen(5.0), MachineParams())
    assert transition is not None
    images = tuple(
        EvidenceImage(kind, "ab" * 32, 640, 480, 51_234, Path("x.jpg")) for kind in ("camera", "screen")
    )
    record = EvidenceRecord(TS, "incident_start:peeking", images, ("screenshot unavailable: no display",))
    lock = LockResult(False, "loginctl lock-session", "exit status 1: " + "Failed to lock session. " * 20)
    return {**transition.trace, "evidence": record.trace(), "incident_action": lock.trace()}


def test_the_agents_real_traces_pass() -> None:
    """A real incident trace (state machine, evidence, lock; 40 faces in view) passes the trace bounds."""
    trace = agent_incident_trace(40)
    payload = IncidentPayload(kind="peeking", phase="start", evidence=["ab" * 32], trace=trace)
    event = IncidentEvent(id=new_event_id(), seq=1, ts=TS, payload=payload)
    assert parse_agent_frame(encode(Events(events=[event]))) == Events(events=[event])


def test_time_window_names_the_first_timestamp_outside() -> None:
    """Timestamps from max_age before to max_skew ahead of now pass; the error names the first outside."""
    now = TS
    inside = [
        StateEvent(id=new_event_id(), seq=1, ts=now - timedelta(days=30), payload=StatePayload(state="away")),
        StateEvent(
            id=new_event_id(), seq=2, ts=now + timedelta(seconds=300), payload=StatePayload(state="away")
        ),
    ]
    assert check_event_times(inside, now, 30 * 86_400, 300) is None
    late = StateEvent(
        id=new_event_id(), seq=3, ts=now + timedelta(seconds=301), payload=StatePayload(state="away")
    )
    assert check_event_times([*inside, late], now, 30 * 86_400, 300) == Error(
        code="invalid_field",
        message="events.2.ts: expected a time at most 300 s ahead of the server's clock "
        "(2025-04-01T09:00:00+00:00), got 2025-04-01T09:05:01+00:00, 301 s ahead",
        field="events.2.ts",
    )
    old = now - timedelta(days=30, seconds=1)
    assert out_of_window(old, now, 30 * 86_400, 300) == (
        "expected a time at most 30 days before the server's clock (2025-04-01T09:00:00+00:00), "
        "got 2025-03-02T08:59:59+00:00, 2592001 s before"
    )
    minute = UsageMinute(start=old, sent=1, received=1, peak_sent_kbps=0, peak_received_kbps=0)
    usage = UsageEvent(id=new_event_id(), seq=4, ts=now, payload=UsagePayload(minutes=[minute, minute]))
    error = check_event_times([inside[0], usage], now, 30 * 86_400, 300)
    assert error is not None and error.field == "events.1.payload.minutes.0.start"


# ------------------------------------------------------------- malformed frames

MALFORMED = [
    (
        "events a number",
        '{"type": "events", "events": 5}',
        "invalid_field",
        "events: Input should be a valid list",
        "events",
    ),
    (
        "events true",
        '{"type": "events", "events": true}',
        "invalid_field",
        "events: Input should be a valid list",
        "events",
    ),
    (
        "events null",
        '{"type": "events", "events": null}',
        "invalid_field",
        "events: Input should be a valid list",
        "events",
    ),
    (
        "events an object",
        '{"type": "events", "events": {"0": {}}}',
        "invalid_field",
        "events: Input should be a valid list",
        "events",
    ),
    (
        "event a string",
        '{"type": "events", "events": ["x"]}',
        "invalid_field",
        "events.0: Input should be a valid dictionary or object to extract fields from",
        "events.0",
    ),
    (
        "nested 100000 deep",
        "[" * 100_000 + "]" * 100_000,
        "invalid_json",
        "frame is not valid JSON: recursion limit exceeded at line 1 column 202",
        None,
    ),
    (
        "NaN",
        '{"type": "heartbeat", "ts": NaN}',
        "invalid_json",
        "frame is not valid JSON: expected value at line 1 column 29",
        None,
    ),
    (
        "lone surrogate escape",
        '{"type": "heartbeat", "ts": "\\ud800"}',
        "invalid_json",
        "frame is not valid JSON: unexpected end of hex escape at line 1 column 36",
        None,
    ),
    (
        "control characters in the type",
        json.dumps({"type": "hello\r\nts=forged level=error " + "x" * 100}),
        "unknown_type",
        "unknown frame type 'hello\\r\\nts=forged level=error xxxxxxxxxxxxxxxxxxxxxxxxxxxxx...; "
        "expected one of hello, events, heartbeat",
        "type",
    ),
    (
        "type a list",
        '{"type": ["hello"]}',
        "unknown_type",
        "unknown frame type ['hello']; expected one of hello, events, heartbeat",
        "type",
    ),
    (
        "event type an object",
        events_raw(event_dict(type={"a": 1})),
        "unknown_type",
        "unknown event type {'a': 1}; expected one of state, duty, task, incident, gap, usage",
        "events.0.type",
    ),
    (
        "a float beyond the double range",
        events_raw(usage_dict(peak_sent_kbps=1.5)).replace(
            '"peak_sent_kbps": 1.5', '"peak_sent_kbps": 1e400'
        ),
        "invalid_field",
        "events.0.payload.minutes.0.peak_sent_kbps: Input should be a finite number",
        "events.0.payload.minutes.0.peak_sent_kbps",
    ),
    (
        "long extra key",
        json.dumps({"type": "heartbeat", "ts": "2025-04-01T09:00:00Z", "k" * 300: 1}),
        "invalid_field",
        "k" * 197 + "...: Extra inputs are not permitted",
        "k" * 197 + "...",
    ),
]


@pytest.mark.parametrize(
    ("raw", "code", "message", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_frames_are_error_frames(raw: str, code: str, message: str, field: str | None) -> None:
    """Wrong types, deep nesting, NaN, surrogates, control characters: one exact error frame each."""
    assert handle_frame(raw, 256 * 1024) == Error(code=code, message=message, field=field)


def test_invalid_utf8_and_lone_surrogates_are_invalid_json() -> None:
    """Bytes that are not UTF-8, and text with a lone surrogate, are invalid_json from parse_agent_frame."""
    for raw in (b'{"type": "\xff"}', '{"type": "\ud800"}'):
        with pytest.raises(ProtocolError) as info:
            parse_agent_frame(raw)
        assert info.value.code == "invalid_json"


def test_hello_with_a_huge_protocol_number_is_told_the_supported_versions() -> None:
    """A hello naming protocol 2**80 is an unsupported version (1002), its reason cut to a close frame."""
    rejection = handle_hello(hello_raw(protocol=2**80), LIMIT)
    assert rejection == Rejection(1002, f"unsupported protocol version {2**80}; supported: 1")


# --------------------------------------------------------------- property-based

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "hello",
            "events",
            "heartbeat",
            "state",
            "usage",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
        ]
    )
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "type",
        "events",
        "id",
        "seq",
        "ts",
        "payload",
        "token",
        "agent_version",
        "protocol",
        "state",
        "trace",
        "minutes",
        "start",
        "task",
    ]
)


@st.composite
def frame_like(draw: st.DrawFn) -> Any:
    """A JSON object that looks like a frame: a known type, known field names, arbitrary values."""
    kind = draw(st.sampled_from(["hello", "events", "heartbeat", "bogus"]))
    data: dict[str, Any] = {"type": kind}
    data |= draw(st.dictionaries(FIELDS, JSON_VALUES, max_size=4))
    if kind == "events" and draw(st.booleans()):
        event = event_dict()
        event |= draw(st.dictionaries(FIELDS, JSON_VALUES, max_size=3))
        data["events"] = [event]
    return data


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(frame_like(), JSON_VALUES, st.text(max_size=200), st.binary(max_size=200)))
def test_parse_agent_frame_raises_only_protocol_errors(value: Any) -> None:
    """parse_agent_frame raises only ProtocolError; what it accepts encodes and converts to UTC."""
    raw = value if isinstance(value, str | bytes) else json.dumps(value)
    try:
        frame = parse_agent_frame(raw, LIMIT)
    except ProtocolError as err:
        assert err.code in {
            "invalid_json",
            "invalid_frame",
            "invalid_field",
            "unknown_type",
            "frame_too_large",
        }
        assert err.field is None or len(err.field) <= 200
        return
    encode(frame)
    if isinstance(frame, Events):
        for event in frame.events:
            assert 1 <= event.seq <= MAX_SEQ
            event.ts.astimezone(UTC)
    reply = handle_frame(raw, LIMIT)
    assert isinstance(reply, Events | Heartbeat | Error | Rejection)


@settings(max_examples=200, deadline=None, database=None)
@given(st.one_of(frame_like(), JSON_VALUES), st.binary(max_size=64))
def test_handle_hello_and_evidence_chunks_never_raise(value: Any, tail: bytes) -> None:
    """handle_hello decides every first frame; parse_evidence_chunk raises only ProtocolError."""
    raw = json.dumps(value)
    assert isinstance(handle_hello(raw, LIMIT), Hello | Rejection)
    head = raw.encode()
    try:
        parse_evidence_chunk(b"TWE1" + len(head).to_bytes(4, "big") + head + tail)
    except ProtocolError as err:
        assert err.code == "invalid_chunk"


@settings(max_examples=100, deadline=None, database=None)
@given(
    seq=st.integers(min_value=1, max_value=MAX_SEQ),
    ts=st.datetimes(
        min_value=datetime(2000, 1, 2),
        max_value=datetime(9000, 12, 30),
        timezones=st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))),
    ),
    task=st.text(max_size=200).filter(lambda t: "\x00" not in t),
)
def test_valid_events_round_trip(seq: int, ts: datetime, task: str) -> None:
    """Any event within the bounds survives encode -> parse_agent_frame unchanged."""
    frame = Events(events=[TaskEvent(id=new_event_id(), seq=seq, ts=ts, payload=TaskPayload(task=task))])
    assert parse_agent_frame(encode(frame)) == frame


def test_encode_evidence_chunk_round_trip_at_the_bounds() -> None:
    """An evidence chunk header at MAX_SEQ size and offset round-trips."""
    from realtime.protocol import EvidenceChunk

    header = EvidenceChunk(
        sha256="ab" * 32, kind="screen", purpose="incident", taken_at=TS, size=MAX_SEQ, offset=MAX_SEQ - 1
    )
    assert parse_evidence_chunk(encode_evidence_chunk(header, b"jpeg")) == (header, b"jpeg")


@pytest.mark.parametrize(
    ("field", "value", "where", "message"),
    [
        ("seq", "3", "events.0.seq", "Input should be a valid integer"),
        ("seq", True, "events.0.seq", "Input should be a valid integer"),
        ("seq", 2.0, "events.0.seq", "Input should be a valid integer"),
        (
            "ts",
            1796120754,
            "events.0.ts",
            "Value error, expected an ISO 8601 time with its zone, got the number",
        ),
        ("on_duty", "yes", "events.0.payload.on_duty", "Input should be a valid boolean"),
        ("on_duty", 1, "events.0.payload.on_duty", "Input should be a valid boolean"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_coerced(
    field: str, value: object, where: str, message: str
) -> None:
    """A number as text, a bool as a number, a number as a time: invalid_field, never stored as something."""
    event = {"id": str(new_event_id()), "seq": 1, "ts": "2026-12-01T10:00:00Z", "type": "duty"}
    event["payload"] = {"on_duty": True}
    if field == "on_duty":
        event["payload"] = {"on_duty": value}
    else:
        event[field] = value
    with pytest.raises(ProtocolError) as caught:
        parse_agent_frame(json.dumps({"type": "events", "events": [event]}))
    assert (caught.value.code, caught.value.field) == ("invalid_field", where)
    assert caught.value.message.startswith(f"{where}: {message}")
