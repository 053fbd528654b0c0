"""Encrypted evidence objects, addressed by the sha256 of their plaintext, per tenant.

``put`` encrypts under the tenant's data key (AES-256-GCM, associated data = tenant + sha256) and
writes ciphertext only; ``get`` decrypts and checks the sha256. The same image stored twice by
a tenant is one object. :func:`save_evidence` also records the ``evidence_object`` row.
The backend also keeps the audit chain's head witness (``audit/head``, :mod:`storage.audit_witness`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from core.errors import OperatorError

# evidence_object has a foreign key to incident: that table must be in the metadata when a row is
# flushed, also in a process (the gateway) that imports nothing else of storage.activity.
from storage import activity as _activity  # noqa: F401
from storage import audit_witness, crypto
from storage.audit_witness import ChainGuard
from storage.blob_backends import Backend, BlobMissing, make_backend
from storage.evidence_models import EVIDENCE_KINDS, EvidenceObject
from storage.keyring import Keyring, load_master_key
from storage.models import utcnow

if TYPE_CHECKING:
    from core.settings import ServerSettings

log = logging.getLogger(__name__)

SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class EvidenceError(OperatorError, ValueError):
    """An evidence object is missing, altered, or cannot be opened with the tenant's key."""


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int  # plaintext bytes
    key_id: str  # the data key that sealed it
    storage_key: str  # where the ciphertext lives in the backend


def check_sha(sha256: str) -> str:
    if not SHA_RE.match(sha256):
        raise EvidenceError(f"evidence id: expected 64 lowercase hex digits (sha256), got {sha256!r}")
    return sha256


def object_key(tenant: str, sha256: str) -> str:
    return f"evidence/{tenant}/{sha256[:2]}/{check_sha(sha256)}"


class EvidenceStore:
    """Put, get, check and delete a tenant's encrypted objects."""

    def __init__(self, backend: Backend, keyring: Keyring) -> None:
        self.backend = backend
        self.keyring = keyring

    def put(self, tenant: str, plaintext: bytes) -> Stored:
        """Encrypt and store (replacing any blob of the same content); the blob names its key."""
        sha = crypto.sha256_hex(plaintext)
        key = object_key(tenant, sha)
        blob = self.keyring.seal(tenant, plaintext, crypto.evidence_aad(tenant, sha))
        self.backend.put(key, blob)
        log.debug("evidence stored", extra={"tenant": tenant, "sha256": sha, "bytes": len(plaintext)})
        return Stored(sha, len(plaintext), crypto.blob_key_id(blob), key)

    def get(self, tenant: str, sha256: str) -> bytes:
        """The plaintext; EvidenceError naming the object if it is missing or altered."""
        key = object_key(tenant, sha256)
        try:
            blob = self.backend.get(key)
        except BlobMissing:
            where = self.backend.where(key)
            raise EvidenceError(f"evidence {sha256}: missing from storage ({where})") from None
        try:
            data_key = self.keyring.key(tenant, crypto.blob_key_id(blob))
        except crypto.CryptoError as exc:
            raise EvidenceError(f"evidence {sha256}: cannot be decrypted ({exc})") from None
        try:
            plaintext = crypto.decrypt(data_key, blob, crypto.evidence_aad(tenant, sha256))
        except crypto.CryptoError:
            raise EvidenceError(
                f"evidence {sha256}: content hash mismatch (the ciphertext fails authentication: "
                "altered, or another object's)"
            ) from None
        computed = crypto.sha256_hex(plaintext)
        if computed != sha256:
            raise EvidenceError(f"evidence {sha256}: content hash mismatch (computed {computed})")
        return plaintext

    def check(self, tenant: str, sha256: str) -> str | None:
        """None if the object decrypts to its sha256, else the problem, naming the object."""
        try:
            self.get(tenant, sha256)
        except EvidenceError as exc:
            return str(exc)
        return None

    def exists(self, tenant: str, sha256: str) -> bool:
        return self.backend.exists(object_key(tenant, sha256))

    def delete(self, tenant: str, sha256: str) -> None:
        """Remove the object (no error if it is already gone)."""
        self.backend.delete(object_key(tenant, sha256))

    def where(self, tenant: str, sha256: str) -> str:
        """Path or URL of the stored ciphertext (for operators and tests)."""
        return self.backend.where(object_key(tenant, sha256))

    def chain_guard(self) -> ChainGuard:
        """The audit chain's key (derived from this store's master key) and its witness (here)."""
        return ChainGuard(self.keyring.audit_chain_key, self.backend)


def open_store(settings: ServerSettings, engine: Engine) -> EvidenceStore:
    """The evidence store the settings describe (backend + master key); ConfigError if unusable.

    It also protects ``engine``'s audit appends (:func:`storage.audit_witness.protect`).
    """
    store = EvidenceStore(make_backend(settings), Keyring(load_master_key(settings), engine))
    audit_witness.protect(engine, store.chain_guard())
    return store


def save_evidence(
    engine: Engine,
    store: EvidenceStore,
    tenant: str,
    data: bytes,
    *,
    kind: str,
    taken_at: datetime,
    content_type: str = "image/jpeg",
    agent_id: str | None = None,
    user_id: int | None = None,
    incident_id: int | None = None,
) -> int:
    """Encrypt and store an evidence image and record its ``evidence_object`` row; returns the row id.

    The same content sent twice by a tenant (an agent's retry) is one object: the first row stays.
    """
    if kind not in EVIDENCE_KINDS:
        raise EvidenceError(f"evidence kind: expected one of {', '.join(EVIDENCE_KINDS)}, got {kind!r}")
    if taken_at.tzinfo is None:
        raise EvidenceError(f"evidence taken_at: expected an aware timestamp, got {taken_at.isoformat()}")
    sha = crypto.sha256_hex(data)
    existing = _row_id(engine, tenant, sha)
    if existing is not None:
        return existing
    stored = store.put(tenant, data)
    row = EvidenceObject(
        tenant_id=tenant,
        sha256=sha,
        kind=kind,
        content_type=content_type,
        size=stored.size,
        storage_key=stored.storage_key,
        key_id=stored.key_id,
        agent_id=agent_id,
        user_id=user_id,
        incident_id=incident_id,
        taken_at=taken_at,
        created_at=utcnow(),
    )
    with Session(engine) as s:
        s.add(row)
        try:
            s.commit()
        except IntegrityError:
            s.rollback()
            winner = _row_id(engine, tenant, sha)
            if winner is None:
                raise
            return winner
        if row.id is None:
            raise EvidenceError(f"evidence {sha}: the database gave the row no id")
        return row.id


def _row_id(engine: Engine, tenant: str, sha256: str) -> int | None:
    with Session(engine) as s:
        found: int | None = s.execute(
            select(col(EvidenceObject.id)).where(
                col(EvidenceObject.tenant_id) == tenant, col(EvidenceObject.sha256) == sha256
            )
        ).scalar_one_or_none()
    return found
