"""Decode a stream entry, or say why it is not a stream event; park the entries that cannot be handled.

``decode`` and ``dead_letter`` are pure (how often an entry may be delivered is
:mod:`workers.isolation`'s rule). ``send_dead_letters`` is the I/O:
XADD a :class:`~realtime.protocol.DeadLetter` to the tenant's dead-letter
stream, then XACK the original, both in one MULTI (the keys share the tenant's
hash tag), so an entry is never acked without leaving a record behind.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from realtime import keys
from realtime.protocol import EVENT_TYPES, DeadLetter, StreamEvent, encode

log = logging.getLogger(__name__)

# str -> str from a decode_responses client, bytes -> bytes otherwise
RawFields = Mapping[Any, Any]


@dataclass(frozen=True)
class DeadLetterReason:
    """Why an entry goes to the dead-letter stream instead of the database."""

    reason: str


def text_of(value: str | bytes) -> str:
    """Stream keys/values as text; undecodable bytes kept visible as ``\\xNN`` escapes."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def fields_text(fields: RawFields) -> dict[str, str]:
    return {text_of(k): text_of(v) for k, v in fields.items()}


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "event" and p in EVENT_TYPES)]
    return ".".join(parts)


def validation_reason(exc: ValidationError) -> str:
    """``invalid StreamEvent: event.ts: Input should have timezone info`` (+ how many more errors)."""
    errors = exc.errors()
    first = errors[0]
    where = _loc(tuple(first["loc"]))
    detail = f"{where}: {first['msg']}" if where else first["msg"]
    text = f"invalid StreamEvent: {detail}"
    more = len(errors) - 1
    if more:
        text += f" (and {more} more error{'s' if more > 1 else ''})"
    return text


def decode(fields: RawFields) -> StreamEvent | DeadLetterReason:
    """The entry's StreamEvent, or why it is not one."""
    raw = fields.get(keys.ENTRY_FIELD)
    if raw is None:
        raw = fields.get(keys.ENTRY_FIELD.encode())
    if raw is None:
        if not fields:
            return DeadLetterReason(
                "entry has no fields (deleted or trimmed from the stream before it was persisted)"
            )
        names = ", ".join(sorted(text_of(k) for k in fields))
        return DeadLetterReason(f"entry has no field {keys.ENTRY_FIELD!r}; fields: {names}")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return DeadLetterReason(f"field {keys.ENTRY_FIELD!r} is not UTF-8 text: {exc}")
    try:
        return StreamEvent.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return DeadLetterReason(f"field {keys.ENTRY_FIELD!r} is not valid JSON: {first['msg']}")
        return DeadLetterReason(validation_reason(exc))


def dead_letter(
    stream: str, entry_id: str, fields: RawFields, reason: str, deliveries: int, failed_at: datetime
) -> DeadLetter:
    return DeadLetter(
        stream=stream,
        entry_id=entry_id,
        reason=reason,
        deliveries=deliveries,
        fields=fields_text(fields),
        failed_at=failed_at,
    )


async def send_dead_letters(redis: Any, group: str, letters: Iterable[DeadLetter]) -> int:
    """XADD each letter to its tenant's dead-letter stream, then XACK its original; returns how many.

    One MULTI per tenant (same hash tag, so it stays legal in Redis Cluster).
    """
    letters = list(letters)
    by_tenant: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_tenant.setdefault(keys.tenant_of(letter.stream), []).append(letter)
    for tenant, batch in by_tenant.items():
        async with redis.pipeline(transaction=True) as pipe:
            for letter in batch:
                pipe.xadd(keys.dead_letter_stream(tenant), {keys.ENTRY_FIELD: encode(letter)})
                pipe.xack(letter.stream, group, letter.entry_id)
            await pipe.execute()
    for letter in letters:
        log.warning(
            "dead-lettered stream entry",
            extra={
                "stream": letter.stream,
                "entry_id": letter.entry_id,
                "reason": letter.reason,
                "deliveries": letter.deliveries,
            },
        )
    return len(letters)
