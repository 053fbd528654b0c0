"""Pure session core of the gateway: raw frames in, decisions out. No I/O.

The gateway's WebSocket loop is a thin shell around these functions:

* :func:`handle_hello` decides what the first frame of a connection means: a
  :class:`~realtime.protocol.Hello` to authenticate, or a :class:`Rejection`
  (close code and reason) when it is not a hello or names a protocol version
  this server does not speak.
* :func:`handle_frame` decides what every later frame means: an
  :class:`~realtime.protocol.Events` batch to store, a
  :class:`~realtime.protocol.Heartbeat` to answer, or an
  :class:`~realtime.protocol.Error` frame to send back. Bad frames never end the
  session.

Close codes: 1002 for a connection that does not start with a supported hello,
1008 for a bad or revoked token (decided in :mod:`realtime.auth`), and
:data:`CLOSE_HEARTBEAT_TIMEOUT` (4000) for a session silent past the heartbeat
timeout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from realtime.protocol import (
    CLOSE_PROTOCOL_ERROR,
    SUPPORTED_VERSIONS,
    Error,
    Event,
    Events,
    Heartbeat,
    Hello,
    ProtocolError,
    parse_agent_frame,
)

MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: the close reason fits in a 125-byte control frame


@dataclass(frozen=True)
class Rejection:
    """The connection must be closed with ``close_code`` and ``reason``."""

    close_code: int
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", close_reason(self.reason))


def close_reason(text: str) -> str:
    """``text`` cut to what a WebSocket close frame can carry (123 UTF-8 bytes)."""
    data = text.encode()
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return text
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."


def unsupported_version(version: object) -> Rejection:
    supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    return Rejection(CLOSE_PROTOCOL_ERROR, f"unsupported protocol version {version}; supported: {supported}")


def _peek(raw: str | bytes) -> dict[str, object] | None:
    """The frame as a JSON object when it is one, else None (used only to explain rejections)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def handle_hello(raw: str | bytes, limit: int) -> Hello | Rejection:
    """Decide what the first frame of a connection means."""
    try:
        frame = parse_agent_frame(raw, limit)
    except ProtocolError as err:
        data = _peek(raw) if err.code != "frame_too_large" else None
        kind = data.get("type") if data is not None else None
        if isinstance(kind, str) and kind != "hello":
            return Rejection(CLOSE_PROTOCOL_ERROR, f"expected a hello frame first, got {kind}")
        if data is not None and kind == "hello":
            version = data.get("protocol")
            if isinstance(version, int) and version not in SUPPORTED_VERSIONS:
                # Checked before the other fields: a newer agent may send fields v1 does not know.
                return unsupported_version(version)
        return Rejection(CLOSE_PROTOCOL_ERROR, f"invalid hello frame: {err.message}")
    if not isinstance(frame, Hello):
        return Rejection(CLOSE_PROTOCOL_ERROR, f"expected a hello frame first, got {frame.type}")
    if frame.protocol not in SUPPORTED_VERSIONS:
        return unsupported_version(frame.protocol)
    return frame


def handle_frame(raw: str | bytes, limit: int) -> Events | Heartbeat | Error:
    """Decide what a frame after the handshake means; every problem becomes an error frame."""
    try:
        frame = parse_agent_frame(raw, limit)
    except ProtocolError as err:
        return err.to_frame()
    if isinstance(frame, Hello):
        return Error(
            code="unexpected_hello",
            message="hello is only valid as the first frame; this session is already established",
            field="type",
        )
    return frame


def highest_seq(events: Sequence[Event]) -> int:
    """The highest sequence number in a batch (0 for an empty batch)."""
    return max((event.seq for event in events), default=0)
