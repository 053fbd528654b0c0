"""The audit log (a hash chain over ``audit_log`` rows), ``telework audit verify`` and ``audit head``.

:func:`append` adds an entry inside the caller's transaction, so the entry commits (or rolls
back) with the action it records. Appends are serialised: PostgreSQL through a transaction-level
advisory lock, SQLite by writing the row first (which takes the database's write lock) and only
then reading the previous entry's hash. On a protected engine (:mod:`storage.audit_witness`) the
entry gets its MAC, and the head witness in the evidence store is advanced after the commit.

:func:`verify` walks the chain in batches, checks every hash and MAC, compares the chain with the
witness and with a head kept elsewhere (``--head``), and decrypts every evidence object, naming
each problem: ``audit entry 17: hash mismatch (stored ..., computed ...)``, ``evidence 3f2a...:
content hash mismatch (...)``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.errors import OperatorError
from storage import audit_witness
from storage.audit_models import AuditEntry
from storage.audit_witness import ChainGuard, WitnessError
from storage.evidence_models import EvidenceObject
from storage.evidence_store import EvidenceStore
from storage.hash_chain import (
    GENESIS,
    ChainState,
    Head,
    Link,
    canonical_json,
    check_head,
    link_hash,
    link_mac,
    verify_links,
)
from storage.models import utcnow

log = logging.getLogger(__name__)

ADVISORY_LOCK_ID = 0x7477_6175_6469_74  # "twaudit"
PROGRESS_EVERY = 10_000


def entry_fields(row: AuditEntry) -> dict[str, Any]:
    """What an entry's hash covers (with its prev_hash): every column except the hash itself."""
    return {
        "seq": row.seq,
        "tenant_id": row.tenant_id,
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "detail": row.detail,
        "at": row.at,
    }


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    tenant_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Add an entry to the chain in ``session``'s transaction (the caller commits).

    MAC'd under the audit key of the session's engine when it is protected (ConfigError when its
    settings have no master key); the witness follows after the commit.
    """
    bind = session.get_bind()
    guard = audit_witness.guard_for(bind)
    when = (at or utcnow()).astimezone(UTC)
    # Store exactly what is hashed: the detail as it comes back from JSON.
    clean_detail = json.loads(canonical_json(dict(detail or {})))
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_ID})
    row = AuditEntry(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target=target,
        detail=clean_detail,
        at=when,
        prev_hash=GENESIS,
        hash="pending-" + uuid.uuid4().hex,
    )
    session.add(row)
    session.flush()
    prev = session.execute(
        select(col(AuditEntry.hash))
        .where(col(AuditEntry.seq) < row.seq)
        .order_by(col(AuditEntry.seq).desc())
        .limit(1)
    ).scalar_one_or_none()
    row.prev_hash = prev or GENESIS
    row.hash = link_hash(row.prev_hash, entry_fields(row))
    if guard is None:
        audit_witness.warn_unprotected(bind.engine)
    else:
        row.mac = link_mac(guard.key, row.seq or 0, row.hash)
        audit_witness.witness_after_commit(session, guard)
    session.add(row)
    session.flush()
    return row


def record(engine: Engine, **entry: Any) -> int:
    """Append one entry in its own transaction; returns its seq. Arguments as :func:`append`."""
    with Session(engine) as s:
        row = append(s, **entry)
        s.commit()
        if row.seq is None:
            raise RuntimeError("audit entry was not given a seq")
        return row.seq


def _batches(engine: Engine, batch: int) -> Iterator[list[AuditEntry]]:
    after = 0
    while True:
        with Session(engine) as s:
            rows = list(
                s.execute(
                    select(AuditEntry)
                    .where(col(AuditEntry.seq) > after)
                    .order_by(col(AuditEntry.seq))
                    .limit(batch)
                ).scalars()
            )
            s.expunge_all()
        if not rows:
            return
        yield rows
        after = rows[-1].seq or after


def verify_chain(engine: Engine, key: bytes | None, batch: int = 1000) -> tuple[ChainState, list[str]]:
    """Check every link and MAC of the chain (``key`` None: MACs unchecked); final state, problems."""
    state, problems = ChainState(), list[str]()
    for rows in _batches(engine, batch):
        links = [Link(r.seq or 0, r.prev_hash, r.hash, entry_fields(r), r.mac) for r in rows]
        before = state.checked
        state, found = verify_links(links, key, state)
        problems.extend(found)
        if state.checked // PROGRESS_EVERY != before // PROGRESS_EVERY:
            log.info("audit verify progress", extra={"entries": state.checked, "problems": len(problems)})
    return state, problems


def verify_evidence(
    engine: Engine, store: EvidenceStore, batch: int = 500, tenant: str | None = None
) -> tuple[int, list[str]]:
    """Decrypt every evidence object and compare its sha256; returns (objects checked, problems)."""
    checked, after, problems = 0, 0, list[str]()
    while True:
        with Session(engine) as s:
            query = select(col(EvidenceObject.id), col(EvidenceObject.tenant_id), col(EvidenceObject.sha256))
            if tenant is not None:
                query = query.where(col(EvidenceObject.tenant_id) == tenant)
            rows = s.execute(
                query.where(col(EvidenceObject.id) > after).order_by(col(EvidenceObject.id)).limit(batch)
            ).all()
        if not rows:
            return checked, problems
        for row_id, row_tenant, sha in rows:
            problem = store.check(row_tenant, sha)
            if problem is not None:
                problems.append(problem)
            checked += 1
            after = row_id
        log.info("evidence verify progress", extra={"objects": checked, "problems": len(problems)})


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    head: Head  # the newest entry (seq 0 and GENESIS when the log is empty)
    witness: str  # what the evidence store's witness said, for the summary line
    evidence: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _against(engine: Engine, head: Head, state: ChainState, source: str) -> list[str]:
    stored = audit_witness.stored_hash(engine, head.seq) if head.seq else None
    return check_head(head, stored, state, source)


def check_witness(engine: Engine, guard: ChainGuard | None, state: ChainState) -> tuple[str, list[str]]:
    """Compare the verified chain with the evidence store's witness: (summary, problems)."""
    if guard is None:
        return "not checked (no master key)", []
    where = guard.witness.where(audit_witness.WITNESS_KEY)
    try:
        witnessed = audit_witness.read_witness(guard.witness, guard.key)
    except WitnessError as exc:
        return "unusable", [str(exc)]
    if witnessed is None:
        if state.authenticated_from is None:
            return "none", []
        return "missing", [
            f"the evidence store has no audit head witness ({where}), but the chain has authenticated "
            f"entries from entry {state.authenticated_from} on: the witness was deleted, or its first "
            "write failed (see the log of the process that appended that entry)"
        ]
    problems = _against(engine, witnessed, state, f"the audit head witness ({where})")
    if problems:
        return f"entry {witnessed.seq}, not in the chain", problems
    behind = f", behind the head ({state.seq})" if witnessed.seq < state.seq else ""
    return f"entry {witnessed.seq}{behind}", []


