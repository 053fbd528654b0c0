"""Erasing a person from the database and the evidence store, all rows at once, resumably.

:func:`revoke` (its own transaction, audited ``user.erase.revoke``) disables the user and revokes
their agents first, so gateways close their sessions (:mod:`realtime.revocation`) and no new
data arrives while the rest runs. :func:`erase_rows` then applies every holding of
:mod:`storage.personal_registry` in ONE transaction with the ``user.erase`` audit entry (by user
id only): it commits all of it or nothing (a failure leaves the data as it was, and running it
again starts over). Before its first write an erasure manifest is written to the evidence store
(``erasure/<tenant>/<user id>.json``, sealed with the tenant's data key): the agents and the
storage keys of the person's evidence and face images. After the commit :func:`delete_blobs`
deletes those objects (rows first, blobs after), and the caller, once Redis is erased too,
:func:`close` s the manifest. An erasure interrupted after its commit is finished by the next
``erase-user`` in the tenant: :func:`unfinished` finds committed ``user.erase`` entries whose
manifest is still there.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, col

from storage import crypto
from storage.audit_models import AuditEntry
from storage.audit_trail import AuditAction, audit
from storage.blob_backends import BlobMissing
from storage.evidence_models import EvidenceObject, FaceTemplate
from storage.evidence_store import EvidenceStore
from storage.models import AgentDevice, User, utcnow
from storage.personal_data import PersonalDataError, Subject, check_not_held, table, where
from storage.personal_registry import BLOBS, ERASED_ACTOR, HOLDINGS

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "telework-erasure/1"
ATTEMPTS = 3  # a transaction that meets rows written meanwhile (a foreign key) is tried again
KEYS_PER_QUERY = 500


@dataclass(frozen=True)
class Manifest:
    """What is left to erase outside the database after the rows are gone."""

    tenant: str
    user_id: int
    agents: tuple[str, ...]
    blobs: dict[str, tuple[str, ...]]  # BlobHolding name -> storage keys

    def encode(self) -> bytes:
        blobs = {k: list(v) for k, v in self.blobs.items()}
        data = {"format": MANIFEST_FORMAT, "tenant": self.tenant, "user_id": self.user_id,
                "agents": list(self.agents), "blobs": blobs}  # fmt: skip
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        """Pure; PersonalDataError for anything but a manifest this code wrote."""
        try:
            data = json.loads(raw)
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            blobs = {str(k): tuple(str(x) for x in v) for k, v in dict(data["blobs"]).items()}
            return cls(str(data["tenant"]), int(data["user_id"]), tuple(map(str, data["agents"])), blobs)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise PersonalDataError(f"erasure manifest: expected {MANIFEST_FORMAT} JSON, got {exc}") from None


def manifest_key(tenant: str, user_id: int) -> str:
    return f"erasure/{tenant}/{user_id}.json"


def _aad(tenant: str, user_id: int) -> bytes:
    return f"telework-erasure|{tenant}|{user_id}".encode()


def _save(store: EvidenceStore, manifest: Manifest) -> None:
    sealed = store.keyring.seal(manifest.tenant, manifest.encode(), _aad(manifest.tenant, manifest.user_id))
    store.backend.put(manifest_key(manifest.tenant, manifest.user_id), sealed)


def load_manifest(store: EvidenceStore, tenant: str, user_id: int) -> Manifest:
    """The stored manifest; PersonalDataError when it cannot be read or opened (altered, not ours)."""
    where = store.backend.where(manifest_key(tenant, user_id))
    try:
        blob = store.backend.get(manifest_key(tenant, user_id))
        key = store.keyring.key(tenant, crypto.blob_key_id(blob))
        manifest = Manifest.decode(crypto.decrypt(key, blob, _aad(tenant, user_id)))
    except (BlobMissing, crypto.CryptoError) as exc:
        raise PersonalDataError(f"erasure manifest {where}: cannot be opened ({exc})") from None
    if (manifest.tenant, manifest.user_id) != (tenant, user_id):
        raise PersonalDataError(
            f"erasure manifest {where}: names user:{manifest.user_id} of {manifest.tenant}"
        )
    return manifest


def close(store: EvidenceStore, tenant: str, user_id: int) -> None:
    """Drop the manifest (the erasure is finished everywhere, or its transaction did not commit)."""
    store.backend.delete(manifest_key(tenant, user_id))


def finished(engine: Engine, store: EvidenceStore, manifest: Manifest, actor: str, **facts: Any) -> None:
    """Record the ``user.erase.finish`` entry (what went outside the database), then drop the manifest."""
    with Session(engine) as s:
        target = f"user:{manifest.user_id}"
        audit(
            s,
            AuditAction.USER_ERASE_FINISH,
            actor=actor,
            source=None,
            target=target,
            tenant_id=manifest.tenant,
            **facts,
        )
        s.commit()
    close(store, manifest.tenant, manifest.user_id)


def unfinished(engine: Engine, store: EvidenceStore, tenant: str) -> list[int]:
    """User ids of the tenant whose erasure committed but whose manifest is still in the store."""
    with Session(engine) as s:
        targets = s.execute(
            select(col(AuditEntry.target)).where(
                col(AuditEntry.tenant_id) == tenant, col(AuditEntry.action) == str(AuditAction.USER_ERASE)
            )
        ).scalars()
        ids = sorted({int(t[5:]) for t in targets if t.startswith("user:") and t[5:].isdigit()})
    return [uid for uid in ids if store.backend.exists(manifest_key(tenant, uid))]


def revoke(engine: Engine, subject: Subject, actor: str) -> int:
    """Disable the user and revoke their agents' tokens (audited); how many agents were revoked."""
    with Session(engine) as s:
        revoked = _rowcount(
            s.execute(
                update(AgentDevice)
                .where(col(AgentDevice.user_id) == subject.user_id, col(AgentDevice.revoked_at).is_(None))
                .values(revoked_at=utcnow())
            )
        )
        s.execute(update(User).where(col(User.id) == subject.user_id).values(enabled=False))
        audit(
            s,
            AuditAction.USER_ERASE_REVOKE,
            actor=actor,
            source=None,
            target=subject.target,
            tenant_id=subject.tenant,
            agents_revoked=revoked,
        )
        s.commit()
    return revoked


