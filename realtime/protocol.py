"""Wire protocol v1: the only thing that crosses a process boundary.

Pure: pydantic models and functions from bytes to models and back, no I/O.
Imported by the agent, the gateway, the workers and the dashboard.

Session frames (agent <-> gateway, JSON text frames, ``type`` discriminator):

* agent -> gateway: ``hello`` (first frame), ``events``, ``heartbeat``
* gateway -> agent: ``welcome``, ``ack``, ``heartbeat``, ``settings``, ``tasks``, ``error``,
  ``evidence_stored``, ``evidence_rejected``
* agent -> gateway, binary: evidence chunks (:class:`EvidenceChunk`, :func:`encode_evidence_chunk`)

Internal records (Redis stream entries and live-state values) are protocol
models too: :class:`StreamEvent`, :class:`LiveState`, :class:`DeadLetter`.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, TypeGuard

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
MAX_FRAME_BYTES = 256 * 1024
MAX_EVENTS_PER_FRAME = 1000
MAX_USAGE_MINUTES = 120  # minutes in one usage event
EVIDENCE_MAGIC = b"TWE1"  # first bytes of a binary evidence-chunk frame (issue 4)
EVIDENCE_CHUNK_MAX = 64 * 1024  # bytes of image data in one chunk frame
SHA256_PATTERN = r"^[0-9a-f]{64}$"

# WebSocket close codes used by the gateway.
CLOSE_POLICY_VIOLATION = 1008  # bad or revoked token
CLOSE_PROTOCOL_ERROR = 1002  # unsupported protocol version, no hello first

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

PresenceState = Literal[
    "present", "away", "peeking", "impersonation", "camera_blocked", "camera_unavailable"
]
IncidentKind = Literal["peeking", "impersonation", "camera_blocked"]


class WireModel(BaseModel):
    """Base of every protocol model: unknown fields rejected, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Slug = Annotated[str, Field(pattern=SLUG_RE.pattern)]
TaskName = Annotated[str, Field(min_length=1, max_length=200)]
MAX_TASKS = 500  # task names in one welcome or tasks frame


# --------------------------------------------------------------------------- ids


def new_event_id(now_ns: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, random rest."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 68) & 0xFFF) << 64  # 12 bits rand_a
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def _require_v7(value: uuid.UUID) -> uuid.UUID:
    if value.version != 7:
        raise ValueError(f"expected a UUIDv7, got version {value.version}")
    return value


# ------------------------------------------------------------------ settings push


class AgentSettings(WireModel):
    """Behaviour the server sets centrally and pushes to agents."""

    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)
    threshold_level: int = Field(default=3, ge=1, le=5)
    analysis_fps: float = Field(default=2.0, gt=0, le=30)
    away_after_s: float = Field(default=30.0, gt=0)
    incident_after_s: float = Field(default=3.0, gt=0)
    evidence_interval_s: float = Field(default=600.0, gt=0)
    incident_action: Literal["log", "lock"] = "log"
    # Detection tuning (issue 3): how long a peeking face or a covered/unavailable camera must
    # persist before the state changes, and how large another face must be, relative to the
    # user's, to count as able to read the screen.
    peeking_after_s: float = Field(default=1.0, gt=0, le=60)
    camera_after_s: float = Field(default=2.0, gt=0, le=600)
    other_face_min_ratio: float = Field(default=0.5, gt=0, le=2)


# ------------------------------------------------------------------------ events


class StatePayload(WireModel):
    state: PresenceState
    trace: dict[str, Any] | None = None
    # sha256 of periodic evidence images (webcam still, screenshot) taken in this state
    evidence: list[str] = Field(default_factory=list, max_length=16)


class DutyPayload(WireModel):
    on_duty: bool
    verified: bool = False


class TaskPayload(WireModel):
    task: str | None = Field(default=None, max_length=200)


class IncidentPayload(WireModel):
    kind: IncidentKind
    phase: Literal["start", "end"]
    evidence: list[str] = Field(default_factory=list, max_length=16)
    trace: dict[str, Any] | None = None


