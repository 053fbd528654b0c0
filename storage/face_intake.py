"""Face image intake, for the console and the gateway alike: size from the header, decode, the gate, store.

An image (uploaded in the console, :mod:`web.faces`, or enrolled at the user's PC and sent by
the agent over its session, :mod:`realtime.face_enrollment`) is refused, with one reason, before
anything is kept: over ``face_upload_max_bytes``; not an image (its header names no format
OpenCV reads); larger than ``face_max_side`` pixels a side (read from the header, before a pixel
is decoded); then the agent's own quality gate (:class:`FaceGate`: exactly one face, large,
bright and sharp enough) and the agent's ``same_person`` check against the user's other images.
The face engine and the agent's gate live in the agent layer, which neither the console nor the
gateway may import: the ``telework`` layer passes in an implementation (``telework/face_gate.py``).
An accepted image is re-encoded as JPEG (no metadata kept) and stored encrypted
(:mod:`storage.face_images`) with its source (``console`` or ``agent``). Every registration and
refusal is audited (``via`` names the source). One definition: both paths call :func:`register`.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import cv2
import imagesize
import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage import crypto, face_images, hash_chain_store
from storage.audit_trail import AuditAction, detail
from storage.evidence_store import EvidenceStore
from storage.face_images import FaceImage, FaceImageError, NewImage

log = logging.getLogger(__name__)

NO_GATE = "cannot be checked: this server has no face engine (see TELEWORK_FACE_ENGINE)"
JPEG_QUALITY = 92  # the stored copy
THUMBNAIL_PX = 160  # a thumbnail's longer side
Pixels = npt.NDArray[np.uint8]
Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Verdict:
    """The agent's gate on one image: its reason when refused, else the face's embedding."""

    reason: str | None
    embedding: Vector | None = None


class FaceGate(Protocol):
    """The agent's enrollment gate, as the console uses it (``telework/face_gate.py``)."""

    engine: str
    model_version: str

    def assess(self, image: Pixels) -> Verdict:
        """The quality gate on one BGR image (faces found at full resolution)."""
        ...

    def other_person(self, embedding: Vector, others: Sequence[Vector]) -> str | None:
        """The reason ``embedding`` is not the person of ``others`` (None: it is, or no others)."""
        ...


GateFactory = Callable[[], FaceGate]


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_side: int
    per_user: int


@dataclass(frozen=True)
class FaceOutcome:
    """One uploaded file: the image stored, or the reason it was refused (nothing stored)."""

    name: str
    image: FaceImage | None
    reason: str | None


class Gates:
    """The installed gate factory, and the gate it made (made once, on first use: loading a face
    engine takes a while)."""

    def __init__(self, factory: GateFactory | None) -> None:
        self.factory = factory
        self._gate: FaceGate | None = None

    def get(self) -> FaceGate | None:
        """The gate; None when none is installed or its engine cannot be loaded (logged; tried again
        next time)."""
        if self._gate is None and self.factory is not None:
            try:
                self._gate = self.factory()
            except Exception as exc:  # the engine's models missing or broken: say so, refuse the file
                log.error("face engine cannot be loaded", extra={"error": str(exc)})
        return self._gate


def header_problem(data: bytes, limits: Limits) -> str | None:
    """Pure: why ``data`` is refused before decoding (too many bytes, not an image, too many
    pixels a side, read from its header), or None."""
    if len(data) > limits.max_bytes:
        return f"file too large: {len(data)} bytes, need at most {limits.max_bytes}"
    if not data:
        return "empty file: expected a JPEG, PNG, WebP or BMP image"
    try:
        width, height = imagesize.get(io.BytesIO(data))
    except (ValueError, OSError, IndexError, struct.error):  # a header that lies about its layout
        width, height = -1, -1
    if width <= 0 or height <= 0:
        return "not an image: expected a JPEG, PNG, WebP or BMP image"
    if max(width, height) > limits.max_side:
        return f"image too large: {width}x{height} px, need at most {limits.max_side} px a side"
    return None


