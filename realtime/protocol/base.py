"""Protocol v1 basics: limits, close codes, the base model, identifiers. Pure."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
)

from core.ids import SLUG_RE

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
MAX_PROTOCOL = 2**31 - 1  # highest protocol version a hello may name
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
    """Base of every protocol model: unknown fields rejected, values immutable, floats finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ------------------------------------------------------------------ bounds
# Every value that reaches a database column or a page is bounded here, at the protocol
# boundary, so nothing downstream (workers, builder, live page) can overflow on it.

# Instants: aware, and within these (UTC) years, so converting one to any time zone never overflows.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
MAX_TEXT = 200  # characters of a task name (the task column's width)
MAX_REF = 128  # characters of an evidence reference (a sha256 in practice)
MAX_TRACE_DEPTH = 16  # nesting levels of a decision trace (the agent's are 4 deep)
MAX_TRACE_BYTES = 16 * 1024  # encoded size of a decision trace (the agent's are under 2 KiB)


def _sane_time(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST_TIME <= utc <= LATEST_TIME:
        raise ValueError(
            f"expected a time from {EARLIEST_TIME.year} to {LATEST_TIME.year} (UTC), got {value.isoformat()}"
        )
    return value


def _not_a_number(value: object) -> object:
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError(f"expected an ISO 8601 time with its zone, got the number {value!r}")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"expected text without NUL characters, got one at position {value.index(chr(0))}")
    return value


def _bounded_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` if it is plain JSON (finite numbers, signed 64-bit integers, text without NUL)
    within :data:`MAX_TRACE_DEPTH` levels and :data:`MAX_TRACE_BYTES` bytes; else ValueError."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > MAX_TRACE_DEPTH:
                raise ValueError(f"expected at most {MAX_TRACE_DEPTH} levels of nesting, got more")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ValueError(f"expected text keys, got {type(key).__name__}")
                    _no_nul(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _no_nul(item)
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not -MAX_SEQ - 1 <= item <= MAX_SEQ:
                raise ValueError(f"expected signed 64-bit integers, got one of {item.bit_length()} bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"expected finite numbers, got {item}")
        else:
            raise ValueError(f"expected JSON values, got {type(item).__name__}")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))
    if size > MAX_TRACE_BYTES:
        raise ValueError(f"expected at most {MAX_TRACE_BYTES} bytes of JSON, got {size}")
    return value


Slug = Annotated[str, Field(pattern=SLUG_RE.pattern)]
TaskName = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
MAX_TASKS = 500  # task names in one welcome or tasks frame
# Strict: "3", true or 2.0 is not a number of events; a bare number is not a time.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_not_a_number), AfterValidator(_sane_time)]
Seq = Annotated[int, Strict(), Field(ge=1, le=MAX_SEQ)]  # a sequence number
Count = Annotated[int, Strict(), Field(ge=0, le=MAX_SEQ)]  # a count, byte size or offset
Flag = Annotated[bool, Strict()]  # true or false, never "yes" or 1
Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_nul)]
Ref = Annotated[str, Field(max_length=MAX_REF), AfterValidator(_no_nul)]
Trace = Annotated[dict[str, Any], AfterValidator(_bounded_json)]


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
