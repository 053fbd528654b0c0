"""Wire protocol v1 and the pure session core: round trips and every error path, no I/O."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from realtime.protocol import (
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
    Welcome,
    encode,
    new_event_id,
    parse_agent_frame,
    parse_record,
    parse_server_frame,
)
from realtime.session import (
    Rejection,
    close_reason,
    handle_frame,
    handle_hello,
    highest_seq,
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
        "frame is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        None,
    ),
    ("not an object", "[1, 2]", "invalid_frame", "expected a JSON object, got list", None),
    (
        "oversize",
        "x" * (LIMIT + 1),
        "frame_too_large",
        f"frame is {LIMIT + 1} bytes; the limit is {LIMIT} bytes",
        None,
    ),
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
        1002, "invalid hello frame: frame is not valid JSON: Expecting value: line 1 column 1 (char 0)"
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
