"""Malformed frames against a live gateway (uvicorn on port 0, real Redis and SQLite).

Every frame, before or after hello, gets an error frame or a documented close code; after an
error frame the session still answers a heartbeat; nothing of a bad frame is stored; no
traceback is logged, and an unexpected fault closes only its own session (1011).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from core.logs import quiet_peer_faults
from core.settings import ServerSettings, sqlite_url
from realtime import keys
from realtime.evidence_upload import EvidenceUploads, FolderSink
from realtime.protocol import (
    EVIDENCE_MAGIC,
    Ack,
    DeadLetter,
    Error,
    Events,
    EventsStored,
    EvidenceChunk,
    EvidenceRejected,
    EvidenceStored,
    Heartbeat,
    Hello,
    StateEvent,
    StatePayload,
    StreamEvent,
    UsageEvent,
    UsageMinute,
    UsagePayload,
    Welcome,
    encode,
    encode_evidence_chunk,
    new_event_id,
    parse_record,
    parse_server_frame,
)
from storage.db import make_engine, upgrade
from tests.servers import serving
from tests.test_gateway import closed_with, gateway_on, provision, recv, session

LIMIT = 4096  # the fuzzed gateway's max_frame_bytes
RECV_S = 5.0
PRE_AUTH_CLOSES = {1002, 1008, 1009}  # a first frame that is not a supported hello with a valid token


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def state_event(seq: int = 1, ts: datetime | None = None) -> StateEvent:
    return StateEvent(id=new_event_id(), seq=seq, ts=ts or now(), payload=StatePayload(state="away"))


def usage_event(start: datetime, seq: int = 1) -> UsageEvent:
    minute = UsageMinute(start=start, sent=1, received=1, peak_sent_kbps=0.1, peak_received_kbps=0.1)
    return UsageEvent(id=new_event_id(), seq=seq, ts=now(), payload=UsagePayload(minutes=[minute]))


class Collected(logging.Handler):
    """Every log record of the test, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        """Records with a traceback, or at ERROR and above."""
        return [
            f"{r.name}: {r.getMessage()}"
            for r in self.records
            if r.exc_info or r.levelno >= logging.ERROR or "Traceback" in r.getMessage()
        ]


@dataclass
class LiveGateway:
    url: str
    token: str
    tenant: str
    redis: redis.Redis

    def stored(self) -> int:
        return int(self.redis.xlen(keys.events_stream(self.tenant)))


@pytest.fixture(scope="module")
def logged() -> Iterator[Collected]:
    handler = Collected()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def live_gateway(
    redis_server_url: str, tmp_path_factory: pytest.TempPathFactory, logged: Collected
) -> Iterator[LiveGateway]:
    """One gateway for the whole module, served from its own thread (the fuzz client is synchronous)."""
    folder = tmp_path_factory.mktemp("fuzz")
    database_url = sqlite_url(folder)
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    tenant, _agent_id, token = provision(database_url)
    config = ServerSettings(
        data_dir=folder,
        redis_url=redis_server_url,
        database_url=database_url,
        gateway_port=0,
        max_frame_bytes=LIMIT,
        session_frames_per_s=100_000,
    )
    ready: Future[tuple[int, asyncio.AbstractEventLoop, asyncio.Event]] = Future()

    def run() -> None:
        async def main() -> None:
            stopping = asyncio.Event()
            async with serving(config) as (_app, port):
                ready.set_result((port, asyncio.get_running_loop(), stopping))
                await stopping.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=run, name="fuzz-gateway", daemon=True)
    thread.start()
    port, loop, stopping = ready.result(30)
    try:
        yield LiveGateway(f"ws://127.0.0.1:{port}/v1/agent", token, tenant, client)
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(30)
        client.close()


# ------------------------------------------------------------------- strategies

