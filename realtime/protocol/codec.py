"""Protocol v1 encoding and decoding: JSON text frames, records, binary evidence chunks. Pure."""

from __future__ import annotations

from typing import Any, TypeGuard

from pydantic import (
    ValidationError,
)
from pydantic_core import from_json

from realtime.protocol.base import (
    EVIDENCE_MAGIC,
    MAX_FRAME_BYTES,
    WireModel,
)
from realtime.protocol.events import (
    EVENT_TYPES,
)
from realtime.protocol.frames import (
    _AGENT_FRAME,
    _SERVER_FRAME,
    AGENT_FRAME_TYPES,
    SERVER_FRAME_TYPES,
    Error,
    Events,
    EvidenceChunk,
    Heartbeat,
    Hello,
    ServerFrameModel,
)


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


MAX_SHOWN = 64  # characters of a peer's value quoted back in an error message
MAX_FIELD = 200  # characters of a field path in an error


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters (``...`` marks a cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def frame_bytes(raw: str | bytes) -> bytes:
    """The bytes of a frame as it travelled (a text frame's UTF-8; lone surrogates kept, as invalid UTF-8)."""
    return raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw


def _too_large(size: int, limit: int) -> ProtocolError | None:
    if size <= limit:
        return None
    return ProtocolError("frame_too_large", f"frame is {size} bytes; the limit is {limit} bytes", None)


def too_large(raw: str | bytes, limit: int) -> ProtocolError | None:
    """The ``frame_too_large`` error for a frame, text or binary, above ``limit`` bytes; else None."""
    return _too_large(len(frame_bytes(raw)), limit)


def load_object(raw: str | bytes, limit: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """A frame's JSON object, or ProtocolError: too large, not JSON (also: invalid UTF-8, nested
    deeper than 200 levels, NaN or Infinity, a lone surrogate), or not an object."""
    data_bytes = frame_bytes(raw)
    oversize = _too_large(len(data_bytes), limit)
    if oversize is not None:
        raise oversize
    try:
        data = from_json(data_bytes, allow_inf_nan=False)
    except ValueError as exc:
        raise ProtocolError("invalid_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_frame", f"expected a JSON object, got {_json_type(data)}", None)
    return data


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _loc(loc: tuple[int | str, ...]) -> str:
    return clip(".".join(str(p) for p in loc), MAX_FIELD)


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


def _shown(value: object) -> str:
    """A peer's value for an error message: its repr, clipped."""
    return clip(repr(value))


def _check_type(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    kind = data.get("type")
    if kind is None:
        raise ProtocolError("invalid_field", "type: field required", "type")
    if not isinstance(kind, str) or kind not in allowed:
        raise ProtocolError(
            "unknown_type",
            f"unknown frame type {_shown(kind)}; expected one of {', '.join(allowed)}",
            "type",
        )


def parse_agent_frame(raw: str | bytes, limit: int = MAX_FRAME_BYTES) -> Hello | Events | Heartbeat:
    """Decode a frame sent by an agent, or raise :class:`ProtocolError` (and nothing else)."""
    data = load_object(raw, limit)
    _check_type(data, AGENT_FRAME_TYPES)
    events = data.get("events")
    if data["type"] == "events" and isinstance(events, list):
        for i, item in enumerate(events):
            kind = item.get("type") if isinstance(item, dict) else None
            if isinstance(item, dict) and (not isinstance(kind, str) or kind not in EVENT_TYPES):
                raise ProtocolError(
                    "unknown_type",
                    f"unknown event type {_shown(kind)}; expected one of {', '.join(EVENT_TYPES)}",
                    f"events.{i}.type",
                )
    try:
        return _AGENT_FRAME.validate_python(data)
    except ValidationError as exc:
        raise _validation_error(exc, AGENT_FRAME_TYPES) from None


def parse_server_frame(raw: str | bytes, limit: int = MAX_FRAME_BYTES) -> ServerFrameModel:
    """Decode a frame sent by the gateway, or raise :class:`ProtocolError`."""
    data = load_object(raw, limit)
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
