"""Face images of a user in the console: the intake (:mod:`storage.face_intake`), delete, view.

The intake (size from the header, decode, the agent's quality gate and ``same_person`` check,
store, audit) lives below the console in :mod:`storage.face_intake`, so that an image enrolled
at the user's PC and sent by the agent (:mod:`realtime.face_enrollment`) passes the very same
code; its names are re-exported here for the console's routes. The gate is installed by the
``telework`` layer (``telework/face_gate.py``). Every registration, refusal, view and deletion
is audited; each registration or deletion announces the user's new template
(:mod:`realtime.templates_push`).
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import Engine
from sqlmodel import Session

from storage import face_images
from storage.audit_trail import AuditAction
from storage.evidence_store import EvidenceStore
from storage.face_images import FaceImage
from storage.face_intake import (
    JPEG_QUALITY,
    NO_GATE,
    THUMBNAIL_PX,
    FaceGate,
    FaceOutcome,
    GateFactory,
    Gates,
    Limits,
    Pixels,
    Vector,
    Verdict,
    check_image,
    decode,
    header_problem,
    register,
    thumbnail,
    to_jpeg,
)
from web.audit import record

__all__ = [
    "JPEG_QUALITY",
    "NO_GATE",
    "THUMBNAIL_PX",
    "FaceGate",
    "FaceOutcome",
    "GateFactory",
    "Gates",
    "Limits",
    "Pixels",
    "Vector",
    "Verdict",
    "check_image",
    "decode",
    "header_problem",
    "register",
    "remove",
    "thumbnail",
    "to_jpeg",
    "viewed",
]

log = logging.getLogger(__name__)


def remove(
    engine: Engine,
    store: EvidenceStore,
    *,
    tenant: str,
    user_id: int,
    image_id: int,
    actor: str,
    address: str,
    now: float,
) -> FaceImage | None:
    """Delete one image of the user (row, then its encrypted blob); audited. None: no such image."""
    with Session(engine) as s:
        gone = face_images.delete_image(s, tenant, user_id, image_id)
        if gone is None:
            return None
        record(
            s, AuditAction.FACE_IMAGE_DELETE, actor=actor, source=address, tenant_id=tenant,
            user_id=user_id, now=now, image=gone.id, sha256=gone.sha256,
        )  # fmt: skip
        s.commit()
    face_images.discard_blob(engine, store, tenant, gone.sha256)
    return gone


def viewed(
    engine: Engine,
    *,
    tenant: str,
    user_id: int,
    image_id: int,
    actor: str,
    address: str,
    now: float,
    kind: str,
) -> None:
    """Audit that ``actor`` was shown image ``image_id`` of the user (``kind``: thumbnail or image)."""
    with Session(engine) as s:
        record(
            s, AuditAction.FACE_IMAGE_VIEW, actor=actor, source=address, tenant_id=tenant,
            user_id=user_id, now=now, image=image_id, kind=kind,
        )  # fmt: skip
        s.commit()