NEAR_10000 = st.sampled_from(
    [
        "9999-12-31T23:59:59-23:59",
        "9999-12-31T23:59:59.999999+00:00",
        "0001-01-01T00:00:00+23:59",
        "10000-01-01T00:00:00Z",
        "9000-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "2025-13-01T00:00:00Z",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([2**63, 2**63 - 1, -(2**63) - 1, 253_402_300_800, 10**18])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zl", "Zp"]), max_size=10)
    | NEAR_10000
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
EVENT_PATHS = [
    ("events",),
    ("events", 0),
    ("events", 0, "id"),
    ("events", 0, "seq"),
    ("events", 0, "ts"),
    ("events", 0, "type"),
    ("events", 0, "payload"),
    ("events", 0, "payload", "state"),
    ("events", 0, "payload", "trace"),
    ("events", 0, "payload", "evidence"),
    ("events", 0, "extra"),
    ("type",),
]


@st.composite
def mutated_frame(draw: st.DrawFn) -> str:
    """A valid events, usage or heartbeat frame with one value replaced by an arbitrary JSON value."""
    kind = draw(st.sampled_from(["state", "usage", "heartbeat"]))
    if kind == "heartbeat":
        data = json.loads(encode(Heartbeat(ts=now())))
        data[draw(st.sampled_from(["ts", "type", "extra"]))] = draw(JSON)
        return json.dumps(data)
    event = state_event() if kind == "state" else usage_event(now())
    data = json.loads(encode(Events(events=[event])))
    path = draw(st.sampled_from(EVENT_PATHS))
    if kind == "usage" and path[-1] in ("state", "trace", "evidence"):
        path = (
            "events",
            0,
            "payload",
            "minutes",
            0,
            draw(st.sampled_from(["start", "sent", "peak_sent_kbps"])),
        )
    target: Any = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = draw(JSON)
    return json.dumps(data)


@st.composite
def deep(draw: st.DrawFn) -> str:
    """JSON nested far deeper than any frame needs, as text."""
    depth = draw(st.integers(min_value=17, max_value=3000))
    opener = draw(st.sampled_from(['{"a":', "["]))
    closer = "}" if opener.startswith("{") else "]"
    return opener * depth + "1" + closer * depth


FRAMES = st.one_of(
    mutated_frame(),
    JSON.map(json.dumps),
    st.dictionaries(st.sampled_from(["type", "events", "ts", "token"]), JSON, max_size=3).map(json.dumps),
    deep(),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"TWE1" + b),
    st.integers(min_value=LIMIT + 1, max_value=LIMIT + 64).map(lambda n: "x" * n),
)


# ------------------------------------------------------------------ the fuzzing


def read(ws: ClientConnection) -> Any:
    return parse_server_frame(ws.recv(RECV_S))


def close_code(ws: ClientConnection) -> int | None:
    """Wait for the server to close; its close code."""
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(RECV_S)
    return ws.close_code


def exchange(gw: LiveGateway, frame: str | bytes, after_hello: bool) -> None:
    """Send ``frame`` (after a hello or as the first frame) and check the gateway's answer."""
    size = len(frame.encode() if isinstance(frame, str) else frame)
    before = gw.stored()
    with connect(gw.url, proxy=None, max_size=None, open_timeout=10, close_timeout=2) as ws:
        if not after_hello:
            ws.send(frame)
            assert close_code(ws) in PRE_AUTH_CLOSES
            assert gw.stored() == before
            return
        ws.send(encode(Hello(token=gw.token, agent_version="fuzz", protocol=1)))
        assert isinstance(read(ws), Welcome)
        ws.send(frame)
        if size > LIMIT:
            assert close_code(ws) == 1009
            assert (ws.close_reason, gw.stored()) == (
                f"frame is {size} bytes; the limit is {LIMIT} bytes",
                before,
            )
            return
        ws.send(encode(Heartbeat(ts=now())))
        replies = []
        while not isinstance(reply := read(ws), Heartbeat):
            replies.append(reply)
        assert all(isinstance(r, Error | EvidenceRejected | Ack | EventsStored) for r in replies), replies
        if not any(isinstance(r, Ack) for r in replies):
            assert gw.stored() == before, replies  # a bad frame stores nothing


