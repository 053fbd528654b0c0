"""Face images enrolled at the PC, sent to the server: the server is the one source of the template.

The desk's registration (:meth:`agent.desk.Desk.register`) keeps the frames its gate accepted;
:func:`send_enrolled` puts each, as a JPEG, in the agent's spool with purpose ``enrollment``.
The uploader sends enrollment images before any evidence (:func:`agent.spool.upload_order`),
in paced chunks over the session (:mod:`agent.uploader`). The gateway passes each through the
console's own intake (``realtime/face_enrollment.py``: the same quality gate and ``same_person``
check, stored as one of the user's images with source ``agent``) and answers
``evidence_stored`` (the image leaves the spool; the rebuilt template comes back as a
``template`` frame, :mod:`agent.face_sync`) or ``evidence_rejected`` with the reason
(``face_rejected``: the image leaves the spool, the reason logged). Until then the local
template the desk just made is used, so the camera works offline too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import cv2

from agent.face.engine import Image
from agent.spool import ImageAdded, Kind, Purpose

log = logging.getLogger(__name__)

JPEG_QUALITY = 92  # the server re-encodes at the same quality


@runtime_checkable
class Spooling(Protocol):
    """What of the agent's session this needs (:class:`agent.client.AgentSession`)."""

    @property
    def spool(self) -> object | None: ...

    def add_evidence(
        self, data: bytes, kind: Kind, purpose: Purpose, taken_at: datetime | None = None
    ) -> ImageAdded: ...


def to_jpeg(image: Image, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` (BGR) as JPEG bytes; ValueError if OpenCV cannot encode it."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"a {image.shape} image could not be encoded as JPEG")
    return bytes(encoded.tobytes())


def send_enrolled(session: Spooling, images: Sequence[Image], taken_at: datetime | None = None) -> list[str]:
    """Spool ``images`` for the server as enrollment images; their sha256s (none without a spool)."""
    if session.spool is None:
        log.warning("no spool: the enrolled face images stay on this PC only", extra={"images": len(images)})
        return []
    shas = [session.add_evidence(to_jpeg(i), "camera", "enrollment", taken_at).sha256 for i in images]
    log.info("enrolled face images queued for the server", extra={"images": len(shas)})
    return shas
