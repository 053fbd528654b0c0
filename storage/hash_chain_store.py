"""The audit log (a hash chain over ``audit_log`` rows) and ``telework audit verify``.

:func:`append` adds an entry inside the caller's transaction, so the entry commits (or rolls
back) with the action it records. Appends are serialised: PostgreSQL through a transaction-level
advisory lock, SQLite by writing the row first (which takes the database's write lock) and only
then reading the previous entry's hash.

:func:`verify` walks the chain in batches and decrypts every evidence object, naming each
problem: ``audit entry 17: hash mismatch (stored ..., computed ...)``, ``evidence 3f2a...:
content hash mismatch (...)``. Removing the newest entries leaves a valid shorter chain: keep the
head hash that verify prints somewhere else to detect that too.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.audit_models import AuditEntry
from storage.evidence_models import EvidenceObject
from storage.evidence_store import EvidenceStore
from storage.hash_chain import GENESIS, ChainState, Link, canonical_json, link_hash, verify_links
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
    """Add an entry to the chain in ``session``'s transaction (the caller commits)."""
    when = (at or utcnow()).astimezone(UTC)
    # Store exactly what is hashed: the detail as it comes back from JSON.
    clean_detail = json.loads(canonical_json(dict(detail or {})))
    if session.get_bind().dialect.name == "postgresql":
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


def verify_chain(engine: Engine, batch: int = 1000) -> tuple[ChainState, list[str]]:
    """Check every link of the audit chain; returns the final state (count, head) and problems."""
    state, problems = ChainState(), list[str]()
    for rows in _batches(engine, batch):
        links = [Link(r.seq or 0, r.prev_hash, r.hash, entry_fields(r)) for r in rows]
        before = state.checked
        state, found = verify_links(links, state)
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
    head: str  # hash of the newest entry (GENESIS when the log is empty)
    evidence: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    engine: Engine,
    store: EvidenceStore | None,
    tenant: str | None = None,
) -> VerifyReport:
    """Verify the audit chain, then (with a store) every evidence object."""
    state, problems = verify_chain(engine)
    checked = 0
    if store is not None:
        checked, found = verify_evidence(engine, store, tenant=tenant)
        problems.extend(found)
    report = VerifyReport(entries=state.checked, head=state.hash, evidence=checked, problems=problems)
    log.info(
        "verify finished",
        extra={"entries": report.entries, "evidence": report.evidence, "problems": len(problems)},
    )
    return report