@settings(
    max_examples=700,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(frame=FRAMES, after_hello=st.booleans())
def test_fuzzed_frames_get_an_error_or_a_documented_close(
    live_gateway: LiveGateway, logged: Collected, frame: str | bytes, after_hello: bool
) -> None:
    """Any frame before or after hello: an error frame (the session still answers) or a documented close."""
    exchange(live_gateway, frame, after_hello)
    assert logged.problems() == []


def test_regressions_from_the_attack_report(live_gateway: LiveGateway, logged: Collected) -> None:
    """The frames that crashed sessions: each an exact error frame, the session goes on, nothing stored."""
    cases = [
        ('{"type": "events", "events": 5}', "events"),
        ('{"type": "events", "events": true}', "events"),
        ('{"type": "events", "events": null}', "events"),
        ("[" * 2000 + "]" * 2000, None),
        (events_with(seq=2**64), "events.0.seq"),
        (events_with(ts="9999-12-31T23:59:59-14:00"), "events.0.ts"),
        (events_with(payload={"state": "away", "trace": deep_trace(300)}), None),
        (json.dumps({"type": "heart\rbeat"}), "type"),
    ]
    before = live_gateway.stored()
    with connect(live_gateway.url, proxy=None, max_size=None, open_timeout=10) as ws:
        ws.send(encode(Hello(token=live_gateway.token, agent_version="fuzz", protocol=1)))
        assert isinstance(read(ws), Welcome)
        fields = []
        for raw, _field in cases:
            ws.send(raw)
            error = read(ws)
            assert isinstance(error, Error), error
            fields.append(error.field)
        ws.send(encode(Heartbeat(ts=now())))
        assert isinstance(read(ws), Heartbeat)
    assert fields == [field for _raw, field in cases]
    assert live_gateway.stored() == before
    assert logged.problems() == []


def events_with(**changes: Any) -> str:
    data = json.loads(encode(Events(events=[state_event()])))
    data["events"][0].update(changes)
    return json.dumps(data)


def deep_trace(depth: int) -> dict[str, Any]:
    trace: dict[str, Any] = {}
    for _ in range(depth):
        trace = {"t": trace}
    return trace


# ------------------------------------------------- closes, the time window, faults


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


async def test_oversize_frames_close_1009_before_and_after_hello(
    sqlite_db: str, redis_url: str, tmp_path: Path
) -> None:
    """Text and binary frames (evidence chunks too) above the limit close the session with 1009."""
    async with gateway_on(sqlite_db, redis_url, tmp_path, max_frame_bytes=2048) as running:
        async with aconnect(running.url, proxy=None, max_size=None) as ws:
            await ws.send("y" * 3000)
            assert await closed_with(ws) == (1009, "frame is 3000 bytes; the limit is 2048 bytes")
        header = EvidenceChunk(
            sha256="ab" * 32, kind="camera", purpose="periodic", taken_at=now(), size=5000, offset=0
        )
        chunk = encode_evidence_chunk(header, b"j" * 4000)
        async with session(running) as (ws, _welcome):
            await ws.send(chunk)
            assert await closed_with(ws) == (1009, f"frame is {len(chunk)} bytes; the limit is 2048 bytes")
        async with session(running) as (ws, _welcome):
            await ws.send(b"z" * 2049)
            assert await closed_with(ws) == (1009, "frame is 2049 bytes; the limit is 2048 bytes")


async def test_events_outside_the_clock_window_go_to_the_dead_letters_and_the_rest_is_stored(
    sqlite_db: str, redis_url: str, tmp_path: Path
) -> None:
    """An event older than max_event_age_s, one ahead by more than max_clock_skew_s, a usage minute
    ahead: an invalid_field error naming each, each kept in the dead-letter stream with its reason
    (not the event stream), the valid event beside one stored; every frame acked, nothing dropped."""
    async with (
        gateway_on(sqlite_db, redis_url, tmp_path, max_event_age_s=3600, max_clock_skew_s=60) as running,
        session(running) as (ws, _welcome),
    ):
        old = state_event(2, now() - timedelta(hours=2))
        ahead = state_event(3, now() + timedelta(minutes=5))
        for frame, field, seq in [
            (Events(events=[state_event(1), old]), "events.1.ts", 2),
            (Events(events=[ahead]), "events.0.ts", 3),
            (
                Events(events=[usage_event(now() + timedelta(hours=1), 4)]),
                "events.0.payload.minutes.0.start",
                4,
            ),
        ]:
            await ws.send(encode(frame))
            error = await recv(ws)
            assert (error.code, error.field) == ("invalid_field", field)
            assert await recv(ws) == Ack(seq=seq)
        redis = running.gateway.redis
        entries: list[tuple[str, dict[str, str]]] = await redis.xrange(keys.events_stream(running.tenant))  # type: ignore[assignment]
        assert [parse_record(f[keys.ENTRY_FIELD], StreamEvent).event.seq for _, f in entries] == [1]
        dead: list[tuple[str, dict[str, str]]] = await redis.xrange(keys.dead_letter_stream(running.tenant))  # type: ignore[assignment]
        letters = [parse_record(f[keys.ENTRY_FIELD], DeadLetter) for _, f in dead]
        kept = [parse_record(letter.fields[keys.ENTRY_FIELD], StreamEvent).event.seq for letter in letters]
        assert kept == [2, 3, 4]
        assert letters[0].reason.startswith(
            "refused by the gateway: events.1.ts: expected a time at most 3600 s before the server's clock"
        )
        await ws.send(encode(Events(events=[state_event(5, now() - timedelta(minutes=50))])))
        assert await recv(ws) == Ack(seq=5)


async def test_a_fault_while_handling_a_frame_closes_that_session_1011_in_one_log_line(
    sqlite_db: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An evidence store raising an error nobody expects: that session closes 1011, one log line without
    a traceback, and the gateway serves the next session."""
    caplog.set_level(logging.INFO)
    async with gateway_on(sqlite_db, redis_url, tmp_path) as running:
        settings_ = ServerSettings(data_dir=tmp_path)
        running.gateway.evidence = EvidenceUploads(settings_, lambda: FolderSink(Path("/tmp/nul\0folder")))
        image = b"jpeg" * 10
        header = EvidenceChunk(
            sha256=hashlib.sha256(image).hexdigest(),
            kind="camera",
            purpose="periodic",
            taken_at=now(),
            size=len(image),
            offset=0,
        )
        async with session(running) as (ws, _welcome):
            await ws.send(encode_evidence_chunk(header, image))
            assert await closed_with(ws) == (1011, "internal error (ValueError)")
        async with session(running) as (ws, _welcome):
            await ws.send(encode(Heartbeat(ts=now())))
            assert isinstance(await recv(ws), Heartbeat)
    failed = [r for r in caplog.records if r.getMessage() == "frame handling failed"]
    assert [(r.levelname, r.error) for r in failed] == [("ERROR", "ValueError: embedded null byte")]  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.exc_info] == []


async def test_a_fault_before_authentication_closes_1011_in_one_log_line(
    sqlite_db: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The token table gone from the database: 1011 for that connection, one line, no traceback."""
    caplog.set_level(logging.INFO)
    async with gateway_on(sqlite_db, redis_url, tmp_path) as running:
        engine = make_engine(sqlite_db)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE agent_device RENAME TO agent_device_gone"))
        engine.dispose()
        async with aconnect(running.url, proxy=None) as ws:
            await ws.send(encode(Hello(token="twa_unknown", agent_version="test", protocol=1)))
            assert await closed_with(ws) == (1011, "internal error (OperationalError)")
    failed = [r for r in caplog.records if r.getMessage() == "frame handling failed"]
    assert len(failed) == 1 and failed[0].error.startswith("OperationalError: ")  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.exc_info] == []


async def test_pre_authentication_refusals_are_logged_once_per_reason(
    sqlite_db: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Five bad hellos and five bad tokens in a row: one 'session refused' line for each reason."""
    caplog.set_level(logging.INFO, logger="realtime.gateway")
    async with gateway_on(sqlite_db, redis_url, tmp_path) as running:
        for _ in range(5):
            async with aconnect(running.url, proxy=None) as ws:
                await ws.send(
                    '{"type": "hello", "token": "", "agent_version": "x\\r\\nforged", "protocol": 1}'
                )
                assert (await closed_with(ws))[0] == 1002
            async with aconnect(running.url, proxy=None) as ws:
                await ws.send(encode(Hello(token="twa_nobody", agent_version="test", protocol=1)))
                assert await closed_with(ws) == (1008, "invalid agent token")
    refused = [(r.code, r.reason) for r in caplog.records if r.getMessage() == "session refused"]  # type: ignore[attr-defined]
    assert refused == [
        (1002, "invalid hello frame: token: String should have at least 1 character"),
        (1008, "invalid agent token"),
    ]


async def test_text_frames_that_are_not_utf8_close_with_1007(
    sqlite_db: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A text frame that is not UTF-8, before or after hello, closes 1007 (invalid data); with the logging
    every program sets up, uvicorn's report of it is one INFO line without a traceback."""
    caplog.set_level(logging.INFO)
    quiet_peer_faults()
    async with gateway_on(sqlite_db, redis_url, tmp_path) as running:
        async with aconnect(running.url, proxy=None) as ws:
            await ws.send(b'{"type": "hello\xff"}', text=True)
            assert (await closed_with(ws))[0] == 1007
        async with session(running) as (ws, _welcome):
            await ws.send(b'{"type": "heartbeat", "ts": "\xc3("}', text=True)
            assert (await closed_with(ws))[0] == 1007
        async with session(running) as (ws, _welcome):
            await ws.send(encode(Heartbeat(ts=now())))
            assert isinstance(await recv(ws), Heartbeat)
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    reports = [r.levelname for r in caplog.records if r.getMessage().startswith("Invalid UTF-8 sequence")]
    assert reports == ["INFO", "INFO"]


async def test_evidence_taken_outside_the_clock_window_is_rejected(tmp_path: Path) -> None:
    """An image taken before max_event_age_s or ahead of the clock: rejected, not retried, not stored."""
    uploads = EvidenceUploads(
        ServerSettings(data_dir=tmp_path, max_event_age_s=86_400), lambda: FolderSink(tmp_path / "up")
    )
    image = b"jpeg" * 10
    sha = hashlib.sha256(image).hexdigest()
    for taken_at in (now() - timedelta(days=2), now() + timedelta(hours=1)):
        header = EvidenceChunk(
            sha256=sha, kind="camera", purpose="periodic", taken_at=taken_at, size=len(image), offset=0
        )
        reply = await uploads.receive("s1", "acme", "pc-1", encode_evidence_chunk(header, image))
        assert isinstance(reply, EvidenceRejected)
        assert (reply.code, reply.retry) == ("invalid_chunk", False)
        assert reply.message.startswith(f"evidence {sha}: taken_at: expected a time at most ")
    assert not (tmp_path / "up").exists()
    header = EvidenceChunk(
        sha256=sha, kind="camera", purpose="periodic", taken_at=now(), size=len(image), offset=0
    )
    assert await uploads.receive(
        "s1", "acme", "pc-1", encode_evidence_chunk(header, image)
    ) == EvidenceStored(sha256=sha)


async def test_an_image_with_an_invalid_header_is_answered_by_name_once(tmp_path: Path) -> None:
    """A header that names its sha256 but fails validation (taken in 1970): evidence_rejected for that
    image, once (its later chunks unanswered), never a nameless error the agent would wait on."""
    uploads = EvidenceUploads(ServerSettings(data_dir=tmp_path), lambda: FolderSink(tmp_path / "up"))
    image = b"jpeg" * 10
    sha = hashlib.sha256(image).hexdigest()
    head = {
        "type": "evidence_chunk",
        "sha256": sha,
        "kind": "camera",
        "purpose": "periodic",
        "taken_at": "1970-01-01T00:00:00Z",
        "size": len(image),
        "offset": 0,
    }
    text = json.dumps(head).encode()
    frame = EVIDENCE_MAGIC + len(text).to_bytes(4, "big") + text + image
    reply = await uploads.receive("s1", "acme", "pc-1", frame)
    assert isinstance(reply, EvidenceRejected)
    assert (reply.sha256, reply.code, reply.retry) == (sha, "invalid_chunk", False)
    assert reply.message.startswith(f"evidence {sha}: taken_at: ")
    assert await uploads.receive("s1", "acme", "pc-1", frame) is None
    assert isinstance(await uploads.receive("s1", "acme", "pc-1", b"TWE1\x00\x00\x00\x05{bad}"), Error)
