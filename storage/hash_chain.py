"""Hash-chain maths of the audit log (pure): canonical JSON, link hashes, chain verification.

Each entry's hash is ``sha256(prev_hash + canonical_json(fields))`` where ``fields`` are every
column of the entry except its own hash. The first entry links to :data:`GENESIS`. Altering,
inserting, re-ordering or removing an entry (other than the newest ones) breaks a link. Gaps in
``seq`` alone are not problems: a rolled-back transaction consumes a sequence number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

GENESIS = "0" * 64


def _default(value: object) -> object:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"audit field: expected JSON-able values, got {type(value).__name__}")


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8, datetimes as UTC ISO with microseconds."""
    return json.dumps(
        fields, default=_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def link_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """The hash of an entry whose predecessor's hash is ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(fields)).hexdigest()


@dataclass(frozen=True)
class Link:
    """One stored audit entry as the verifier sees it."""

    seq: int
    prev_hash: str
    hash: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class ChainState:
    """Where a verification pass stands: the last seq and hash seen (for batched verification)."""

    seq: int = 0
    hash: str = GENESIS
    checked: int = 0


def verify_links(links: Iterable[Link], state: ChainState = ChainState()) -> tuple[ChainState, list[str]]:
    """Check entries in seq order, continuing from ``state``; returns the new state and problems.

    Each problem names the entry: ``audit entry 17: hash mismatch (stored ..., computed ...)``.
    """
    problems: list[str] = []
    seq, prev, checked = state.seq, state.hash, state.checked
    for link in links:
        if link.prev_hash != prev:
            before = f"the previous entry ({seq}) has hash" if checked else "the chain starts at"
            problems.append(
                f"audit entry {link.seq}: link broken (prev_hash {link.prev_hash}, but {before} "
                f"{prev}): an entry before it was removed or re-hashed"
            )
        computed = link_hash(link.prev_hash, link.fields)
        if computed != link.hash:
            problems.append(
                f"audit entry {link.seq}: hash mismatch (stored {link.hash}, computed {computed})"
            )
        seq, prev, checked = link.seq, link.hash, checked + 1
    return ChainState(seq=seq, hash=prev, checked=checked), problems
