"""Gateway side of evidence upload: binary chunk frames on the agent's session -> evidence store.

Why chunks on the session rather than an HTTPS POST: the session is already authenticated
(the agent token was checked at ``hello``), so there is no second credential path to secure;
the agent needs no HTTP client; and small chunks (8 KiB by default) can be paced and
interleaved with event frames, so an upload never holds back events or heartbeats and the
agent's bandwidth stays under its budget. An agent with a bad or revoked token never gets a
session (close 1008), so it cannot upload anything.

A chunk frame is ``EVIDENCE_MAGIC`` + header length + :class:`~realtime.protocol.EvidenceChunk`
JSON + image bytes. Chunks of one image arrive in order on one session (offset 0 starts an
image; a new offset 0 discards an unfinished one). The last chunk is checked against the
sha256 and the size limit, stored through an :class:`EvidenceSink`, and only then answered with
``evidence_stored``; every problem is answered with ``evidence_rejected`` naming the image, a
code and what was expected (``retry`` true only when the store itself failed, ``store_unavailable``,
or the gateway holds too many unfinished uploads, ``busy``: see :class:`EvidenceUploads`).

An image of purpose ``enrollment`` (a face image enrolled at the user's PC) does not go to a sink:
:mod:`realtime.face_enrollment` gates and stores it as one of the user's face images, and answers
``evidence_stored`` or ``evidence_rejected`` with code ``face_rejected`` and the gate's reason.

Sinks: :class:`EncryptedSink` (the tenant-encrypted store of :mod:`storage.evidence_store`, the
default) and :class:`FolderSink` (plain files ``<data_dir>/uploads/<tenant>/<sha256>.jpg``).
:func:`default_sink` picks one; switching is that one line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from core.config import ConfigError
from core.settings import ServerSettings
from realtime.face_enrollment import FaceEnrollment
from realtime.protocol import (
    EVIDENCE_CHUNK_MAX,
    EVIDENCE_MAGIC,
    SHA256_PATTERN,
    Error,
    EvidenceChunk,
    EvidenceRejected,
    EvidenceStored,
    ProtocolError,
    parse_evidence_chunk,
)
from realtime.session import out_of_window
from storage.evidence_store import EvidenceError, open_store, save_evidence

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- pure


@dataclass(frozen=True)
class Partial:
    """An image being received: its header and the chunks so far."""

    header: EvidenceChunk
    parts: tuple[bytes, ...]
    received: int


@dataclass(frozen=True)
class Complete:
    header: EvidenceChunk
    data: bytes


def _reject(header: EvidenceChunk, code: str, message: str) -> EvidenceRejected:
    return EvidenceRejected(sha256=header.sha256, code=code, message=f"evidence {header.sha256}: {message}")


def accept_chunk(
    partial: Partial | None, header: EvidenceChunk, data: bytes, max_bytes: int
) -> Partial | Complete | EvidenceRejected:
    """The upload after one more chunk: still partial, complete and verified, or rejected."""
    if header.size > max_bytes:
        return _reject(header, "too_large", f"image is {header.size} bytes; the limit is {max_bytes} bytes")
    if not data:
        return _reject(header, "invalid_chunk", "chunk carries no image bytes")
    if len(data) > EVIDENCE_CHUNK_MAX:
        limit = EVIDENCE_CHUNK_MAX
        return _reject(
            header, "invalid_chunk", f"chunk carries {len(data)} bytes; the limit is {limit} bytes"
        )
    if header.offset == 0:
        partial = Partial(header, (), 0)
    elif partial is None or partial.header.sha256 != header.sha256:
        return _reject(header, "out_of_order", f"expected the chunk at offset 0, got offset {header.offset}")
    elif header.offset != partial.received:
        expected = partial.received
        return _reject(
            header, "out_of_order", f"expected the chunk at offset {expected}, got offset {header.offset}"
        )
    elif header.size != partial.header.size:
        return _reject(
            header, "invalid_chunk", f"size changed between chunks: {partial.header.size} then {header.size}"
        )
    received = partial.received + len(data)
    if received > header.size:
        return _reject(header, "invalid_chunk", f"chunks add up to {received} bytes; size is {header.size}")
    parts = (*partial.parts, data)
    if received < header.size:
        return Partial(partial.header, parts, received)
    whole = b"".join(parts)
    computed = hashlib.sha256(whole).hexdigest()
    if computed != header.sha256:
        return _reject(header, "sha256_mismatch", f"content hashes to {computed}")
    return Complete(partial.header, whole)


def admits(pending_bytes: int, size: int, limit: int) -> bool:
    """Whether a new upload of ``size`` bytes may start beside ``pending_bytes`` of unfinished ones
    (declared sizes) under a gateway's ``limit``; with none unfinished, any image may start."""
    return pending_bytes == 0 or pending_bytes + size <= limit