def _blob_keys(s: Session, subject: Subject) -> dict[str, tuple[str, ...]]:
    keys: dict[str, tuple[str, ...]] = {}
    for blob in BLOBS:
        holding = next(h for h in HOLDINGS if h.name == blob.holding)
        column = table(holding.table).c[blob.column]
        found = s.execute(select(column).where(where(holding, subject), column.is_not(None))).scalars()
        keys[blob.name] = tuple(sorted({k for k in found if k}))
    return keys


def _apply(s: Session, subject: Subject) -> dict[str, int]:
    """Every holding, in declaration order; rows affected per holding (kept: rows left)."""
    counts: dict[str, int] = {}
    for holding in HOLDINGS:
        t, cond = table(holding.table), where(holding, subject)
        if holding.action == "delete":
            counts[holding.name] = _rowcount(s.execute(delete(t).where(cond)))
        elif holding.action == "unlink":
            counts[holding.name] = _rowcount(s.execute(update(t).where(cond).values({holding.column: None})))
        elif holding.action == "pseudonymise":
            changed = s.execute(update(t).where(cond).values({holding.column: ERASED_ACTOR}))
            counts[holding.name] = _rowcount(changed)
        else:
            counts[holding.name] = int(
                s.execute(select(func.count()).select_from(t).where(cond)).scalar_one()
            )
    return counts


@dataclass(frozen=True)
class Erased:
    """What :func:`erase_rows` did: rows per holding, and what is left to do outside the database."""

    rows: dict[str, int]
    manifest: Manifest


def erase_rows(
    engine: Engine, store: EvidenceStore, subject: Subject, actor: str, detail: dict[str, Any] | None = None
) -> Erased:
    """All of the subject's rows in one transaction with the ``user.erase`` entry; the manifest first."""
    for attempt in range(1, ATTEMPTS + 1):
        manifest: Manifest | None = None
        try:
            with Session(engine) as s:
                if s.get_bind().dialect.name == "postgresql":  # rows written meanwhile wait for us
                    s.execute(text("SELECT id FROM tw_user WHERE id = :u FOR UPDATE"), {"u": subject.user_id})
                check_not_held(s, subject)  # again: a hold may have been placed meanwhile
                manifest = Manifest(subject.tenant, subject.user_id, subject.agents, _blob_keys(s, subject))
                _save(store, manifest)  # before any write: sealing may create the tenant's data key
                counts = _apply(s, subject)
                blobs = {name: len(keys) for name, keys in manifest.blobs.items()}
                audit(s, AuditAction.USER_ERASE, actor=actor, source=None, target=subject.target,
                      tenant_id=subject.tenant, rows=counts, blobs=blobs, **(detail or {}))  # fmt: skip
                s.commit()
        except (IntegrityError, OperationalError) as exc:  # rows written meanwhile; SQLite: a newer snapshot
            if manifest is not None:
                _discard(engine, store, subject)
            if attempt == ATTEMPTS:
                raise PersonalDataError(
                    f"user {subject.login!r} of tenant {subject.tenant!r} was not erased (nothing was): "
                    f"rows about them kept being written ({type(exc.orig).__name__}); stop their agents "
                    "and run it again"
                ) from None
            log.warning("erasure met rows written meanwhile; trying again", extra={"attempt": attempt})
            continue
        except BaseException:
            if manifest is not None:
                _discard(engine, store, subject)
            raise
        log.info(
            "user erased from the database", extra={"tenant": subject.tenant, "user_id": subject.user_id}
        )
        return Erased(counts, manifest)
    raise AssertionError("unreachable")  # pragma: no cover


def _discard(engine: Engine, store: EvidenceStore, subject: Subject) -> None:
    """The transaction failed: drop its manifest, unless it committed after all (the user is gone:
    a commit whose answer was lost), when the manifest is what finishes it."""
    try:
        with Session(engine) as s:
            committed = s.get(User, subject.user_id) is None
    except SQLAlchemyError:
        return  # cannot tell: keep it (a manifest of a user who still exists is never acted on)
    if not committed:
        close(store, subject.tenant, subject.user_id)


def _referenced(engine: Engine, keys: tuple[str, ...]) -> set[str]:
    """The storage keys among ``keys`` that a row still names."""
    used: set[str] = set()
    with Session(engine) as s:
        for start in range(0, len(keys), KEYS_PER_QUERY):
            chunk = keys[start : start + KEYS_PER_QUERY]
            for column in (col(EvidenceObject.storage_key), col(FaceTemplate.image_key)):
                used.update(k for k in s.execute(select(column).where(column.in_(chunk))).scalars() if k)
    return used


def delete_blobs(engine: Engine, store: EvidenceStore, manifest: Manifest) -> dict[str, int]:
    """Delete the manifest's objects that no row references any more; objects deleted per kind."""
    deleted: dict[str, int] = {}
    for name, keys in manifest.blobs.items():
        used = _referenced(engine, keys)
        gone = [k for k in keys if k not in used]
        for key in gone:
            store.backend.delete(key)
        deleted[name] = len(gone)
    return deleted


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))
