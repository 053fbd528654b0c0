"""Protocol v1 basics: limits, close codes, the base model, identifiers. Pure."""

from __future__ import annotations

import os
import time
import uuid
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from core.ids import SLUG_RE

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
MAX_FRAME_BYTES = 256 * 1024
MAX_EVENTS_PER_FRAME = 1000
MAX_USAGE_MINUTES = 120  # minutes in one usage event
EVIDENCE_MAGIC = b"TWE1"  # first bytes of a binary evidence-chunk frame
EVIDENCE_CHUNK_MAX = 64 * 1024  # bytes of image data in one chunk frame
SHA256_PATTERN = r"^[0-9a-f]{64}$"

MAX_SEQ = 2**63 - 1  # sequence numbers and byte counts fit a signed 64-bit column

# WebSocket close codes used by the gateway (defined once; the agent decides on them too).
CLOSE_POLICY_VIOLATION = 1008  # bad or revoked token
CLOSE_PROTOCOL_ERROR = 1002  # unsupported protocol version, no hello first
CLOSE_MESSAGE_TOO_BIG = 1009  # a frame, text or binary, above the frame limit
CLOSE_STORE_UNAVAILABLE = 1011  # internal error: events could not be stored, the agent retries later
CLOSE_SERVICE_RESTART = 1012  # the gateway is stopping; reconnect (to another gateway)
CLOSE_TRY_AGAIN_LATER = 1013  # the event store is full (consumers behind); the agent keeps its spool
CLOSE_HEARTBEAT_TIMEOUT = 4000  # application code: no frame within heartbeat_timeout_s
CLOSE_REPLACED = 4001  # application code: a newer session of the same agent replaced this one


class WireModel(BaseModel):
    """Base of every protocol model: unknown fields rejected, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Slug = Annotated[str, Field(pattern=SLUG_RE.pattern)]
TaskName = Annotated[str, Field(min_length=1, max_length=200)]
MAX_TASKS = 500  # task names in one welcome or tasks frame


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