def decode(data: bytes) -> Pixels | str:
    """The BGR pixels of ``data``, or the reason it cannot be read."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return "not an image OpenCV can read: expected a JPEG, PNG, WebP or BMP image"
    return np.asarray(image, dtype=np.uint8)


def to_jpeg(image: Pixels, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` as a JPEG (nothing of the uploaded file's metadata survives)."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FaceImageError("the image could not be encoded as JPEG")
    return bytes(encoded.tobytes())


def thumbnail(jpeg: bytes, size: int = THUMBNAIL_PX) -> bytes:
    """A JPEG at most ``size`` pixels on its longer side, made from the stored image (never kept)."""
    image = decode(jpeg)
    if isinstance(image, str):
        raise FaceImageError(f"stored image unreadable: {image}")
    height, width = image.shape[:2]
    scale = min(1.0, size / max(height, width))
    small = cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    return to_jpeg(np.asarray(small, dtype=np.uint8), quality=85)


def check_image(
    data: bytes, limits: Limits, gate: FaceGate | None, others: Sequence[Vector]
) -> tuple[NewImage | None, str | None]:
    """Pure but for the gate: the image to store, or the reason it is refused."""
    problem = header_problem(data, limits)
    if problem is not None:
        return None, problem
    pixels = decode(data)
    if isinstance(pixels, str):
        return None, pixels
    if gate is None:
        return None, NO_GATE
    verdict = gate.assess(pixels)
    if verdict.reason is not None or verdict.embedding is None:
        return None, verdict.reason or "no face found"
    far = gate.other_person(verdict.embedding, others)
    if far is not None:
        return None, far
    height, width = pixels.shape[:2]
    new = NewImage(to_jpeg(pixels), width, height, verdict.embedding, gate.engine, gate.model_version)
    return new, None


def register(
    engine: Engine,
    store: EvidenceStore,
    gate: FaceGate | None,
    limits: Limits,
    *,
    tenant: str,
    user_id: int,
    name: str,
    data: bytes,
    source: str,
    actor: str,
    address: str,
    now: float,
) -> FaceOutcome:
    """Gate ``data`` and, if it passes, store it for the user; audited either way."""
    others = (
        []
        if gate is None
        else face_images.embeddings(engine, store.keyring, tenant, user_id, gate.engine, gate.model_version)
    )
    count = len(face_images.images(engine, tenant, user_id))
    new: NewImage | None = None
    reason: str | None = f"too many images: the user has {count}, at most {limits.per_user}"
    if count < limits.per_user:
        new, reason = check_image(data, limits, gate, [v for _, v in others])
    shown = name[:200]
    if new is None:
        with Session(engine) as s:
            audit(
                s, AuditAction.FACE_IMAGE_REJECT, actor=actor, source=address, tenant_id=tenant,
                user_id=user_id, now=now, file=shown, bytes=len(data), reason=reason, via=source,
            )  # fmt: skip
            s.commit()
        log.info("face image refused", extra={"tenant": tenant, "user": user_id, "reason": reason})
        return FaceOutcome(shown, None, reason)
    new = NewImage(new.jpeg, new.width, new.height, new.embedding, new.engine, new.model_version, source)
    try:
        with Session(engine) as s:
            stored = face_images.add_image(s, store, tenant, user_id, new, datetime.fromtimestamp(now, UTC))
            audit(
                s, AuditAction.FACE_IMAGE_ADD, actor=actor, source=address, tenant_id=tenant,
                user_id=user_id, now=now, image=stored.id, sha256=stored.sha256, file=shown, via=source,
                width=new.width, height=new.height,
            )  # fmt: skip
            s.commit()
    except FaceImageError as exc:
        return FaceOutcome(shown, None, str(exc))
    except Exception:
        face_images.discard_blob(engine, store, tenant, crypto.sha256_hex(new.jpeg))
        raise
    log.info("face image registered", extra={"tenant": tenant, "user": user_id, "image": stored.id})
    return FaceOutcome(shown, stored, None)


def audit(
    s: Session,
    action: AuditAction,
    *,
    actor: str,
    source: str,
    tenant_id: str,
    user_id: int,
    now: float,
    **facts: Any,
) -> None:
    """Append the entry of ``action`` about user ``user_id`` in ``s``'s transaction (the caller commits)."""
    hash_chain_store.append(
        s,
        actor=actor,
        action=str(action),
        target=f"user:{user_id}",
        tenant_id=tenant_id,
        detail=detail(source, **facts),
        at=datetime.fromtimestamp(now, UTC),
    )
