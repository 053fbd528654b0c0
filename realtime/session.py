"""Pure session core of the gateway: raw frames in, decisions out. No I/O.

The gateway's WebSocket loop is a thin shell around these functions:

* :func:`handle_hello` decides what the first frame of a connection means: a
  :class:`~realtime.protocol.Hello` to authenticate, or a :class:`Rejection`
  (close code and reason) when it is not a hello or names a protocol version
  this server does not speak.
* :func:`handle_frame` decides what every later frame means: an
  :class:`~realtime.protocol.Events` batch to store, a
  :class:`~realtime.protocol.Heartbeat` to answer, an
  :class:`~realtime.protocol.Error` frame to send back (a bad frame does not end the
  session), or a :class:`Rejection` for a frame above the size limit.
* :func:`refused_times` decides which events of a batch have a client timestamp outside the
  window of the server's clock (:func:`out_of_window`); those go to the tenant's dead-letter
  stream as :func:`refused_letter` records instead of its event stream, the rest is stored.

Close codes: 1002 for a connection that does not start with a supported hello,
1008 for a bad or revoked token (decided in :mod:`realtime.auth`), 1009 for a frame,
text or binary, above the size limit, and :data:`CLOSE_HEARTBEAT_TIMEOUT` (4000) for
a session silent past the heartbeat timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from realtime import keys
from realtime.protocol import (
    AGENT_FRAME_TYPES,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    EVIDENCE_MAGIC,
    SUPPORTED_VERSIONS,
    DeadLetter,
    Error,
    Event,
    Events,
    Heartbeat,
    Hello,
    ProtocolError,
    UsageEvent,
    encode,
    is_evidence_frame,
    load_object,
    parse_agent_frame,
    too_large,
)

MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: the close reason fits in a 125-byte control frame


@dataclass(frozen=True)
class Rejection:
    """The connection must be closed with ``close_code`` and ``reason``.

    ``kind``: a short fixed name of the reason (``too_large``, ``no_hello``, ``bad_hello``,
    ``unsupported_version``) for counting and rate-limiting log lines; empty when the reason
    itself is fixed text (the token rejections of :mod:`realtime.auth`).
    """

    close_code: int
    reason: str
    kind: str = field(default="", compare=False)

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
    return Rejection(
        CLOSE_PROTOCOL_ERROR,
        f"unsupported protocol version {version}; supported: {supported}",
        "unsupported_version",
    )


def oversize(raw: str | bytes, limit: int) -> Rejection | None:
    """Close 1009 for a frame, text or binary (evidence chunks too), above ``limit`` bytes; else None."""
    error = too_large(raw, limit)
    return None if error is None else Rejection(CLOSE_MESSAGE_TOO_BIG, error.message, "too_large")


def _peek(raw: str | bytes, limit: int) -> dict[str, object] | None:
    """The frame as a JSON object when it is one, else None (used only to explain rejections)."""
    try:
        return load_object(raw, limit)
    except ProtocolError:
        return None


def handle_hello(raw: str | bytes, limit: int) -> Hello | Rejection:
    """Decide what the first frame of a connection means."""
    too_big = oversize(raw, limit)
    if too_big is not None:
        return too_big
    if isinstance(raw, bytes):
        what = "an evidence chunk" if is_evidence_frame(raw) else "a binary frame"
        return Rejection(CLOSE_PROTOCOL_ERROR, f"expected a hello frame first, got {what}", "no_hello")
    try:
        frame = parse_agent_frame(raw, limit)
    except ProtocolError as err:
        data = _peek(raw, limit)
        kind = data.get("type") if data is not None else None
        if isinstance(kind, str) and kind != "hello":
            got = kind if kind in AGENT_FRAME_TYPES else "an unknown frame type"
            return Rejection(CLOSE_PROTOCOL_ERROR, f"expected a hello frame first, got {got}", "no_hello")
        if data is not None and kind == "hello":
            version = data.get("protocol")
            if (
                isinstance(version, int)
                and not isinstance(version, bool)
                and version not in SUPPORTED_VERSIONS
            ):
                # Checked before the other fields: a newer agent may send fields v1 does not know.
                return unsupported_version(version)
        return Rejection(CLOSE_PROTOCOL_ERROR, f"invalid hello frame: {err.message}", "bad_hello")
    if not isinstance(frame, Hello):
        return Rejection(CLOSE_PROTOCOL_ERROR, f"expected a hello frame first, got {frame.type}", "no_hello")
    if frame.protocol not in SUPPORTED_VERSIONS:
        return unsupported_version(frame.protocol)
    return frame


def handle_frame(raw: str | bytes, limit: int) -> Events | Heartbeat | Error | Rejection:
    """Decide what a frame after the handshake means: a frame above ``limit`` closes the session
    (1009); every other problem becomes an error frame and the session goes on."""
    too_big = oversize(raw, limit)
    if too_big is not None:
        return too_big
    if isinstance(raw, bytes):
        return Error(
            code="invalid_frame",
            message=f"expected a JSON text frame or an evidence chunk (binary, starting with "
            f"{EVIDENCE_MAGIC!r}), got a binary frame of {len(raw)} bytes",
            field=None,
        )
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


# ----------------------------------------------------------------- time window


def _span(seconds: float) -> str:
    days = seconds / 86_400
    return f"{days:g} days" if seconds >= 86_400 and days == int(days) else f"{seconds:g} s"


def out_of_window(ts: datetime, now: datetime, max_age_s: float, max_skew_s: float) -> str | None:
    """Why a client's timestamp cannot be stored: older than ``max_age_s`` or more than
    ``max_skew_s`` ahead of the server's clock ``now``; None when it is within the window."""
    ahead = (ts - now).total_seconds()
    if ahead > max_skew_s:
        return (
            f"expected a time at most {_span(max_skew_s)} ahead of the server's clock "
            f"({now.isoformat()}), got {ts.isoformat()}, {ahead:.0f} s ahead"
        )
    if -ahead > max_age_s:
        return (
            f"expected a time at most {_span(max_age_s)} before the server's clock "
            f"({now.isoformat()}), got {ts.isoformat()}, {-ahead:.0f} s before"
        )
    return None


