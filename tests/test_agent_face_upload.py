"""Face images enrolled at the PC reach the server over the agent's session: the console's gate and
store (source agent), the refusal's reason back to the agent, the rebuilt template pushed back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from agent.client import AgentSession
from agent.desk import Desk as AgentDesk
from agent.spool import RingEntry, Spool, upload_order
from core.settings import ServerSettings
from realtime.app import create_app, uvicorn_config
from realtime.face_enrollment import answer
from realtime.protocol import (
    EVIDENCE_MAGIC,
    EvidenceRejected,
    EvidenceStored,
    ProtocolError,
    parse_evidence_chunk,
)
from realtime.protocol.face_templates import TemplatePush
from storage import face_images
from storage.accounts import create_agent, create_tenant, create_user
from storage.audit_models import AuditEntry
from storage.face_images import FaceImage
from storage.face_intake import FaceOutcome
from storage.models import User
from telework.face_gate import gate_factory
from tests.agent_world import FAST, master_key
from tests.desk_world import USER, StillCamera, running_monitor, scene_image, watched_pipeline
from tests.faces import require_faces
from tests.waiting import wait_until

T0 = datetime.now(UTC) - timedelta(minutes=5)


@dataclass
class Desk:
    """A gateway with the face gate, and a tenant whose alice has one agent."""

    url: str
    settings: ServerSettings
    tenant: str
    agent_id: str
    token: str
    user_id: int


@asynccontextmanager
async def gateway(
    redis_url: str, database_url: str, engine: Engine, tmp_path: Path, with_gate: bool
) -> AsyncIterator[Desk]:
    tenant, agent_id = f"t{uuid.uuid4().hex[:10]}", f"pc-{uuid.uuid4().hex[:8]}"
    create_tenant(engine, tenant, "Face tenant")
    user_id = create_user(engine, tenant, "alice", "Alice")
    token = create_agent(engine, tenant, agent_id, "alice")
    settings = ServerSettings(
        data_dir=tmp_path / "server", redis_url=redis_url, database_url=database_url, gateway_port=0,
        auth_cache_s=0, master_key=master_key(), face_engine="dlib",
    )  # fmt: skip
    app = create_app(settings, gate_factory(settings) if with_gate else None)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), 15, what="uvicorn started")
    if task.done():
        task.result()
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Desk(f"ws://127.0.0.1:{port}/v1/agent", settings, tenant, agent_id, token, user_id)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@asynccontextmanager
async def agent(desk: Desk, spool: Spool) -> AsyncIterator[tuple[AgentSession, list[TemplatePush]]]:
    """A real agent session over ``spool``; the template frames it receives, in order."""
    session = AgentSession(desk.url, desk.token, FAST, name=desk.agent_id, spool=spool)
    frames: list[TemplatePush] = []
    session.on_template = frames.append
    runner = asyncio.create_task(session.run())
    try:
        yield session, frames
    finally:
        session.stop()
        await runner


def photo(name: str) -> bytes:
    return (require_faces() / name).read_bytes()


def audited(engine: Engine, tenant: str) -> list[tuple[str, str, str | None]]:
    """(action, actor, via) of the tenant's face image entries, in order."""
    with Session(engine) as s:
        rows = s.execute(
            select(AuditEntry).where(col(AuditEntry.tenant_id) == tenant).order_by(col(AuditEntry.seq))
        ).scalars()
        return [(r.action, r.actor, r.detail.get("via")) for r in rows if r.action.startswith("face")]