class GapPayload(WireModel):
    images_overwritten: int = Field(ge=0)


class _EventBase(WireModel):
    id: uuid.UUID
    seq: int = Field(ge=1)
    ts: AwareDatetime

    _v7 = field_validator("id")(_require_v7)


class StateEvent(_EventBase):
    type: Literal["state"] = "state"
    payload: StatePayload


class DutyEvent(_EventBase):
    type: Literal["duty"] = "duty"
    payload: DutyPayload


class TaskEvent(_EventBase):
    type: Literal["task"] = "task"
    payload: TaskPayload


class IncidentEvent(_EventBase):
    type: Literal["incident"] = "incident"
    payload: IncidentPayload


class GapEvent(_EventBase):
    type: Literal["gap"] = "gap"
    payload: GapPayload


class UsageMinute(WireModel):
    """One minute of an agent's traffic on its session (WebSocket messages incl. framing)."""

    start: AwareDatetime  # the minute's first second (UTC)
    sent: int = Field(ge=0)  # bytes agent -> gateway
    received: int = Field(ge=0)  # bytes gateway -> agent
    peak_sent_kbps: float = Field(ge=0)  # highest 1 s window of the minute, kilobits per second
    peak_received_kbps: float = Field(ge=0)


class UsagePayload(WireModel):
    minutes: list[UsageMinute] = Field(min_length=1, max_length=MAX_USAGE_MINUTES)


class UsageEvent(_EventBase):
    """Bandwidth the agent measured, reported every few minutes (issue 4)."""

    type: Literal["usage"] = "usage"
    payload: UsagePayload


Event = Annotated[
    StateEvent | DutyEvent | TaskEvent | IncidentEvent | GapEvent | UsageEvent,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[str, ...] = ("state", "duty", "task", "incident", "gap", "usage")


# ------------------------------------------------------------------------ frames


class Hello(WireModel):
    type: Literal["hello"] = "hello"
    token: str = Field(min_length=1, max_length=512)
    agent_version: str = Field(min_length=1, max_length=64)
    protocol: int


class Welcome(WireModel):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    tenant: str
    agent_id: str
    server_time: AwareDatetime
    settings: AgentSettings
    # The highest sequence number the server has received from this agent; an agent
    # without a persistent spool continues its numbering after it.
    last_seq: int = Field(default=0, ge=0)
    # The tasks the server offers this user (its tenant's active tasks); None = the server
    # does not say (the agent falls back to its local list).
    tasks: list[TaskName] | None = Field(default=None, max_length=MAX_TASKS)


class Events(WireModel):
    type: Literal["events"] = "events"
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS_PER_FRAME)


class Ack(WireModel):
    """``seq``: the highest sequence number durably stored for this agent."""

    type: Literal["ack"] = "ack"
    seq: int = Field(ge=0)


class Heartbeat(WireModel):
    type: Literal["heartbeat"] = "heartbeat"
    ts: AwareDatetime


class SettingsPush(WireModel):
    type: Literal["settings"] = "settings"
    settings: AgentSettings


class TasksPush(WireModel):
    """The tasks offered to this user changed; replaces the list the welcome carried."""

    type: Literal["tasks"] = "tasks"
    tasks: list[TaskName] = Field(max_length=MAX_TASKS)


class Error(WireModel):
    type: Literal["error"] = "error"
    code: str
    message: str
    field: str | None = None


class EvidenceChunk(WireModel):
    """Header of a binary evidence frame: ``EVIDENCE_MAGIC``, 4-byte big-endian header length,
    this header's JSON, then ``data`` bytes of the image starting at ``offset``.

    An image is sent as consecutive chunks (offset 0, then each next offset) so uploads can be
    paced and interleaved with event frames; the last chunk completes it.
    """

    type: Literal["evidence_chunk"] = "evidence_chunk"
    sha256: str = Field(pattern=SHA256_PATTERN)  # of the whole image
    kind: Literal["camera", "screen"]
    purpose: Literal["periodic", "incident"]
    taken_at: AwareDatetime
    size: int = Field(ge=1)  # bytes of the whole image
    offset: int = Field(ge=0)


