"""Evidence upload: chunks -> gateway -> encrypted store by sha256; exact rejections; kept until confirmed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
import websockets
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.applications import Starlette

from agent.spool import Spool
from core.settings import ServerSettings
from realtime.evidence_upload import Complete, EvidenceUploads, FolderSink, Partial, accept_chunk, admits
from realtime.gateway import Gateway
from realtime.protocol import (
    PROTOCOL_VERSION,
    EvidenceChunk,
    EvidenceRejected,
    Heartbeat,
    Hello,
    ProtocolError,
    encode,
    encode_evidence_chunk,
    parse_evidence_chunk,
)
from storage.accounts import create_agent
from storage.db import make_engine
from storage.evidence_models import EvidenceObject
from storage.evidence_store import open_store
from tests.agent_world import FAST, World, world
from tests.conftest import ROOT
from tests.faces import FACES
from tests.waiting import wait_until

# a recent morning: the gateway accepts capture times within 30 days of its clock
T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=9, minute=30, second=0, microsecond=0)


def faces() -> list[bytes]:
    """Real JPEG photos (../shared/faces) as evidence images."""
    paths = sorted(p for p in FACES.rglob("*.jp*g"))[:3]
    if len(paths) < 3:
        pytest.skip(f"expected >= 3 JPEG photos under {FACES}")
    return [p.read_bytes() for p in paths]


def header(data: bytes, offset: int = 0, size: int | None = None, sha: str | None = None) -> EvidenceChunk:
    return EvidenceChunk(
        sha256=sha or hashlib.sha256(data).hexdigest(),
        kind="camera",
        purpose="incident",
        taken_at=T0,
        size=len(data) if size is None else size,
        offset=offset,
    )


# ------------------------------------------------------------------------- pure


def test_chunks_in_order_complete_a_verified_image() -> None:
    """Three chunks in order give the whole image back, checked against its sha256."""
    data = bytes(range(256)) * 100
    state = accept_chunk(None, header(data), data[:10_000], 1 << 20)
    assert isinstance(state, Partial) and state.received == 10_000
    state = accept_chunk(state, header(data, 10_000), data[10_000:20_000], 1 << 20)
    assert isinstance(state, Partial)
    done = accept_chunk(state, header(data, 20_000), data[20_000:], 1 << 20)
    assert isinstance(done, Complete) and done.data == data


def test_bad_chunks_are_rejected_with_exact_reasons() -> None:
    """Wrong hash, oversize, a skipped offset and an overlong chunk each name the problem."""
    data = b"x" * 3000
    sha = hashlib.sha256(data).hexdigest()
    wrong = accept_chunk(None, header(data, sha="0" * 64), data, 1 << 20)
    assert wrong == EvidenceRejected(
        sha256="0" * 64, code="sha256_mismatch", message=f"evidence {'0' * 64}: content hashes to {sha}"
    )
    big = accept_chunk(None, header(data), data, 2048)
    assert big == EvidenceRejected(
        sha256=sha, code="too_large", message=f"evidence {sha}: image is 3000 bytes; the limit is 2048 bytes"
    )
    first = accept_chunk(None, header(data), data[:1000], 1 << 20)
    skipped = accept_chunk(first, header(data, 2000), data[2000:], 1 << 20)  # type: ignore[arg-type]
    assert isinstance(skipped, EvidenceRejected) and skipped.code == "out_of_order"
    assert skipped.message == f"evidence {sha}: expected the chunk at offset 1000, got offset 2000"
    late = accept_chunk(None, header(data, 1000), data[1000:], 1 << 20)
    assert isinstance(late, EvidenceRejected)
    assert late.message == f"evidence {sha}: expected the chunk at offset 0, got offset 1000"
    over = accept_chunk(None, header(data, size=100), data[:200], 1 << 20)
    assert isinstance(over, EvidenceRejected)
    assert (over.code, over.message) == (
        "invalid_chunk",
        f"evidence {sha}: chunks add up to 200 bytes; size is 100",
    )


def test_chunk_frame_round_trip_and_garbage() -> None:
    """A chunk frame decodes to its header and bytes; a truncated one raises invalid_chunk."""
    data = b"\xff\xd8jpeg"
    raw = encode_evidence_chunk(header(data), data)
    assert parse_evidence_chunk(raw) == (header(data), data)
    with pytest.raises(ProtocolError, match=r"^header length \d+ exceeds the 10 bytes that follow$"):
        parse_evidence_chunk(raw[:18])


def test_folder_sink_keeps_images_by_sha256(tmp_path: Path) -> None:
    """The plain-folder sink writes <root>/<tenant>/<sha256>.jpg once."""
    data = b"image-bytes"
    sink = FolderSink(tmp_path)
    where = sink.store("acme", "pc-1", header(data), data)
    assert Path(where) == tmp_path / "acme" / f"{hashlib.sha256(data).hexdigest()}.jpg"
    assert Path(where).read_bytes() == data


# ----------------------------------------------------------------- end to end


def stored_objects(w: World) -> dict[str, bytes]:
    """sha256 -> decrypted plaintext of every evidence object of the tenant."""
    engine = make_engine(w.database_url)
    try:
        store = open_store(w.settings, engine)
        with Session(engine) as s:
            shas = s.execute(
                select(col(EvidenceObject.sha256)).where(col(EvidenceObject.tenant_id) == w.tenant)
            ).scalars()
            return {sha: store.get(w.tenant, sha) for sha in shas}
    finally:
        engine.dispose()


async def test_uploaded_images_are_stored_encrypted_by_sha256_then_leave_the_spool(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """Three real photos go up in chunks, decrypt to the same bytes on the server, and leave the spool."""
    photos = faces()
    async with world(redis_url, database_url, tmp_path) as w:
        spool = Spool.in_dir(tmp_path / "agent")
        shas = [spool.add_image(p, "camera", "periodic", T0).sha256 for p in photos]
        session = w.session(spool)
        runner = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(session.wait_uploaded(), 30)
            assert (spool.image_count(), session.images_stored) == (0, 3)
            assert stored_objects(w) == dict(zip(shas, photos, strict=True))
            on_disk = b"".join(p.read_bytes() for p in (tmp_path / "server").rglob("*") if p.is_file())
            assert all(photo[:4096] not in on_disk for photo in photos)  # ciphertext only
        finally:
            session.stop()
            await runner
        spool.close()


async def raw_session(w: World, token: str | None = None) -> websockets.ClientConnection:
    ws = await websockets.connect(w.gateway.url)
    await ws.send(encode(Hello(token=token or w.token, agent_version="test", protocol=PROTOCOL_VERSION)))
    return ws


async def test_bad_sha256_and_oversize_are_rejected_and_nothing_is_stored(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """evidence_rejected names the exact reason; the rest of a rejected image is dropped unanswered."""
    async with world(redis_url, database_url, tmp_path, evidence_max_bytes=50_000) as w:
        ws = await raw_session(w)
        assert json.loads(await ws.recv())["type"] == "welcome"
        data = b"a" * 1000
        await ws.send(encode_evidence_chunk(header(data, sha="f" * 64), data))
        assert json.loads(await ws.recv()) == {
            "type": "evidence_rejected",
            "sha256": "f" * 64,
            "code": "sha256_mismatch",
            "message": f"evidence {'f' * 64}: content hashes to {hashlib.sha256(data).hexdigest()}",
            "retry": False,
        }
        big = b"b" * 60_000
        sha = hashlib.sha256(big).hexdigest()
        await ws.send(encode_evidence_chunk(header(big), big[:8192]))
        assert json.loads(await ws.recv()) == {
            "type": "evidence_rejected",
            "sha256": sha,
            "code": "too_large",
            "message": f"evidence {sha}: image is 60000 bytes; the limit is 50000 bytes",
            "retry": False,
        }
        await ws.send(encode_evidence_chunk(header(big, 8192), big[8192:16384]))  # no reply to this one
        small = b"d" * 500
        await ws.send(encode_evidence_chunk(header(small), small))
        stored = {"type": "evidence_stored", "sha256": hashlib.sha256(small).hexdigest()}
        assert json.loads(await ws.recv()) == stored
        await ws.send(b"TWE1\x00\x00\x00\x05{bad}")
        reply = json.loads(await ws.recv())
        assert (reply["type"], reply["code"]) == ("error", "invalid_chunk")
        await ws.close()
        assert stored_objects(w) == {stored["sha256"]: small}


async def test_a_bad_token_cannot_upload(redis_url: str, database_url: str, tmp_path: Path) -> None:
    """With a wrong token the session is closed 1008 before any chunk is read; nothing is stored."""
    async with world(redis_url, database_url, tmp_path) as w:
        ws = await raw_session(w, token="not-a-token")
        data = b"c" * 1000
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.send(encode_evidence_chunk(header(data), data))
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "invalid agent token"
        assert stored_objects(w) == {}


async def test_spool_keeps_images_until_the_server_confirms(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """A gateway without a master key rejects (retry), the image stays and is tried again on the same
    connection after a pause; a working gateway stores it."""
    data = faces()[0]
    spool = Spool.in_dir(tmp_path / "agent")
    sha = spool.add_image(data, "screen", "incident", T0).sha256
    async with world(redis_url, database_url, tmp_path / "nokey", master_key=None) as w:
        session = w.session(spool)
        runner = asyncio.create_task(session.run())
        await wait_until(
            lambda: session.uploader is not None and session.uploader.rejected, 20, what="reject"
        )
        assert session.uploader is not None
        reply = session.uploader.rejected[0]
        assert (reply.code, reply.retry) == ("store_unavailable", True)
        assert reply.message.startswith(f"evidence {sha}: store unavailable: TELEWORK_MASTER_KEY: not set")
        assert [i.sha256 for i in spool.images()] == [sha]
        # asked to retry: sent again on the same connection after a pause (uploader.RETRY_FIRST_S)
        uploader = session.uploader
        await wait_until(lambda: len(uploader.rejected) >= 2, 10, what="retried")
        assert session.connects == 1
        session.stop()
        await runner
    async with world(redis_url, database_url, tmp_path / "key") as w:
        session = w.session(spool)
        runner = asyncio.create_task(session.run())
        await asyncio.wait_for(session.wait_uploaded(), 30)
        session.stop()
        await runner
        assert (spool.image_count(), stored_objects(w)) == (0, {sha: data})
    spool.close()


async def test_uploads_stay_under_256_kbps_and_usage_is_reported(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """Two 24 KB images at the default 160 kbps pace: no 1 s window above 256 kbps; usage event stored,
    stamped by the session's clock."""
    spool = Spool.in_dir(tmp_path / "agent")
    for i in range(2):
        spool.add_image(hashlib.sha256(str(i).encode()).digest() * 750, "camera", "periodic", T0)
    async with world(redis_url, database_url, tmp_path) as w:
        session = w.session(spool, replace(FAST, upload_kbps=160.0))
        runner = asyncio.create_task(session.run())
        await asyncio.wait_for(session.wait_uploaded(), 30)
        assert 0 < session.meter.peak_sent_kbps < 256
        now = [session.meter.clock() + 60]
        session.meter.clock = lambda: now[0]  # the current minute is over
        stamp = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        session.clock = lambda: stamp  # the agent's one clock (with --fast: the frames')
        reported = session.report_usage()
        assert (
            len(reported) == 1
            and sum(m.sent for m in reported[0].payload.minutes) == session.meter.total_sent
        )
        assert reported[0].ts == stamp
        await asyncio.wait_for(session.wait_acked(), 10)
        await wait_until(lambda: any(e.type == "usage" for e in w.events()), 10, what="usage event stored")
        session.stop()
        await runner
        usage = [e for e in w.events() if e.type == "usage"]
        # the upload may straddle a minute boundary: the minutes together carry both images
        assert sum(m["sent"] for m in usage[0].payload["minutes"]) > 48_000
    spool.close()