def busy(header: EvidenceChunk, pending_bytes: int, limit: int) -> EvidenceRejected:
    """The refusal of an upload that does not fit now: retry later, nothing is lost."""
    message = (
        f"evidence {header.sha256}: gateway busy: {pending_bytes} bytes of unfinished uploads "
        f"plus {header.size} would pass the limit of {limit} bytes; retry later"
    )
    return EvidenceRejected(sha256=header.sha256, code="busy", message=message, retry=True)


# ---------------------------------------------------------------------- sinks


class EvidenceSink(Protocol):
    def store(self, tenant: str, agent_id: str, header: EvidenceChunk, data: bytes) -> str:
        """Store the verified image durably (idempotent by sha256); returns where it went."""
        ...


class FolderSink:
    """Plain files by sha256 in a folder (no encryption: for setups without the encrypted store)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_of(self, tenant: str, sha256: str) -> Path:
        return self.root / tenant / f"{sha256}.jpg"

    def store(self, tenant: str, agent_id: str, header: EvidenceChunk, data: bytes) -> str:
        target = self.path_of(tenant, header.sha256)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f"{target.name}.{agent_id}.tmp")
            temporary.write_bytes(data)
            temporary.replace(target)
        return str(target)


class EncryptedSink:
    """The tenant-encrypted evidence store, with its ``evidence_object`` row."""

    def __init__(self, settings: ServerSettings, engine: Engine) -> None:
        self.engine = engine
        self.store_ = open_store(settings, engine)  # ConfigError when no master key is configured

    def store(self, tenant: str, agent_id: str, header: EvidenceChunk, data: bytes) -> str:
        taken_at = header.taken_at
        save_evidence(
            self.engine, self.store_, tenant, data, kind=header.kind, taken_at=taken_at, agent_id=agent_id
        )
        return self.store_.where(tenant, header.sha256)


def default_sink(settings: ServerSettings, engine: Engine) -> EvidenceSink:
    """The sink the gateway stores uploads in."""
    return EncryptedSink(settings, engine)  # FolderSink(settings.data_dir / "uploads") without encryption


def readable_sha256(raw: bytes) -> str | None:
    """The ``sha256`` an evidence frame's header names, when that much of it can be read (even if
    the rest of the header is invalid); None otherwise. Pure."""
    start = len(EVIDENCE_MAGIC) + 4
    if len(raw) < start or raw[: len(EVIDENCE_MAGIC)] != EVIDENCE_MAGIC:
        return None
    length = int.from_bytes(raw[len(EVIDENCE_MAGIC) : start], "big")
    try:
        head = json.loads(raw[start : start + length])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    sha = head.get("sha256") if isinstance(head, dict) else None
    return sha if isinstance(sha, str) and re.fullmatch(SHA256_PATTERN, sha) else None


# ------------------------------------------------------------------- receiver


class EvidenceUploads:
    """Unfinished uploads per session (one image each), bounded per gateway, and storing the finished ones.

    A session has at most one image in progress (a new offset 0 discards its unfinished one), of
    at most ``evidence_max_bytes``. All sessions' unfinished images together stay within
    ``evidence_pending_max_bytes`` (counted at their declared size from their first chunk): an
    image that would pass it is refused with ``busy`` (``retry``), its later chunks dropped.
    """

    def __init__(self, settings: ServerSettings, make_sink: Callable[[], EvidenceSink] | None = None) -> None:
        self.max_bytes = settings.evidence_max_bytes
        self.pending_max_bytes = settings.evidence_pending_max_bytes
        self.window = settings.max_event_age_s, settings.max_clock_skew_s  # of taken_at (realtime/session.py)
        self.make_sink = make_sink
        self._sink: EvidenceSink | None = None
        self._partials: dict[str, Partial] = {}
        self._rejected: dict[str, str] = {}  # session -> sha256 whose later chunks are dropped unanswered
        self.pending_bytes = 0  # declared sizes of the unfinished images of every session
        self.peak_pending_bytes = 0
        self.stored = 0
        self.enrollment: FaceEnrollment | None = None  # purpose enrollment: realtime/face_enrollment.py

    def _drop_partial(self, session_id: str) -> None:
        partial = self._partials.pop(session_id, None)
        if partial is not None:
            self.pending_bytes -= partial.header.size

    def _keep_partial(self, session_id: str, partial: Partial) -> None:
        self._drop_partial(session_id)
        self._partials[session_id] = partial
        self.pending_bytes += partial.header.size
        self.peak_pending_bytes = max(self.peak_pending_bytes, self.pending_bytes)

    def held_bytes(self) -> int:
        """Image bytes held in memory for the unfinished uploads."""
        return sum(p.received for p in self._partials.values())

    def forget(self, session_id: str) -> None:
        """The session ended: drop its unfinished upload (the agent sends it again)."""
        self._drop_partial(session_id)
        self._rejected.pop(session_id, None)

    def sink(self) -> EvidenceSink:
        """The sink, built on first use; ConfigError (retried next time) if it cannot be."""
        if self._sink is None:
            if self.make_sink is None:
                raise ConfigError("TELEWORK_EVIDENCE_BACKEND", "this gateway has no evidence store")
            self._sink = self.make_sink()
        return self._sink

    async def receive(
        self, session_id: str, tenant: str, agent_id: str, raw: bytes
    ) -> EvidenceStored | EvidenceRejected | Error | None:
        """Take one chunk frame; the reply to send, or None while the image is unfinished."""
        try:
            header, data = parse_evidence_chunk(raw)
        except ProtocolError as exc:
            sha = readable_sha256(raw)
            answered = sha is not None and self._rejected.get(session_id) == sha
            self.forget(session_id)
            if sha is None:
                return exc.to_frame()
            # the image is named: answer for it (once), so the agent does not wait for a reply
            self._rejected[session_id] = sha
            message = f"evidence {sha}: {exc.message}"
            return None if answered else EvidenceRejected(sha256=sha, code="invalid_chunk", message=message)
        if header.offset > 0 and self._rejected.get(session_id) == header.sha256:
            return None  # the rest of an image already answered with evidence_rejected
        if header.offset == 0 and (why := out_of_window(header.taken_at, datetime.now(UTC), *self.window)):
            self._rejected[session_id] = header.sha256
            return _reject(header, "invalid_chunk", f"taken_at: {why}")
        extra = {"tenant": tenant, "agent_id": agent_id, "session_id": session_id, "sha256": header.sha256}
        if header.offset == 0 and header.size <= self.max_bytes:
            self._drop_partial(session_id)  # a new image discards the session's unfinished one
            if not admits(self.pending_bytes, header.size, self.pending_max_bytes):
                self._rejected[session_id] = header.sha256
                refusal = busy(header, self.pending_bytes, self.pending_max_bytes)
                log.info("evidence refused: gateway busy", extra={**extra, "pending": self.pending_bytes})
                return refusal
        result = accept_chunk(self._partials.get(session_id), header, data, self.max_bytes)
        if isinstance(result, Partial):
            self._keep_partial(session_id, result)
            self._rejected.pop(session_id, None)
            return None
        self.forget(session_id)
        if isinstance(result, EvidenceRejected):
            self._rejected[session_id] = header.sha256
        if isinstance(result, EvidenceRejected):
            log.info("evidence rejected", extra={**extra, "code": result.code, "why": result.message})
            return result
        if result.header.purpose == "enrollment":
            return await self._enrol(tenant, agent_id, result)
        try:
            sink = self.sink()
            where = await asyncio.to_thread(sink.store, tenant, agent_id, result.header, result.data)
        except (ConfigError, EvidenceError, SQLAlchemyError, OSError) as exc:
            log.error("evidence not stored", extra={**extra, "error": f"{type(exc).__name__}: {exc}"})
            message = f"evidence {header.sha256}: store unavailable: {exc}"
            return EvidenceRejected(
                sha256=header.sha256,
                code="store_unavailable",
                message=message,
                retry=True,
            )
        self.stored += 1
        log.debug("evidence stored", extra={**extra, "bytes": len(result.data), "where": where})
        return EvidenceStored(sha256=header.sha256)

    async def _enrol(self, tenant: str, agent_id: str, image: Complete) -> EvidenceStored | EvidenceRejected:
        """A face image enrolled at the user's PC: the face intake, not the evidence store."""
        sha = image.header.sha256
        if self.enrollment is None:
            why = f"enrollment {sha}: this gateway takes no enrollment images"
            return EvidenceRejected(sha256=sha, code="face_unavailable", message=why, retry=True)
        return await self.enrollment.take(tenant, agent_id, image.header, image.data)