class EvidenceStored(WireModel):
    """The server stored the image ``sha256`` durably; the agent may delete its copy."""

    type: Literal["evidence_stored"] = "evidence_stored"
    sha256: str


class EvidenceRejected(WireModel):
    """The image was not stored. ``retry``: worth sending again later (store unavailable)."""

    type: Literal["evidence_rejected"] = "evidence_rejected"
    sha256: str
    code: str  # invalid_chunk | too_large | out_of_order | sha256_mismatch | store_unavailable
    message: str
    retry: bool = False


AgentFrame = Annotated[Hello | Events | Heartbeat, Field(discriminator="type")]
ServerFrame = Annotated[
    Welcome | Ack | Heartbeat | SettingsPush | TasksPush | Error | EvidenceStored | EvidenceRejected,
    Field(discriminator="type"),
]
Frame = AgentFrame | ServerFrame
ServerFrameModel = (
    Welcome | Ack | Heartbeat | SettingsPush | TasksPush | Error | EvidenceStored | EvidenceRejected
)

_AGENT_FRAME: TypeAdapter[Hello | Events | Heartbeat] = TypeAdapter(AgentFrame)
_SERVER_FRAME: TypeAdapter[ServerFrameModel] = TypeAdapter(ServerFrame)
AGENT_FRAME_TYPES: tuple[str, ...] = ("hello", "events", "heartbeat")
SERVER_FRAME_TYPES: tuple[str, ...] = (
    "welcome",
    "ack",
    "heartbeat",
    "settings",
    "tasks",
    "error",
    "evidence_stored",
    "evidence_rejected",
)


# ------------------------------------------------------------ internal records


class StreamEvent(WireModel):
    """One event as stored in a tenant's Redis stream (field ``e``)."""

    type: Literal["stream_event"] = "stream_event"
    v: Literal[1] = 1
    tenant: Slug
    agent_id: Slug
    session_id: str
    received_at: AwareDatetime
    event: Event


class LiveState(WireModel):
    """Current state of one agent, kept in Redis and published to live views."""

    type: Literal["live_state"] = "live_state"
    v: Literal[1] = 1
    tenant: Slug
    agent_id: Slug
    user: str | None = None
    online: bool
    state: PresenceState | None = None
    on_duty: bool = False
    task: str | None = None
    since: AwareDatetime | None = None
    last_seen: AwareDatetime
    last_event_id: uuid.UUID | None = None
    last_seq: int = 0


class DeadLetter(WireModel):
    """A stream entry a worker could not process, with the reason."""

    type: Literal["dead_letter"] = "dead_letter"
    v: Literal[1] = 1
    stream: str
    entry_id: str
    reason: str
    deliveries: int
    fields: dict[str, str]
    failed_at: AwareDatetime


# ------------------------------------------------------------- encode / decode


