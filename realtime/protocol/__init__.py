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

The presence vocabulary (:mod:`realtime.protocol.vocabulary`): :data:`PresenceState`,
:data:`IncidentKind`, :data:`IncidentPhase` and their value tuples, defined once for every layer.
"""

from __future__ import annotations

from core.ids import SLUG_RE
from realtime.protocol.base import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    EVIDENCE_CHUNK_MAX,
    EVIDENCE_MAGIC,
    MAX_EVENTS_PER_FRAME,
    MAX_FRAME_BYTES,
    MAX_TASKS,
    MAX_USAGE_MINUTES,
    PROTOCOL_VERSION,
    SHA256_PATTERN,
    SUPPORTED_VERSIONS,
    Slug,
    TaskName,
    WireModel,
    new_event_id,
)
from realtime.protocol.codec import (
    ProtocolError,
    encode,
    encode_evidence_chunk,
    is_evidence_frame,
    parse_agent_frame,
    parse_evidence_chunk,
    parse_record,
    parse_server_frame,
)
from realtime.protocol.events import (
    EVENT_TYPES,
    AgentSettings,
    DutyEvent,
    DutyPayload,
    Event,
    GapEvent,
    GapPayload,
    IncidentEvent,
    IncidentPayload,
    StateEvent,
    StatePayload,
    TaskEvent,
    TaskPayload,
    UsageEvent,
    UsageMinute,
    UsagePayload,
)
from realtime.protocol.frames import (
    AGENT_FRAME_TYPES,
    SERVER_FRAME_TYPES,
    Ack,
    AgentFrame,
    Error,
    Events,
    EvidenceChunk,
    EvidenceRejected,
    EvidenceStored,
    Frame,
    Heartbeat,
    Hello,
    ServerFrame,
    ServerFrameModel,
    SettingsPush,
    TasksPush,
    Welcome,
)
from realtime.protocol.records import (
    DeadLetter,
    LiveState,
    StreamEvent,
)
from realtime.protocol.vocabulary import (
    CAMERA_STATES,
    INCIDENT_KINDS,
    INCIDENT_PHASES,
    PRESENCE_STATES,
    STATES_BY_URGENCY,
    USER_SEEN_STATES,
    IncidentKind,
    IncidentPhase,
    PresenceState,
    is_incident,
)

__all__ = [
    "AGENT_FRAME_TYPES",
    "CAMERA_STATES",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_PROTOCOL_ERROR",
    "EVENT_TYPES",
    "EVIDENCE_CHUNK_MAX",
    "EVIDENCE_MAGIC",
    "INCIDENT_KINDS",
    "INCIDENT_PHASES",
    "MAX_EVENTS_PER_FRAME",
    "MAX_FRAME_BYTES",
    "MAX_TASKS",
    "MAX_USAGE_MINUTES",
    "PRESENCE_STATES",
    "PROTOCOL_VERSION",
    "SERVER_FRAME_TYPES",
    "SHA256_PATTERN",
    "SLUG_RE",
    "STATES_BY_URGENCY",
    "SUPPORTED_VERSIONS",
    "USER_SEEN_STATES",
    "Ack",
    "AgentFrame",
    "AgentSettings",
    "DeadLetter",
    "DutyEvent",
    "DutyPayload",
    "Error",
    "Event",
    "Events",
    "EvidenceChunk",
    "EvidenceRejected",
    "EvidenceStored",
    "Frame",
    "GapEvent",
    "GapPayload",
    "Heartbeat",
    "Hello",
    "IncidentEvent",
    "IncidentKind",
    "IncidentPayload",
    "IncidentPhase",
    "LiveState",
    "PresenceState",
    "ProtocolError",
    "ServerFrame",
    "ServerFrameModel",
    "SettingsPush",
    "Slug",
    "StateEvent",
    "StatePayload",
    "StreamEvent",
    "TaskEvent",
    "TaskName",
    "TaskPayload",
    "TasksPush",
    "UsageEvent",
    "UsageMinute",
    "UsagePayload",
    "Welcome",
    "WireModel",
    "encode",
    "encode_evidence_chunk",
    "is_evidence_frame",
    "is_incident",
    "new_event_id",
    "parse_agent_frame",
    "parse_evidence_chunk",
    "parse_record",
    "parse_server_frame",
]
