"""The audit chain's guard in a process: the HMAC key, and the head witness in the evidence store.

An engine is *protected* when this process knows the audit-chain key (derived from the master
key, :func:`storage.keyring.audit_chain_key`) and the evidence backend for it:
:func:`storage.evidence_store.open_store` protects its engine, and
:func:`protect_with_settings` does so lazily (the master key is read at the first append, so a
process that never audits needs none). :func:`storage.hash_chain_store.append` MACs each entry
under the key of the session's engine; an unprotected engine appends unauthenticated entries
(logged as a warning), which ``audit verify`` reports once the chain has authenticated ones.

The witness (:data:`WITNESS_KEY`, ``audit/head`` in the evidence backend) holds the newest
committed head and its MAC. After every commit that appended, :func:`advance_witness` reads the
committed head back from the database and writes it, so the witness is never ahead of what
committed. It never moves backwards, and it does not move on from a head that the database no
longer holds (the tampering stays visible). Appends racing in several processes may leave it a
few entries behind: the newer entries are still MAC'd, and the next append catches up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary, WeakSet

from sqlalchemy import event, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from storage.blob_backends import Backend, BlobMissing, make_backend
from storage.hash_chain import Head, encode_witness, link_mac, parse_witness
from storage.keyring import audit_chain_key, default_key_file, ensure_master_key, load_master_key

if TYPE_CHECKING:
    from core.settings import ServerSettings

log = logging.getLogger(__name__)

WITNESS_KEY = "audit/head"
_PENDING = "telework.audit_witness.pending"  # Session.info: the guard of an uncommitted append
_HOOKED = "telework.audit_witness.hooked"


class WitnessError(ValueError):
    """The witness object exists but cannot be used (not a witness, or its MAC fails)."""


@dataclass(frozen=True)
class ChainGuard:
    """What authenticates the chain in this process: the HMAC key and where the witness lives."""

    key: bytes
    witness: Backend


_guards: WeakKeyDictionary[Engine, ChainGuard] = WeakKeyDictionary()
_lazy: WeakKeyDictionary[Engine, ServerSettings] = WeakKeyDictionary()
_warned: WeakSet[Engine] = WeakSet()
_lock = threading.Lock()  # registry and witness updates within this process


def guard_from_settings(settings: ServerSettings, *, create_key: bool) -> ChainGuard:
    """The guard the settings describe; ConfigError naming the variable when there is no master key.

    ``create_key``: in the embedded key mode (neither TELEWORK_MASTER_KEY nor _FILE set), create
    ``DATA_DIR/master.key`` as ``telework up`` does, instead of failing.
    """
    if create_key and settings.master_key is None and settings.master_key_file is None:
        ensure_master_key(settings.data_dir)
    return ChainGuard(audit_chain_key(load_master_key(settings)), make_backend(settings))


def configured_guard(settings: ServerSettings) -> ChainGuard | None:
    """As :func:`guard_from_settings` (no key created); None when no master key is configured at all.

    A configured key that cannot be read is still a ConfigError.
    """
    embedded = settings.master_key is None and settings.master_key_file is None
    if embedded and not default_key_file(settings.data_dir).is_file():
        return None
    return guard_from_settings(settings, create_key=False)


def protect(engine: Engine, guard: ChainGuard) -> None:
    """Appends through ``engine`` are MAC'd with ``guard.key`` and witnessed in ``guard.witness``."""
    with _lock:
        _guards[engine] = guard
        _lazy.pop(engine, None)


def protect_with_settings(engine: Engine, settings: ServerSettings) -> None:
    """As :func:`protect`, the guard built from ``settings`` at the first append (not now)."""
    with _lock:
        if engine not in _guards:
            _lazy[engine] = settings


def guard_for(bind: Engine | Connection) -> ChainGuard | None:
    """The guard protecting ``bind``'s engine; None when unprotected. May raise ConfigError (lazy)."""
    engine = bind.engine if isinstance(bind, Connection) else bind
    with _lock:
        guard = _guards.get(engine)
        settings = _lazy.get(engine)
    if guard is not None or settings is None:
        return guard
    guard = guard_from_settings(settings, create_key=True)
    protect(engine, guard)
    return guard