def check_event_times(
    events: Sequence[Event], now: datetime, max_age_s: float, max_skew_s: float
) -> Error | None:
    """The ``invalid_field`` error naming the first client timestamp of a batch (an event's
    ``ts``, a usage minute's ``start``) outside the window of the server's clock; else None."""
    refused = refused_times(events, now, max_age_s, max_skew_s)
    return next(iter(refused.values()), None)


def refused_times(
    events: Sequence[Event], now: datetime, max_age_s: float, max_skew_s: float
) -> dict[int, Error]:
    """The events of a batch with a client timestamp outside the window, by index, each with
    the ``invalid_field`` error naming its first such timestamp; the others may be stored."""
    refused: dict[int, Error] = {}
    for i, event in enumerate(events):
        stamps = [(f"events.{i}.ts", event.ts)]
        if isinstance(event, UsageEvent):
            stamps += [
                (f"events.{i}.payload.minutes.{j}.start", m.start)
                for j, m in enumerate(event.payload.minutes)
            ]
        for name, ts in stamps:
            why = out_of_window(ts, now, max_age_s, max_skew_s)
            if why is not None:
                refused[i] = Error(code="invalid_field", message=f"{name}: {why}", field=name)
                break
    return refused


REFUSED_ENTRY_ID = "refused"  # the entry_id of a dead letter written by the gateway itself


def refused_letter(stream: str, entry: str, reason: str, now: datetime) -> str:
    """The dead-letter record (JSON) of an event the gateway refused to put on ``stream``: the
    stream entry it would have been (``entry``, StreamEvent JSON), and why."""
    return encode(
        DeadLetter(
            stream=stream,
            entry_id=REFUSED_ENTRY_ID,
            reason=f"refused by the gateway: {reason}",
            deliveries=0,
            fields={keys.ENTRY_FIELD: entry},
            failed_at=now,
        )
    )
