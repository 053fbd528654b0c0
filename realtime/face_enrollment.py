"""Face images enrolled at the user's PC, received by the gateway: the same gate and store as the console.

The agent sends an enrolled image (a JPEG) as evidence chunks with purpose ``enrollment``
(:mod:`realtime.evidence_upload`); once complete and verified, :class:`FaceEnrollment` takes it
instead of the evidence sink. The device's user (``agent_device.user_id``, read at each image:
a reassigned device enrols its new user) gets the image through :func:`storage.face_intake.register`,
the very intake of the console's uploads: header limits, the agent's quality gate and
``same_person`` check, at most ``face_images_per_user`` images, stored encrypted with source
``agent``, audited (``face.image_add`` or ``face.image_reject`` with ``via`` ``agent``, the actor
``agent:<agent id>``). An accepted image is answered ``evidence_stored`` and announced on Redis
(:func:`realtime.templates_push.announce`), so every gateway pushes the rebuilt template to each
open session of the user's agents, this one included. A refused image is answered
``evidence_rejected`` with code ``face_rejected`` and the gate's reason (final: the agent drops
it). Without a face engine, or without the encrypted store, the answer is ``face_unavailable``
or ``store_unavailable`` with ``retry`` (nothing is judged; the agent keeps the image).

The gate (dlib) is loaded in a thread at the first enrollment image, not at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from core.config import ConfigError
from core.settings import ServerSettings
from realtime.protocol import EvidenceChunk, EvidenceRejected, EvidenceStored
from storage.evidence_store import EvidenceError, EvidenceStore, open_store
from storage.face_intake import FaceOutcome, GateFactory, Gates, Limits, register
from storage.models import AgentDevice

log = logging.getLogger(__name__)

Announce = Callable[[str, int], Awaitable[object]]  # (tenant, user id): the user's template changed


def agent_actor(agent_id: str) -> str:
    """Who an image enrolled through an agent is recorded as."""
    return f"agent:{agent_id}"


def answer(sha256: str, outcome: FaceOutcome) -> EvidenceStored | EvidenceRejected:
    """Pure: the reply to the agent for the intake's ``outcome``."""
    if outcome.image is not None:
        return EvidenceStored(sha256=sha256)
    message = f"enrollment {sha256}: face image refused: {outcome.reason}"
    return EvidenceRejected(sha256=sha256, code="face_rejected", message=message)


def unavailable(sha256: str, code: str, why: str) -> EvidenceRejected:
    """Pure: the reply when the image cannot be judged now (retry later; nothing is lost)."""
    return EvidenceRejected(sha256=sha256, code=code, message=f"enrollment {sha256}: {why}", retry=True)


class FaceEnrollment:
    """The gateway's intake of enrollment images: device -> user, gate, store, announce."""

    def __init__(
        self,
        settings: ServerSettings,
        engine: Engine,
        factory: GateFactory | None,
        announce: Announce,
        store: Callable[[], EvidenceStore] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.gates = Gates(factory)
        self.announce = announce
        self._open_store = store or (lambda: open_store(settings, engine))
        self._store: EvidenceStore | None = None
        self.limits = Limits(
            settings.face_upload_max_bytes, settings.face_max_side, settings.face_images_per_user
        )

    def store(self) -> EvidenceStore:
        """The encrypted store, opened at first use; ConfigError (tried again next time) without a key."""
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def user_of(self, tenant: str, agent_id: str) -> int | None:
        """The user the device belongs to now (None: no user, or not this tenant's device)."""
        with Session(self.engine) as s:
            device = s.get(AgentDevice, agent_id)
        return None if device is None or device.tenant_id != tenant else device.user_id

    def _register(self, tenant: str, agent_id: str, user_id: int, data: bytes) -> FaceOutcome:
        gate = self.gates.get()
        if gate is None:
            return FaceOutcome("", None, None)  # no verdict: the caller answers face_unavailable
        return register(
            self.engine, self.store(), gate, self.limits, tenant=tenant, user_id=user_id,
            name=f"enrolled on {agent_id}", data=data, source="agent", actor=agent_actor(agent_id),
            address=f"agent:{agent_id}", now=time.time(),
        )  # fmt: skip

    async def take(
        self, tenant: str, agent_id: str, header: EvidenceChunk, data: bytes
    ) -> EvidenceStored | EvidenceRejected:
        """Judge and store one complete, verified enrollment image; the reply to the agent."""
        sha = header.sha256
        extra = {"tenant": tenant, "agent_id": agent_id, "sha256": sha}
        try:
            user_id = await asyncio.to_thread(self.user_of, tenant, agent_id)
            if user_id is None:
                why = "this device has no user: assign it to its user in the console first"
                log.info("enrollment image refused", extra={**extra, "why": why})
                return EvidenceRejected(sha256=sha, code="face_rejected", message=f"enrollment {sha}: {why}")
            outcome = await asyncio.to_thread(self._register, tenant, agent_id, user_id, data)
        except (ConfigError, EvidenceError, SQLAlchemyError, OSError) as exc:
            log.error("enrollment image not stored", extra={**extra, "error": f"{type(exc).__name__}: {exc}"})
            return unavailable(sha, "store_unavailable", f"store unavailable: {exc}")
        if outcome.image is None and outcome.reason is None:
            return unavailable(
                sha, "face_unavailable", "this server has no face engine (see TELEWORK_FACE_ENGINE)"
            )
        if outcome.image is not None:
            await self.announce(tenant, user_id)  # a lost announcement: the next welcome carries it
            log.info(
                "enrollment image registered", extra={**extra, "user": user_id, "image": outcome.image.id}
            )
        else:
            log.info("enrollment image refused", extra={**extra, "user": user_id, "why": outcome.reason})
        return answer(sha, outcome)
