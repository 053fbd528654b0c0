"""A user's registered face images on the server, and the face template built from them.

One ``face_template`` row per registered image: its embedding, encrypted under the tenant's data
key (AES-256-GCM, bound to the tenant, the user and the image's sha256, so a row moved to another
user fails to open), and the image itself (a JPEG) encrypted in the evidence store under
``image_key``. The rows of a user for one engine and model version are the user's template
(:func:`user_template`): the server is the one source of it. Nothing here is a plain file.
Export and erasure find the rows and blobs through ``storage/personal_registry.py``
(``face_template`` and ``face_images``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage import crypto
from storage.evidence_models import EvidenceObject, FaceTemplate
from storage.evidence_store import EvidenceError, EvidenceStore
from storage.keyring import Keyring

log = logging.getLogger(__name__)

SOURCES = ("console", "agent")
EMBEDDING_DTYPE = "<f4"  # little-endian float32, the engines' unit vectors


class FaceImageError(ValueError):
    """A face image cannot be stored or read; the message says what is wrong."""


@dataclass(frozen=True)
class FaceImage:
    """One registered face image, as the console lists it."""

    id: int
    user_id: int
    sha256: str
    source: str
    width: int | None
    height: int | None
    engine: str
    model_version: str
    created_at: datetime


@dataclass(frozen=True)
class NewImage:
    """What is stored for an image that passed the gate."""

    jpeg: bytes  # the image, re-encoded (no metadata kept)
    width: int
    height: int
    embedding: npt.NDArray[np.float32]
    engine: str
    model_version: str
    source: str = "console"


def embedding_aad(tenant: str, user_id: int, sha256: str) -> bytes:
    """Associated data of an image's encrypted embedding: its tenant, user and image hash."""
    return f"telework/face-embedding/v1/{tenant}/{user_id}/{sha256}".encode()


def encode_embedding(embedding: npt.NDArray[np.float32]) -> bytes:
    """Pure: the embedding's bytes (little-endian float32)."""
    return np.asarray(embedding, dtype=EMBEDDING_DTYPE).reshape(-1).tobytes()


def decode_embedding(data: bytes) -> npt.NDArray[np.float32]:
    """Pure: :func:`encode_embedding` reversed; FaceImageError for a length that is not float32s."""
    if not data or len(data) % 4:
        raise FaceImageError(f"embedding: expected a multiple of 4 bytes, got {len(data)}")
    return np.frombuffer(data, dtype=EMBEDDING_DTYPE).astype(np.float32)


def _view(row: FaceTemplate) -> FaceImage:
    assert row.id is not None
    return FaceImage(
        id=row.id,
        user_id=row.user_id,
        sha256=row.image_sha256 or "",
        source=row.source,
        width=row.width,
        height=row.height,
        engine=row.engine,
        model_version=row.model_version,
        created_at=row.created_at,
    )


def add_image(
    s: Session, store: EvidenceStore, tenant: str, user_id: int, new: NewImage, now: datetime
) -> FaceImage:
    """Encrypt and store ``new`` for the user in ``s``'s transaction (the caller commits and, if the
    commit fails, calls :func:`discard_blob`). FaceImageError if the same image is already theirs."""
    if new.source not in SOURCES:
        raise FaceImageError(f"source: expected one of {', '.join(SOURCES)}, got {new.source!r}")
    sha = crypto.sha256_hex(new.jpeg)
    taken = s.execute(
        select(col(FaceTemplate.id)).where(
            col(FaceTemplate.tenant_id) == tenant,
            col(FaceTemplate.user_id) == user_id,
            col(FaceTemplate.image_sha256) == sha,
        )
    ).first()
    if taken is not None:
        raise FaceImageError("this image is already registered for the user")
    stored = store.put(tenant, new.jpeg)
    sealed = store.keyring.seal(tenant, encode_embedding(new.embedding), embedding_aad(tenant, user_id, sha))
    row = FaceTemplate(
        tenant_id=tenant,
        user_id=user_id,
        blob=sealed,
        key_id=crypto.blob_key_id(sealed),
        engine=new.engine,
        model_version=new.model_version,
        image_sha256=sha,
        image_key=stored.storage_key,
        created_at=now,
        source=new.source,
        width=new.width,
        height=new.height,
    )
    s.add(row)
    s.flush()
    return _view(row)