def test_gateway_process_knows_every_table_evidence_rows_refer_to() -> None:
    """A process that imports only the gateway can flush evidence_object rows (all foreign tables known)."""
    script = (
        "import realtime.gateway\n"
        "from sqlmodel import SQLModel\n"
        "table = SQLModel.metadata.tables['evidence_object']\n"
        "print(sorted({fk.column.table.name for fk in table.foreign_keys}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout.strip()) == (0, "['incident', 'tenant', 'tw_user']"), done.stderr


# ------------------------------------------------------------ bounded unfinished uploads


def test_admission_keeps_unfinished_uploads_under_the_gateway_bound() -> None:
    """A new image starts only when it fits beside the unfinished ones; with none, any image starts."""
    assert admits(0, 5_000, 1_000)
    assert admits(600, 400, 1_000)
    assert not admits(601, 400, 1_000)


def uploads(pending_max: int, max_bytes: int = 200_000) -> EvidenceUploads:
    return EvidenceUploads(
        ServerSettings(evidence_max_bytes=max_bytes, evidence_pending_max_bytes=pending_max),
        lambda: FolderSink(Path("/nonexistent")),
    )


async def test_one_unfinished_image_per_session_and_busy_beyond_the_bound() -> None:
    """A session's new image replaces its unfinished one (its bytes released); past the bound a new
    image is refused busy (retry) and its later chunks dropped; an ended session frees its share."""
    receiver = uploads(pending_max=250_000)
    first, second, third = (bytes([i]) * 100_000 for i in range(3))
    assert (
        await receiver.receive("s1", "acme", "pc-1", encode_evidence_chunk(header(first), first[:8192]))
        is None
    )
    assert receiver.pending_bytes == 100_000
    assert (
        await receiver.receive("s1", "acme", "pc-1", encode_evidence_chunk(header(second), second[:8192]))
        is None
    )
    assert receiver.pending_bytes == 100_000  # the first was discarded, not added to
    assert (
        await receiver.receive("s2", "acme", "pc-2", encode_evidence_chunk(header(first), first[:8192]))
        is None
    )
    refused = await receiver.receive("s3", "acme", "pc-3", encode_evidence_chunk(header(third), third[:8192]))
    sha = hashlib.sha256(third).hexdigest()
    assert refused == EvidenceRejected(
        sha256=sha,
        code="busy",
        message=(
            f"evidence {sha}: gateway busy: 200000 bytes of unfinished uploads plus 100000 would pass "
            "the limit of 250000 bytes; retry later"
        ),
        retry=True,
    )
    later = encode_evidence_chunk(header(third, 8192), third[8192:16384])
    assert await receiver.receive("s3", "acme", "pc-3", later) is None  # dropped unanswered
    assert (receiver.pending_bytes, receiver.peak_pending_bytes) == (200_000, 200_000)
    receiver.forget("s2")
    assert receiver.pending_bytes == 100_000
    assert (
        await receiver.receive("s3", "acme", "pc-3", encode_evidence_chunk(header(third), third[:8192]))
        is None
    )
    assert receiver.pending_bytes == 200_000
    too_big = b"z" * 300_000
    oversize = await receiver.receive(
        "s4", "acme", "pc-4", encode_evidence_chunk(header(too_big), too_big[:8192])
    )
    assert isinstance(oversize, EvidenceRejected) and (oversize.code, oversize.retry) == ("too_large", False)


async def test_forty_sessions_with_unfinished_uploads_stay_within_the_gateway_bound(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """40 agents each start a 100 kB image under a 1 MB bound: 10 are held, 30 refused busy (retry);
    a finished one frees room and a refused one then goes through: stored, nothing lost."""
    async with world(
        redis_url, database_url, tmp_path, evidence_max_bytes=200_000, evidence_pending_max_bytes=1_000_000
    ) as w:
        assert w.gateway.server is not None
        gateway: Gateway = cast(Starlette, w.gateway.server.config.app).state.gateway
        tokens = [create_agent(w.engine, w.tenant, f"pc-load-{i:02d}", "alice") for i in range(40)]
        images = [hashlib.sha256(str(i).encode()).digest() * 3125 for i in range(40)]  # 100,000 bytes each
        sockets = []
        replies = []
        try:
            for token, image in zip(tokens, images, strict=True):
                ws = await raw_session(w, token)
                assert json.loads(await ws.recv())["type"] == "welcome"
                sockets.append(ws)
                await ws.send(encode_evidence_chunk(header(image), image[:8192]))
                await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
                first = json.loads(await ws.recv())
                if first["type"] != "heartbeat":
                    assert json.loads(await ws.recv())["type"] == "heartbeat"
                replies.append(first)
            busy = [r for r in replies if r["type"] == "evidence_rejected"]
            assert [r["type"] for r in replies] == ["heartbeat"] * 10 + ["evidence_rejected"] * 30
            assert {(r["code"], r["retry"]) for r in busy} == {("busy", True)}
            assert (gateway.evidence.pending_bytes, gateway.evidence.peak_pending_bytes) == (
                1_000_000,
                1_000_000,
            )
            assert gateway.evidence.held_bytes() == 10 * 8192

            for start in (8192, 58_192):
                chunk = images[0][start : start + 50_000]
                await sockets[0].send(encode_evidence_chunk(header(images[0], start), chunk))
            assert json.loads(await sockets[0].recv()) == {
                "type": "evidence_stored",
                "sha256": hashlib.sha256(images[0]).hexdigest(),
            }
            assert gateway.evidence.pending_bytes == 900_000
            retried = images[10]
            await sockets[10].send(encode_evidence_chunk(header(retried), retried[:50_000]))
            await sockets[10].send(encode_evidence_chunk(header(retried, 50_000), retried[50_000:]))
            assert json.loads(await sockets[10].recv()) == {
                "type": "evidence_stored",
                "sha256": hashlib.sha256(retried).hexdigest(),
            }
            assert set(stored_objects(w)) == {hashlib.sha256(images[i]).hexdigest() for i in (0, 10)}
        finally:
            for ws in sockets:
                await ws.close()
        await wait_until(lambda: gateway.session_count() == 0, 10, what="sessions ended")
        assert gateway.evidence.pending_bytes == 0
