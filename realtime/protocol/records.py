"""Protocol v1 internal records: stream entries, live states, dead letters. Pure."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from realtime.protocol.base import (
    MAX_SEQ,
    MAX_TEXT,
    Slug,
    Timestamp,
    WireModel,
)
from realtime.protocol.events import (
    Event,
)
from realtime.protocol.vocabulary import PresenceState


class StreamEvent(WireModel):
    """One event as stored in a tenant's Redis stream (field ``e``)."""

    type: Literal["stream_event"] = "stream_event"
    v: Literal[1] = 1
    tenant: Slug
    agent_id: Slug
    session_id: str
    received_at: Timestamp
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
    task: str | None = Field(default=None, max_length=MAX_TEXT)
    since: Timestamp | None = None
    last_seen: Timestamp
    last_event_id: uuid.UUID | None = None
    last_seq: int = Field(default=0, ge=0, le=MAX_SEQ)
    # the session that owns this state (the newest one); only it may mark the agent offline
    session_id: str | None = None
    agent_version: str | None = Field(default=None, max_length=64)  # from the newest session's hello


class LiveRemoved(WireModel):
    """Published on a tenant's live channel when an agent's live state is deleted (its user erased):
    live views drop the agent's row."""

    type: Literal["live_removed"] = "live_removed"
    v: Literal[1] = 1
    tenant: Slug
    agent_id: Slug
    at: Timestamp


class DeadLetter(WireModel):
    """A stream entry a worker could not process, with the reason."""

    type: Literal["dead_letter"] = "dead_letter"
    v: Literal[1] = 1
    stream: str
    entry_id: str
    reason: str
    deliveries: int
    fields: dict[str, str]
    failed_at: Timestamp
