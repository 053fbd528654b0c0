"""The pure parts of an agent session: its options, which closes are final, and how events
are stamped (next seq, a new UUIDv7, the time). No I/O; :mod:`agent.client` does the rest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from agent.ports import Payload
from agent.tls import AgentTls
from realtime.protocol import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_TRY_AGAIN_LATER,
    MAX_FRAME_BYTES,
    MAX_USAGE_MINUTES,
    DutyEvent,
    DutyPayload,
    GapEvent,
    IncidentEvent,
    IncidentPayload,
    StateEvent,
    StatePayload,
    TaskEvent,
    TaskPayload,
    UsageEvent,
    UsageMinute,
    UsagePayload,
    new_event_id,
)

FRAME_HEADROOM = 1024  # bytes kept below the gateway's frame limit
FATAL_CLOSE_CODES = frozenset({CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR})
# closes after which the backoff goes on growing even though the connection was welcomed
KEEP_BACKING_OFF = frozenset({CLOSE_REPLACED, CLOSE_TRY_AGAIN_LATER})

ProducedEvent = StateEvent | DutyEvent | TaskEvent | IncidentEvent
AnyEvent = ProducedEvent | GapEvent | UsageEvent
E = TypeVar("E", GapEvent, UsageEvent)
_EVENT_OF: dict[type, type[ProducedEvent]] = {
    StatePayload: StateEvent,
    DutyPayload: DutyEvent,
    TaskPayload: TaskEvent,
    IncidentPayload: IncidentEvent,
}


@dataclass(frozen=True)
class SessionOptions:
    batch_max: int = 200
    max_frame_bytes: int = MAX_FRAME_BYTES - FRAME_HEADROOM
    window: int = 2000  # unacked events in flight at most
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    open_timeout_s: float = 10.0
    upload_kbps: float = 160.0  # pace of image uploads (events draw on the same budget)
    upload_chunk_bytes: int = 8192  # image bytes per binary frame (also the pacer's burst)
    upload_timeout_s: float = 60.0  # no reply to an uploaded image this long: reconnect
    usage_report_s: float = 600.0  # a usage event this often (0: never)
    tls: AgentTls = field(default_factory=AgentTls)  # no ws:// off loopback, verify, pins (agent/tls.py)


def with_seq(text: str, seq: int) -> str:
    """An event's JSON with another ``seq`` (the same compact form as ``encode``)."""
    return json.dumps({**json.loads(text), "seq": seq}, separators=(",", ":"), ensure_ascii=False)


def is_fatal_close(code: int | None) -> bool:
    """Close codes after which reconnecting cannot help."""
    return code in FATAL_CLOSE_CODES


def frame_limit(options: SessionOptions, announced: int | None) -> int:
    """The largest events frame to send: the options' limit, lowered to what the gateway takes."""
    if announced is None:
        return options.max_frame_bytes
    return min(options.max_frame_bytes, announced - FRAME_HEADROOM)


def produced(payload: Payload, seq: int, ts: datetime | None = None) -> ProducedEvent:
    """The event carrying ``payload`` as number ``seq``, at ``ts`` (default: now, UTC)."""
    return _EVENT_OF[type(payload)](id=new_event_id(), seq=seq, ts=ts or datetime.now(UTC), payload=payload)


def stamped(kind: type[E], payload: object, seq: int, ts: datetime | None = None) -> E:
    """A gap or usage event of the agent itself, as number ``seq``, at ``ts`` (default: now, UTC)."""
    return kind.model_validate(
        {"id": new_event_id(), "seq": seq, "ts": ts or datetime.now(UTC), "payload": payload}
    )


def usage_payloads(minutes: list[UsageMinute]) -> list[UsagePayload]:
    """Completed minutes of traffic, cut to what one usage event carries."""
    return [
        UsagePayload(minutes=minutes[start : start + MAX_USAGE_MINUTES])
        for start in range(0, len(minutes), MAX_USAGE_MINUTES)
    ]
