"""Protocol v1 session frames between agent and gateway. Pure."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    TypeAdapter,
)

from realtime.protocol.base import (
    MAX_EVENTS_PER_FRAME,
    MAX_PROTOCOL,
    MAX_SEQ,
    MAX_TASKS,
    PROTOCOL_VERSION,
    SHA256_PATTERN,
    TaskName,
    Timestamp,
    WireModel,
)
from realtime.protocol.events import (
    AgentSettings,
    Event,
)
from realtime.protocol.face_templates import TemplatePush


class Hello(WireModel):
    type: Literal["hello"] = "hello"
    token: str = Field(min_length=1, max_length=512)
    agent_version: str = Field(min_length=1, max_length=64)
    protocol: int = Field(ge=0, le=MAX_PROTOCOL, strict=True)


class Welcome(WireModel):
    type: Literal["welcome"] = "welcome"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    tenant: str
    agent_id: str
    server_time: Timestamp
    settings: AgentSettings
    # The highest sequence number the server has received from this agent; an agent
    # without a persistent spool continues its numbering after it.
    last_seq: int = Field(default=0, ge=0, le=MAX_SEQ)
    # The tasks the server offers this user (its tenant's active tasks); None = the server
    # does not say (the agent falls back to its local list).
    tasks: list[TaskName] | None = Field(default=None, max_length=MAX_TASKS)
    # True: this gateway sends ``stored`` frames, and the agent keeps each event until one covers
    # it. False (an older gateway): an ``ack`` is the last word and frees the event.
    stored_watermark: bool = False
    # The largest frame this gateway takes (bytes; above it the session is closed with 1009);
    # None (an older gateway): the protocol's MAX_FRAME_BYTES.
    max_frame_bytes: int | None = Field(default=None, ge=1024, le=MAX_SEQ)
    # The user's current face template (realtime/protocol/face_templates.py); None: the server
    # does not say (the agent keeps what it has).
    face_template: TemplatePush | None = None


class Events(WireModel):
    type: Literal["events"] = "events"
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS_PER_FRAME)


class Ack(WireModel):
    """``seq``: every event of this agent up to it is in the event store (Redis); flow control only."""

    type: Literal["ack"] = "ack"
    seq: int = Field(ge=0, le=MAX_SEQ)


class EventsStored(WireModel):
    """``seq``: every event of this agent up to it is committed in the database; the agent may
    free them from its spool (and must keep, and resend after a reconnect, everything above)."""

    type: Literal["stored"] = "stored"
    seq: int = Field(ge=0, le=MAX_SEQ)


class Heartbeat(WireModel):
    type: Literal["heartbeat"] = "heartbeat"
    ts: Timestamp


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
    purpose: Literal["periodic", "incident", "enrollment"]  # enrollment: a face image for the template
    taken_at: Timestamp
    size: int = Field(ge=1, le=MAX_SEQ)  # bytes of the whole image
    offset: int = Field(ge=0, le=MAX_SEQ)


class EvidenceStored(WireModel):
    """The server stored the image ``sha256`` durably; the agent may delete its copy."""

    type: Literal["evidence_stored"] = "evidence_stored"
    sha256: str


class EvidenceRejected(WireModel):
    """The image was not stored. ``retry``: worth sending again later (store unavailable)."""

    type: Literal["evidence_rejected"] = "evidence_rejected"
    sha256: str
    code: str  # invalid_chunk | too_large | out_of_order | sha256_mismatch | store_unavailable | busy
    # | face_rejected (an enrollment image refused by the face gate: ``message`` says why)
    message: str
    retry: bool = False


AgentFrame = Annotated[Hello | Events | Heartbeat, Field(discriminator="type")]
ServerFrame = Annotated[
    Welcome
    | Ack
    | EventsStored
    | Heartbeat
    | SettingsPush
    | TasksPush
    | Error
    | EvidenceStored
    | EvidenceRejected
    | TemplatePush,
    Field(discriminator="type"),
]
Frame = AgentFrame | ServerFrame
ServerFrameModel = (
    Welcome
    | Ack
    | EventsStored
    | Heartbeat
    | SettingsPush
    | TasksPush
    | Error
    | EvidenceStored
    | EvidenceRejected
    | TemplatePush
)

_AGENT_FRAME: TypeAdapter[Hello | Events | Heartbeat] = TypeAdapter(AgentFrame)
_SERVER_FRAME: TypeAdapter[ServerFrameModel] = TypeAdapter(ServerFrame)
AGENT_FRAME_TYPES: tuple[str, ...] = ("hello", "events", "heartbeat")
SERVER_FRAME_TYPES: tuple[str, ...] = (
    "welcome",
    "ack",
    "stored",
    "heartbeat",
    "settings",
    "tasks",
    "error",
    "evidence_stored",
    "evidence_rejected",
    "template",
)
