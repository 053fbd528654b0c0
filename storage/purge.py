"""Batched deletion for retention: rows in bounded transactions, blobs first.

An erasure is one transaction instead (:mod:`storage.personal_erase`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.evidence_models import EvidenceObject
from storage.evidence_store import EvidenceStore

log = logging.getLogger(__name__)


class PurgeStopped(Exception):
    """A stop was requested between two batches."""


def check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise PurgeStopped


def delete_in_batches(
    engine: Engine,
    table: Any,
    pk: Any,
    where: ColumnElement[bool],
    batch: int,
    stop: threading.Event | None = None,
) -> int:
    """Delete rows matching ``where``, ``batch`` per transaction, logging progress; returns the count."""
    total = 0
    while True:
        check_stop(stop)
        with Session(engine) as s:
            ids = list(s.execute(select(pk).where(where).limit(batch)).scalars())
            if not ids:
                return total
            # `where` again: a key may not be unique on its own (events are keyed per tenant)
            s.execute(delete(table).where(where, pk.in_(ids)))
            s.commit()
        total += len(ids)
        log.info("purge progress", extra={"table": table.__tablename__, "deleted": total})


EvidenceRow = tuple[int, str, str, str]  # id, tenant, sha256, storage key


def evidence_rows(engine: Engine, where: ColumnElement[bool]) -> list[EvidenceRow]:
    with Session(engine) as s:
        rows = s.execute(
            select(
                col(EvidenceObject.id),
                col(EvidenceObject.tenant_id),
                col(EvidenceObject.sha256),
                col(EvidenceObject.storage_key),
            ).where(where)
        ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def delete_evidence(
    engine: Engine, store: EvidenceStore, rows: Sequence[EvidenceRow], batch: int = 1000
) -> int:
    """Delete the ciphertext blobs, then the rows, ``batch`` at a time; returns the count."""
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        for _id, _tenant, _sha, key in chunk:
            store.backend.delete(key)
        with Session(engine) as s:
            s.execute(delete(EvidenceObject).where(col(EvidenceObject.id).in_([r[0] for r in chunk])))
            s.commit()
    return len(rows)