def warn_unprotected(engine: Engine) -> None:
    """Log once per engine that its appends are not authenticated."""
    with _lock:
        if engine in _warned:
            return
        _warned.add(engine)
    log.warning(
        "audit entries appended without the audit key: they are not authenticated, and audit "
        "verify reports them once the chain has authenticated entries",
        extra={"database": engine.url.render_as_string(hide_password=True)},
    )


# ----------------------------------------------------------------------- the witness


def read_witness(backend: Backend, key: bytes | None) -> Head | None:
    """The witnessed head; None when there is no witness; WitnessError when it is not usable."""
    try:
        blob = backend.get(WITNESS_KEY)
    except BlobMissing:
        return None
    try:
        return parse_witness(blob, key)
    except ValueError as exc:
        raise WitnessError(f"the audit head witness ({backend.where(WITNESS_KEY)}): {exc}") from None


def _committed_head(engine: Engine) -> tuple[Head, str | None] | None:
    with Session(engine) as s:
        row = s.execute(
            select(col(AuditEntry.seq), col(AuditEntry.hash), col(AuditEntry.mac))
            .order_by(col(AuditEntry.seq).desc())
            .limit(1)
        ).one_or_none()
    return None if row is None else (Head(row[0], row[1]), row[2])


def stored_hash(engine: Engine, seq: int) -> str | None:
    """The hash of audit entry ``seq``; None when there is no such entry."""
    with Session(engine) as s:
        found: str | None = s.execute(
            select(col(AuditEntry.hash)).where(col(AuditEntry.seq) == seq)
        ).scalar_one_or_none()
    return found


def advance_witness(engine: Engine, guard: ChainGuard) -> Head | None:
    """Write the committed head as the witness, if it is newer; returns the head written, or None.

    Refuses (logged as an error, nothing written) when the newest entry's MAC fails, when the
    current witness cannot be read, or when the entry it names is no longer in the database.
    """
    with _lock:
        committed = _committed_head(engine)
        if committed is None:
            return None
        head, mac = committed
        if mac != link_mac(guard.key, head.seq, head.hash):
            log.error(
                "audit witness not advanced: the newest entry is not authenticated", extra={"seq": head.seq}
            )
            return None
        try:
            current = read_witness(guard.witness, guard.key)
        except WitnessError as exc:
            log.error("audit witness not advanced: %s", exc, extra={"seq": head.seq})
            return None
        if current is not None and current.seq >= head.seq:
            return None
        if current is not None and stored_hash(engine, current.seq) != current.hash:
            log.error(
                "audit witness not advanced: the entry it names is not in the database as witnessed; "
                "run `telework audit verify`",
                extra={"witness": str(current), "head": str(head)},
            )
            return None
        guard.witness.put(WITNESS_KEY, encode_witness(guard.key, head))
        return head


def witness_after_commit(session: Session, guard: ChainGuard) -> None:
    """Advance the witness once ``session``'s transaction commits (nothing if it rolls back)."""
    session.info[_PENDING] = guard
    if session.info.get(_HOOKED):
        return
    session.info[_HOOKED] = True

    def committed(s: Session) -> None:
        pending = s.info.pop(_PENDING, None)
        bind = s.get_bind()
        if pending is None or not isinstance(bind, Engine):
            return
        try:
            advance_witness(bind, pending)
        except Exception as exc:  # the action committed: a failed witness write must not undo its report
            log.error(
                "audit witness not advanced (%s: %s); audit verify reports it until the next append",
                type(exc).__name__,
                exc,
            )

    def rolled_back(s: Session, previous: SessionTransaction) -> None:
        if not previous.nested:  # a savepoint's rollback leaves the outer append pending
            s.info.pop(_PENDING, None)

    event.listen(session, "after_commit", committed)
    event.listen(session, "after_soft_rollback", rolled_back)