def images(engine: Engine, tenant: str, user_id: int) -> list[FaceImage]:
    """The user's registered images, oldest first."""
    with Session(engine) as s:
        rows = s.execute(
            select(FaceTemplate)
            .where(col(FaceTemplate.tenant_id) == tenant, col(FaceTemplate.user_id) == user_id)
            .order_by(col(FaceTemplate.created_at), col(FaceTemplate.id))
        ).scalars()
        return [_view(r) for r in rows]


def image(engine: Engine, tenant: str, user_id: int, image_id: int) -> FaceImage | None:
    """One image of the user, or None (not theirs, or no such image: the same answer)."""
    with Session(engine) as s:
        row = s.get(FaceTemplate, image_id)
        if row is None or row.tenant_id != tenant or row.user_id != user_id:
            return None
        return _view(row)


def image_bytes(store: EvidenceStore, tenant: str, found: FaceImage) -> bytes:
    """The decrypted JPEG of ``found``; FaceImageError if it is missing or altered."""
    try:
        return store.get(tenant, found.sha256)
    except EvidenceError as exc:
        raise FaceImageError(str(exc)) from None


def embeddings(
    engine: Engine, keyring: Keyring, tenant: str, user_id: int, engine_name: str, model_version: str
) -> list[tuple[int, npt.NDArray[np.float32]]]:
    """(image id, embedding) of the user's images made by ``engine_name`` ``model_version``."""
    with Session(engine) as s:
        rows = list(
            s.execute(
                select(FaceTemplate)
                .where(
                    col(FaceTemplate.tenant_id) == tenant,
                    col(FaceTemplate.user_id) == user_id,
                    col(FaceTemplate.engine) == engine_name,
                    col(FaceTemplate.model_version) == model_version,
                )
                .order_by(col(FaceTemplate.created_at), col(FaceTemplate.id))
            ).scalars()
        )
    out: list[tuple[int, npt.NDArray[np.float32]]] = []
    for row in rows:
        assert row.id is not None
        aad = embedding_aad(tenant, user_id, row.image_sha256 or "")
        try:
            out.append((row.id, decode_embedding(keyring.open(tenant, row.blob, aad))))
        except (crypto.CryptoError, FaceImageError) as exc:  # one bad row does not hide the others
            log.error(
                "face embedding unreadable", extra={"tenant": tenant, "image": row.id, "error": str(exc)}
            )
    return out


def delete_image(s: Session, tenant: str, user_id: int, image_id: int) -> FaceImage | None:
    """Delete the image's row in ``s``'s transaction; after the commit call :func:`discard_blob`.
    None when the user has no such image."""
    row = s.get(FaceTemplate, image_id)
    if row is None or row.tenant_id != tenant or row.user_id != user_id:
        return None
    gone = _view(row)
    s.delete(row)
    s.flush()
    return gone


def discard_blob(engine: Engine, store: EvidenceStore, tenant: str, sha256: str) -> bool:
    """Delete the encrypted image ``sha256`` unless a row (a face image or evidence) still names it."""
    key = store.where(tenant, sha256)
    with Session(engine) as s:
        faces = s.execute(
            select(col(FaceTemplate.id)).where(
                col(FaceTemplate.tenant_id) == tenant, col(FaceTemplate.image_sha256) == sha256
            )
        ).first()
        evidence = s.execute(
            select(col(EvidenceObject.id)).where(
                col(EvidenceObject.tenant_id) == tenant, col(EvidenceObject.sha256) == sha256
            )
        ).first()
    if faces is not None or evidence is not None:
        return False
    store.delete(tenant, sha256)
    log.info("face image blob deleted", extra={"tenant": tenant, "where": key})
    return True


def template_users(engine: Engine, tenant: str) -> list[int]:
    """The users of ``tenant`` who have registered images."""
    with Session(engine) as s:
        rows: Sequence[int] = (
            s.execute(
                select(col(FaceTemplate.user_id))
                .where(col(FaceTemplate.tenant_id) == tenant)
                .distinct()
                .order_by(col(FaceTemplate.user_id))
            )
            .scalars()
            .all()
        )
    return list(rows)
