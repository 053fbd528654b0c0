"""Protocol v1 events (and the agent settings the server pushes). Pure."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
)

from realtime.protocol.base import (
    MAX_USAGE_MINUTES,
    Count,
    Flag,
    Ref,
    Seq,
    Text,
    Timestamp,
    Trace,
    WireModel,
    _require_v7,
)
from realtime.protocol.vocabulary import IncidentKind, IncidentPhase, PresenceState


class AgentSettings(WireModel):
    """Behaviour the server sets centrally and pushes to agents.

    The one definition of every pushed setting: its type, default, bounds (finite numbers only)
    and meaning (``description``). ``telework admin settings`` derives its flags, help and range
    checks from these fields, so the bounds are written here and nowhere else.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    heartbeat_interval_s: float = Field(default=5.0, ge=1, le=300, description="agent heartbeat period")
    threshold_level: int = Field(
        default=3, ge=1, le=5, description="face-match strictness, 1 (lenient) to 5 (strict)"
    )
    analysis_fps: float = Field(default=2.0, ge=0.1, le=30, description="camera frames analysed per second")
    away_after_s: float = Field(
        default=30.0, ge=1, le=3600, description="away after this long without the user's face"
    )
    incident_after_s: float = Field(
        default=3.0, ge=0.5, le=600, description="impersonation after faces, none the user's, for this long"
    )
    evidence_interval_s: float = Field(
        default=600.0,
        ge=1,
        le=86_400,
        description="periodic evidence (webcam still and screenshot) interval",
    )
    incident_action: Literal["log", "lock"] = Field(
        default="log", description="`log`, or `lock` the screen on an incident"
    )
    # Detection tuning: how long a peeking face or a covered/unavailable camera must
    # persist before the state changes, and how large another face must be, relative to the
    # user's, to count as able to read the screen.
    peeking_after_s: float = Field(
        default=1.0, ge=0.2, le=60, description="peeking after the user plus another large face for this long"
    )
    camera_after_s: float = Field(
        default=2.0, ge=0.2, le=600, description="camera blocked / unavailable after this long"
    )
    other_face_min_ratio: float = Field(
        default=0.5,
        ge=0.1,
        le=1,
        description="another face counts when at least this tall relative to the user's",
    )


# ------------------------------------------------------------------------ events


class StatePayload(WireModel):
    state: PresenceState
    trace: Trace | None = None
    # sha256 of periodic evidence images (webcam still, screenshot) taken in this state
    evidence: list[Ref] = Field(default_factory=list, max_length=16)


class DutyPayload(WireModel):
    on_duty: Flag
    verified: Flag = False


class TaskPayload(WireModel):
    task: Text | None = None


class IncidentPayload(WireModel):
    kind: IncidentKind
    phase: IncidentPhase
    evidence: list[Ref] = Field(default_factory=list, max_length=16)
    trace: Trace | None = None


class GapPayload(WireModel):
    images_overwritten: Count


class _EventBase(WireModel):
    id: uuid.UUID
    seq: Seq
    ts: Timestamp

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

    start: Timestamp  # the minute's first second (UTC)
    sent: Count  # bytes agent -> gateway
    received: Count  # bytes gateway -> agent
    peak_sent_kbps: float = Field(ge=0)  # highest 1 s window of the minute, kilobits per second
    peak_received_kbps: float = Field(ge=0)


class UsagePayload(WireModel):
    minutes: list[UsageMinute] = Field(min_length=1, max_length=MAX_USAGE_MINUTES)


class UsageEvent(_EventBase):
    """Bandwidth the agent measured, reported every few minutes."""

    type: Literal["usage"] = "usage"
    payload: UsagePayload


Event = Annotated[
    StateEvent | DutyEvent | TaskEvent | IncidentEvent | GapEvent | UsageEvent,
    Field(discriminator="type"),
]
EVENT_TYPES: tuple[str, ...] = ("state", "duty", "task", "incident", "gap", "usage")