class ProtocolError(ValueError):
    """A frame could not be accepted; becomes an ``error`` frame to the peer."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def to_frame(self) -> Error:
        return Error(code=self.code, message=self.message, field=self.field)


def encode(model: WireModel) -> str:
    """Serialise any protocol model to compact JSON text."""
    return model.model_dump_json(exclude_none=False)


def _load_json(raw: str | bytes, limit: int) -> dict[str, Any]:
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > limit:
        raise ProtocolError(
            "frame_too_large", f"frame is {size} bytes; the limit is {limit} bytes", None
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("invalid_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(
            "invalid_frame", f"expected a JSON object, got {type(data).__name__}", None
        )
    return data


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _validation_error(exc: ValidationError, adapter_tags: tuple[str, ...]) -> ProtocolError:
    err = exc.errors()[0]
    loc = list(err["loc"])
    # Drop the union tags pydantic inserts (frame type, event type) from the path.
    cleaned = [p for i, p in enumerate(loc) if not (i == 0 and p in adapter_tags)]
    cleaned = [
        p
        for i, p in enumerate(cleaned)
        if not (isinstance(p, str) and p in EVENT_TYPES and i > 0 and isinstance(cleaned[i - 1], int))
    ]
    field = _loc(tuple(cleaned)) or None
    if field is None:
        return ProtocolError("invalid_record", str(err["msg"]), None)
    return ProtocolError("invalid_field", f"{field}: {err['msg']}", field)


def _check_type(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    kind = data.get("type")
    if kind is None:
        raise ProtocolError("invalid_field", "type: field required", "type")
    if kind not in allowed:
        raise ProtocolError(
            "unknown_type",
            f"unknown frame type {kind!r}; expected one of {', '.join(allowed)}",
            "type",
        )


def parse_agent_frame(raw: str | bytes, limit: int = MAX_FRAME_BYTES) -> Hello | Events | Heartbeat:
    """Decode a frame sent by an agent, or raise :class:`ProtocolError`."""
    data = _load_json(raw, limit)
    _check_type(data, AGENT_FRAME_TYPES)
    if data["type"] == "events":
        for i, item in enumerate(data.get("events") or []):
            if isinstance(item, dict) and item.get("type") not in EVENT_TYPES:
                raise ProtocolError(
                    "unknown_type",
                    f"unknown event type {item.get('type')!r}; expected one of "
                    f"{', '.join(EVENT_TYPES)}",
                    f"events.{i}.type",
                )
    try:
        return _AGENT_FRAME.validate_python(data)
    except ValidationError as exc:
        raise _validation_error(exc, AGENT_FRAME_TYPES) from None


def parse_server_frame(raw: str | bytes, limit: int = MAX_FRAME_BYTES) -> ServerFrameModel:
    """Decode a frame sent by the gateway, or raise :class:`ProtocolError`."""
    data = _load_json(raw, limit)
    _check_type(data, SERVER_FRAME_TYPES)
    try:
        return _SERVER_FRAME.validate_python(data)
    except ValidationError as exc:
        raise _validation_error(exc, SERVER_FRAME_TYPES) from None


def parse_record(raw: str | bytes, model: type[WireModel]) -> Any:
    """Decode an internal record (stream entry, live state); raises ProtocolError."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _validation_error(exc, ()) from None


def is_evidence_frame(raw: str | bytes) -> TypeGuard[bytes]:
    """True for a binary evidence-chunk frame (JSON frames never start with these bytes)."""
    return isinstance(raw, bytes) and raw[: len(EVIDENCE_MAGIC)] == EVIDENCE_MAGIC


def encode_evidence_chunk(header: EvidenceChunk, data: bytes) -> bytes:
    """The binary frame carrying ``data`` (the image bytes at ``header.offset``)."""
    head = encode(header).encode()
    return EVIDENCE_MAGIC + len(head).to_bytes(4, "big") + head + data


def parse_evidence_chunk(raw: bytes) -> tuple[EvidenceChunk, bytes]:
    """Split a binary evidence frame into its header and data, or raise :class:`ProtocolError`."""
    if not is_evidence_frame(raw):
        raise ProtocolError("invalid_chunk", f"expected a frame starting with {EVIDENCE_MAGIC!r}")
    start = len(EVIDENCE_MAGIC) + 4
    if len(raw) < start:
        raise ProtocolError("invalid_chunk", f"frame is {len(raw)} bytes; expected at least {start}")
    length = int.from_bytes(raw[len(EVIDENCE_MAGIC) : start], "big")
    if length > len(raw) - start:
        raise ProtocolError(
            "invalid_chunk", f"header length {length} exceeds the {len(raw) - start} bytes that follow"
        )
    try:
        header = EvidenceChunk.model_validate_json(raw[start : start + length])
    except ValidationError as exc:
        err = _validation_error(exc, ())
        raise ProtocolError("invalid_chunk", err.message, err.field) from None
    return header, raw[start + length :]


def utc_from_ms(ms: int) -> datetime:
    """A timezone-aware UTC datetime from Unix milliseconds."""
    from datetime import UTC

    return datetime.fromtimestamp(ms / 1000, tz=UTC)
