"""Hash-chain maths of the audit log (pure): canonical JSON, link hashes, MACs, heads, verification.

Each entry's hash is ``sha256(prev_hash + canonical_json(fields))`` where ``fields`` are every
column of the entry except its own hash and MAC. The first entry links to :data:`GENESIS`.
Altering, inserting, re-ordering or removing an entry (other than the newest ones) breaks a link.
Gaps in ``seq`` alone are not problems: a rolled-back transaction consumes a sequence number.

Plain hashes can be recomputed by anyone who can write the table, so each entry also carries a
MAC (:func:`link_mac`, HMAC-SHA256 of its seq and hash under a key the database does not hold,
``h1:`` + 64 hex digits). Entries of older versions have none: they are accepted only before the
first authenticated entry. A :class:`Head` (``seq:hash``) names the newest entry at some moment;
kept outside the database (by the operator, or MAC'd in the evidence store as the witness,
:func:`encode_witness`) it shows entries removed from the end, or all of them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

GENESIS = "0" * 64
MAC_PREFIX = "h1:"  # HMAC-SHA256 under the audit-chain key (storage.keyring.audit_chain_key)
MAX_SEQ = 2**63 - 1
WITNESS_VERSION = 1
WITNESS_MAX_BYTES = 1024
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
HEAD_RE = re.compile(r"^(0|[1-9][0-9]{0,18}):([0-9a-f]{64})$")
MAC_RE = re.compile(r"^h1:[0-9a-f]{64}$")


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
    return hashlib.sha256(prev_hash.encode() + canonical_json(fields)).hexdigest()


def _hmac(key: bytes, label: str, seq: int, hash_: str) -> str:
    return hmac.new(key, f"telework/{label}/v1/{seq}/{hash_}".encode(), hashlib.sha256).hexdigest()


def shown(value: str) -> str:
    """A stored hash as printed: itself when it is 64 hex digits, else escaped (``repr``), so a value
    written into the database cannot carry terminal control sequences into a report."""
    return value if HASH_RE.match(value) else repr(value)


def link_mac(key: bytes, seq: int, hash_: str) -> str:
    """The MAC of entry ``seq`` whose hash is ``hash_``: ``h1:`` + HMAC-SHA256 hex."""
    return MAC_PREFIX + _hmac(key, "audit-link", seq, hash_)


@dataclass(frozen=True)
class Link:
    """One stored audit entry as the verifier sees it (``mac`` None: written before MACs)."""

    seq: int
    prev_hash: str
    hash: str
    fields: Mapping[str, Any]
    mac: str | None = None


@dataclass(frozen=True)
class ChainState:
    """Where a verification pass stands (for batched verification).

    ``seq``/``hash``: the last entry seen; ``authenticated_from``: the seq of the first entry with
    a MAC; ``unchecked``: entries with a MAC that could not be checked (no key given).
    """

    seq: int = 0
    hash: str = GENESIS
    checked: int = 0
    authenticated_from: int | None = None
    unchecked: int = 0

    @property
    def head(self) -> Head:
        return Head(self.seq, self.hash)


def _mac_problem(link: Link, key: bytes | None, state: ChainState) -> str | None:
    if link.mac is None:
        if state.authenticated_from is None:
            return None  # an entry of an older version, before any authenticated one
        return (
            f"audit entry {link.seq}: no MAC, but the entries from {state.authenticated_from} on are "
            "authenticated: its MAC was removed, or a process without the master key appended it"
        )
    if key is None:
        return None
    if not hmac.compare_digest(link.mac.encode(), link_mac(key, link.seq, link.hash).encode()):
        return (
            f"audit entry {link.seq}: MAC mismatch (the entry was rewritten or re-hashed without the "
            "audit key, or the configured master key is not the one it was written with)"
        )
    return None


def verify_links(
    links: Iterable[Link], key: bytes | None, state: ChainState = ChainState()
) -> tuple[ChainState, list[str]]:
    """Check entries in seq order, continuing from ``state``; returns the new state and problems.

    ``key`` None: MACs are counted in ``unchecked``, not checked. Each problem names the entry:
    ``audit entry 17: hash mismatch (stored ..., computed ...)``.
    """
    problems: list[str] = []
    for link in links:
        if link.prev_hash != state.hash:
            before = f"the previous entry ({state.seq}) has hash" if state.checked else "the chain starts at"
            problems.append(
                f"audit entry {link.seq}: link broken (prev_hash {shown(link.prev_hash)}, but {before} "
                f"{shown(state.hash)}): an entry before it was removed or re-hashed"
            )
        computed = link_hash(link.prev_hash, link.fields)
        if computed != link.hash:
            problems.append(
                f"audit entry {link.seq}: hash mismatch (stored {shown(link.hash)}, computed {computed})"
            )
        mac_problem = _mac_problem(link, key, state)
        if mac_problem is not None:
            problems.append(mac_problem)
        first_mac = state.authenticated_from
        if first_mac is None and link.mac is not None:
            first_mac = link.seq
        state = ChainState(
            seq=link.seq,
            hash=link.hash,
            checked=state.checked + 1,
            authenticated_from=first_mac,
            unchecked=state.unchecked + (link.mac is not None and key is None),
        )
    return state, problems


# ------------------------------------------------------------------------- heads


@dataclass(frozen=True)
class Head:
    """The newest entry of the chain at some moment: ``seq:hash`` (``0:000...`` an empty chain)."""

    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.seq}:{shown(self.hash)}"


EMPTY_HEAD = Head(0, GENESIS)


def parse_head(text: str) -> Head:
    """Parse ``SEQ:HASH`` as ``telework audit head`` prints it; ValueError saying what arrived."""
    match = HEAD_RE.match(text.strip())
    if match is None:
        shown = text if len(text) <= 80 else text[:80] + "..."
        raise ValueError(f"expected SEQ:HASH (a number, a colon, 64 lowercase hex digits), got {shown!r}")
    seq = int(match.group(1))
    if seq > MAX_SEQ:
        raise ValueError(f"expected a seq of at most {MAX_SEQ}, got {seq}")
    head = Head(seq, match.group(2))
    if (seq == 0) != (head.hash == GENESIS):
        raise ValueError(f"expected seq 0 only with the empty chain's hash {GENESIS}, got {head}")
    return head


def head_mac(key: bytes, head: Head) -> str:
    """The MAC of a witnessed head (a different label from :func:`link_mac`: not interchangeable)."""
    return MAC_PREFIX + _hmac(key, "audit-head", head.seq, head.hash)


def encode_witness(key: bytes, head: Head) -> bytes:
    """The witness object kept in the evidence store: the head and its MAC, as JSON."""
    fields = {"v": WITNESS_VERSION, "seq": head.seq, "hash": head.hash, "mac": head_mac(key, head)}
    return canonical_json(fields)


def parse_witness(blob: bytes, key: bytes | None) -> Head:
    """The head a witness object names; ValueError saying what is wrong (``key`` None: MAC unchecked)."""
    if len(blob) > WITNESS_MAX_BYTES:
        raise ValueError(f"expected at most {WITNESS_MAX_BYTES} bytes of JSON, got {len(blob)} bytes")
    try:
        data = json.loads(blob)
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"expected JSON, got {blob[:40]!r}") from None
    if not isinstance(data, dict) or set(data) != {"v", "seq", "hash", "mac"}:
        got = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"expected the fields hash, mac, seq, v, got {got}")
    if type(data["v"]) is not int or data["v"] != WITNESS_VERSION:
        raise ValueError(f"expected version {WITNESS_VERSION}, got {data['v']!r}")
    seq, hash_, mac = data["seq"], data["hash"], data["mac"]
    if type(seq) is not int or not isinstance(hash_, str) or not isinstance(mac, str):
        raise ValueError(f"expected an integer seq and text hash and mac, got {seq!r}, {hash_!r}, {mac!r}")
    head = parse_head(f"{seq}:{hash_}")
    if not MAC_RE.match(mac):
        raise ValueError(f"expected a mac h1: + 64 hex digits, got {mac[:80]!r}")
    if key is not None and not hmac.compare_digest(mac, head_mac(key, head)):
        raise ValueError(f"MAC mismatch for head {head} (altered, or written under another master key)")
    return head


def check_head(head: Head, stored_hash: str | None, state: ChainState, source: str) -> list[str]:
    """Does the verified chain (``state``) still hold ``head``? ``stored_hash``: entry head.seq's hash.

    The chain may have grown past the head; it must not have lost or changed the entry it names.
    """
    if head.seq == 0:
        return []
    named = f"{source} names entry {head.seq} (hash {head.hash})"
    if state.checked == 0:
        return [f"{named}, but the audit log is empty: every entry was deleted"]
    if stored_hash is None and state.seq < head.seq:
        return [
            f"{named}, but the chain ends at entry {state.seq}: the newest entries were removed "
            "(or the database was restored from an older backup)"
        ]
    if stored_hash is None:
        return [f"{named}, which is not in the audit log: it was removed"]
    if stored_hash != head.hash:
        return [f"{named}, but the stored entry has hash {shown(stored_hash)}: the chain was rewritten"]
    return []