async def test_an_enrolled_image_is_stored_a_bad_one_refused_and_the_template_pushed_back(
    redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """obama/1 goes up and is stored (source agent) and its embedding pushed back to both of the
    user's agents; a photo of two people is refused with the gate's reason on the agent; each
    leaves the spool, audited."""
    good, bad = photo("obama/1.jpg"), photo("groups/two_people.jpg")
    async with gateway(redis_url, database_url, engine, tmp_path, True) as desk:
        token = create_agent(engine, desk.tenant, f"pc-{uuid.uuid4().hex[:8]}", "alice")
        laptop = Desk(desk.url, desk.settings, desk.tenant, "laptop", token, desk.user_id)
        spool, other_spool = Spool.in_dir(tmp_path / "agent"), Spool.in_dir(tmp_path / "laptop")
        async with agent(desk, spool) as (session, frames), agent(laptop, other_spool) as (_, others):
            await wait_until(lambda: bool(frames) and bool(others), 15, what="the welcomes' templates")
            assert frames[0].templates == others[0].templates == []  # no image on the server yet
            good_sha = session.add_evidence(good, "camera", "enrollment", T0).sha256
            await wait_until(lambda: len(frames) >= 2, 60, what="the rebuilt template pushed")
            await wait_until(lambda: len(others) >= 2, 15, what="the template pushed to the laptop")
            assert others[1] == frames[1]
            [stored] = face_images.images(engine, desk.tenant, desk.user_id)
            assert (stored.source, stored.engine, stored.user_id) == ("agent", "dlib", desk.user_id)
            [body] = frames[1].templates
            assert (body.engine, len(body.embeddings)) == ("dlib", 1)
            assert frames[1].user_id == desk.user_id
            bad_sha = session.add_evidence(bad, "camera", "enrollment", T0).sha256
            uploader = session.uploader
            assert uploader is not None
            await wait_until(lambda: bool(uploader.rejected), 60, what="the refusal")
            [refusal] = uploader.rejected
            assert (refusal.sha256, refusal.code, refusal.retry) == (bad_sha, "face_rejected", False)
            assert refusal.message == f"enrollment {bad_sha}: face image refused: 2 faces, need exactly 1"
            await wait_until(lambda: spool.image_count() == 0, 15, what="both images leave the spool")
        assert session.images_stored == 1 and good_sha != bad_sha
        assert len(face_images.images(engine, desk.tenant, desk.user_id)) == 1
        other_spool.close()
        actor = f"agent:{desk.agent_id}"
        assert audited(engine, desk.tenant) == [
            ("face.image_add", actor, "agent"),
            ("face.image_reject", actor, "agent"),
        ]
        spool.close()


async def test_without_a_face_engine_the_image_waits_in_the_spool(
    redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """A gateway without a gate answers face_unavailable with retry: nothing judged, stored or audited,
    the image stays in the agent's spool for a later try."""
    async with gateway(redis_url, database_url, engine, tmp_path, False) as desk:
        spool = Spool.in_dir(tmp_path / "agent")
        sha = spool.add_image(photo("obama/1.jpg"), "camera", "enrollment", T0).sha256
        async with agent(desk, spool) as (session, _):
            await wait_until(lambda: session.uploader is not None and bool(session.uploader.rejected), 30)
            assert session.uploader is not None
            [refusal] = session.uploader.rejected
            assert (refusal.sha256, refusal.code, refusal.retry) == (sha, "face_unavailable", True)
        assert [e.sha256 for e in spool.ring_entries()] == [sha]
        assert face_images.images(engine, desk.tenant, desk.user_id) == []
        assert audited(engine, desk.tenant) == []
        spool.close()


async def test_a_device_without_a_user_cannot_enrol(
    redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """An agent whose device has no user is refused (face_rejected, saying so), nothing stored."""
    async with gateway(redis_url, database_url, engine, tmp_path, True) as desk:
        token = create_agent(engine, desk.tenant, f"pc-{uuid.uuid4().hex[:8]}", None)
        spool = Spool.in_dir(tmp_path / "agent")
        sha = spool.add_image(photo("obama/1.jpg"), "camera", "enrollment", T0).sha256
        orphan = Desk(desk.url, desk.settings, desk.tenant, "orphan", token, desk.user_id)
        async with agent(orphan, spool) as (session, _):
            await wait_until(lambda: session.uploader is not None and bool(session.uploader.rejected), 30)
            assert session.uploader is not None
            [refusal] = session.uploader.rejected
        assert (refusal.code, refusal.retry) == ("face_rejected", False)
        assert refusal.message == (
            f"enrollment {sha}: this device has no user: assign it to its user in the console first"
        )
        with Session(engine) as s:
            users = s.execute(select(col(User.id)).where(col(User.tenant_id) == desk.tenant)).scalars()
            assert all(face_images.images(engine, desk.tenant, u) == [] for u in users)
        spool.close()


async def test_a_registration_at_the_desk_reaches_the_server(
    redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """The local page's registration (Desk.register) saves the local template and sends the accepted
    frame to the server, which stores it (source agent) and pushes the template with its embedding."""
    async with gateway(redis_url, database_url, engine, tmp_path, True) as desk:
        spool = Spool.in_dir(tmp_path / "agent")
        async with agent(desk, spool) as (session, frames):
            await wait_until(lambda: bool(frames), 15, what="the welcome's template")
            pipeline = watched_pipeline()
            local = AgentDesk(session, pipeline, template_path=tmp_path / "me.json", verify_s=2.0)
            async with running_monitor(local, StillCamera(scene_image(USER))):
                await wait_until(lambda: pipeline.latest is not None, 10, what="a frame")
                assert await local.register(count=1) == {"ok": True, "count": 1}
            await wait_until(lambda: len(frames) >= 2, 60, what="the template with the desk's image")
            [stored] = face_images.images(engine, desk.tenant, desk.user_id)
            assert (stored.source, stored.width, stored.height) == ("agent", 640, 480)
            assert [len(b.embeddings) for b in frames[-1].templates] == [1]
            assert (tmp_path / "me.json").is_file()
        spool.close()


@given(st.text(max_size=20))
def test_a_chunk_header_takes_only_known_purposes(purpose: str) -> None:
    """The wire header parses periodic, incident and enrollment; any other purpose is refused naming it."""
    fields = {"type": "evidence_chunk", "sha256": "c" * 64, "kind": "camera", "purpose": purpose}
    head = json.dumps({**fields, "taken_at": T0.isoformat(), "size": 3, "offset": 0}).encode()
    raw = EVIDENCE_MAGIC + len(head).to_bytes(4, "big") + head + b"abc"
    if purpose in ("periodic", "incident", "enrollment"):
        assert parse_evidence_chunk(raw)[0].purpose == purpose
    else:
        with pytest.raises(ProtocolError) as caught:
            parse_evidence_chunk(raw)
        assert caught.value.field is not None and "purpose" in caught.value.field


def test_enrollment_images_go_up_first() -> None:
    """Upload order: enrollment images (the user waits), then incident evidence, then periodic."""
    entries = [RingEntry(1, "p", "periodic"), RingEntry(2, "i", "incident"), RingEntry(3, "e", "enrollment")]
    assert upload_order(entries) == ["e", "i", "p"]
    assert upload_order(entries, frozenset({"e"})) == ["i", "p"]


def test_answers_name_the_image_and_the_reason() -> None:
    """A stored image is evidence_stored; a refusal is final (no retry) and carries the gate's reason."""
    image = FaceImage(1, 2, "a" * 64, "agent", 4, 4, "dlib", "m1", T0)
    assert answer("a" * 64, FaceOutcome("x", image, None)) == EvidenceStored(sha256="a" * 64)
    assert answer("b" * 64, FaceOutcome("x", None, "no face found")) == EvidenceRejected(
        sha256="b" * 64,
        code="face_rejected",
        message=f"enrollment {'b' * 64}: face image refused: no face found",
    )