def verify(
    engine: Engine,
    store: EvidenceStore | None,
    tenant: str | None = None,
    *,
    guard: ChainGuard | Literal["auto"] | None = "auto",
    head: Head | None = None,
) -> VerifyReport:
    """Verify the audit chain (MACs, witness, ``head`` kept elsewhere), then with a store its evidence.

    ``guard`` "auto": the store's (its key and backend), else the engine's protection; None: no
    key (MACs unchecked, no witness).
    """
    if guard == "auto":
        guard = store.chain_guard() if store is not None else audit_witness.guard_for(engine)
    state, problems = verify_chain(engine, guard.key if guard else None)
    if state.unchecked:
        problems.append(
            f"{state.unchecked} audit entries carry a MAC that was not checked: no master key is "
            "configured (TELEWORK_MASTER_KEY)"
        )
    witness, found = check_witness(engine, guard, state)
    problems.extend(found)
    if head is not None:
        problems.extend(_against(engine, head, state, "the head given (--head)"))
    checked = 0
    if store is not None:
        checked, found = verify_evidence(engine, store, tenant=tenant)
        problems.extend(found)
    report = VerifyReport(
        entries=state.checked, head=state.head, witness=witness, evidence=checked, problems=problems
    )
    log.info(
        "verify finished",
        extra={"entries": report.entries, "evidence": report.evidence, "problems": len(problems)},
    )
    return report


class AuditHeadError(OperatorError):
    """The newest audit entry is not authenticated: its head is not worth keeping."""


def current_head(engine: Engine, guard: ChainGuard) -> Head:
    """The newest entry as ``seq:hash``, after checking its MAC (AuditHeadError if it fails)."""
    with Session(engine) as s:
        row = s.execute(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)).scalar_one_or_none()
        authenticated = s.execute(
            select(col(AuditEntry.seq)).where(col(AuditEntry.mac).is_not(None)).limit(1)
        ).scalar_one_or_none()
    if row is None or row.seq is None:
        return Head(0, GENESIS)
    head = Head(row.seq, row.hash)
    if row.hash != link_hash(row.prev_hash, entry_fields(row)):
        raise AuditHeadError(f"audit entry {head.seq}: hash mismatch; run `telework audit verify`")
    if row.mac is None and authenticated is not None:
        raise AuditHeadError(
            f"audit entry {head.seq} (the newest) has no MAC, but entry {authenticated} has one; "
            "run `telework audit verify`"
        )
    if row.mac is not None and row.mac != link_mac(guard.key, head.seq, head.hash):
        raise AuditHeadError(
            f"audit entry {head.seq} (the newest): MAC mismatch; run `telework audit verify`"
        )
    return head
