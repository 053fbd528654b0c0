"""Face images in the console: upload through the agent's gate, refusals with reasons, encrypted
storage, thumbnails for allowed callers only, delete, audit, template announcements, erasure."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from realtime.templates_push import build_push, templates_channel
from storage.audit_models import AuditEntry
from storage.evidence_models import FaceTemplate
from storage.keyring import ensure_master_key
from storage.personal_data import find_subject
from storage.personal_erase import delete_blobs, erase_rows
from telework.face_gate import gate_factory
from tests.faces import require_faces
from tests.web_world import World, make_world
from web import face_parts
from web.i18n import text

REDIS_DB = "redis://127.0.0.1:6379/5"


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk declaring ``width`` x ``height`` (no pixel data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest_asyncio.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    ensure_master_key(tmp_path)
    async with make_world(tmp_path, database_url, engine, redis_url, face_engine="dlib") as w:
        face_parts.install(w.app, w.settings, gate_factory(w.settings))
        yield w


def photo(name: str) -> tuple[str, bytes, str]:
    path = require_faces() / name
    return (path.name, path.read_bytes(), "image/jpeg" if path.suffix == ".jpg" else "image/png")


async def upload(
    client: httpx.AsyncClient, csrf: str, user_id: int, *files: tuple[str, bytes, str]
) -> httpx.Response:
    return await client.post(
        f"/api/v1/users/{user_id}/faces",
        files=[("files", f) for f in files],
        headers={"X-CSRF-Token": csrf},
    )


def rows(engine: Engine, user_id: int) -> list[FaceTemplate]:
    with Session(engine) as s:
        return list(s.execute(select(FaceTemplate).where(col(FaceTemplate.user_id) == user_id)).scalars())


def actions(engine: Engine, prefix: str = "face.") -> list[str]:
    with Session(engine) as s:
        found = s.execute(select(col(AuditEntry.action)).order_by(col(AuditEntry.seq))).scalars()
        return [a for a in found if a.startswith(prefix)]


def blob_files(world: World) -> list[Path]:
    root = world.settings.data_dir / "evidence" / "evidence"  # the local backend's evidence/<tenant>/..
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


@pytest.mark.asyncio
async def test_admin_uploads_images_stored_encrypted_with_thumbnails(world: World) -> None:
    """Three photos of one person are registered; stored encrypted; a thumbnail is a small JPEG; audited."""
    alice, csrf = await world.signed_in("alice")
    wataru = world.ids["wataru"]
    answer = await upload(
        alice, csrf, wataru, photo("obama/1.jpg"), photo("obama/2.jpg"), photo("obama/3.jpg")
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["accepted"] for r in results] == [True, True, True]
    assert [r["reason"] for r in results] == [None, None, None]
    stored = rows(world.engine, wataru)
    assert len(stored) == 3 and {r.source for r in stored} == {"console"}
    for blob in blob_files(world):
        data = blob.read_bytes()
        assert (
            data.startswith(b"TWE1") and b"JFIF" not in data and oct(blob.stat().st_mode & 0o777) == "0o600"
        )
    assert len(blob_files(world)) == 3
    listed = (await alice.get(f"/api/v1/users/{wataru}/faces")).json()["images"]
    assert [i["id"] for i in listed] == [r.id for r in stored]
    thumb = await alice.get(f"/api/v1/users/{wataru}/faces/{listed[0]['id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content.startswith(b"\xff\xd8") and len(thumb.content) < 20_000
    assert actions(world.engine) == ["face.image_add"] * 3 + ["face.image_view"]


@pytest.mark.asyncio
async def test_bad_inputs_each_refused_with_its_reason_nothing_stored(world: World) -> None:
    """A non-image, a 20,000 px image, two faces, someone else: each its reason; a 50 MB file 413."""
    alice, csrf = await world.signed_in("alice")
    wataru = world.ids["wataru"]
    first = await upload(alice, csrf, wataru, photo("obama/1.jpg"))
    assert first.json()["results"][0]["accepted"] is True
    before = len(blob_files(world))
    answer = await upload(
        alice, csrf, wataru,
        ("notes.jpg", b"this is a text file, not a photo", "image/jpeg"),
        ("huge.png", png_header(20_000, 20_000), "image/png"),
        photo("groups/two_people.jpg"),
        photo("biden/1.jpg"),
    )  # fmt: skip
    reasons = [r["reason"] for r in answer.json()["results"]]
    assert reasons[0] == "not an image: expected a JPEG, PNG, WebP or BMP image"
    assert reasons[1] == "image too large: 20000x20000 px, need at most 4096 px a side"
    assert reasons[2] == "2 faces, need exactly 1"
    assert reasons[3] is not None and reasons[3].startswith(
        "not the same person as the other images: distance "
    )
    assert [r["accepted"] for r in answer.json()["results"]] == [False] * 4
    big = await alice.post(
        f"/api/v1/users/{wataru}/faces",
        files={"files": ("big.jpg", b"\xff" * (50 * 1024 * 1024), "image/jpeg")},
        headers={"X-CSRF-Token": csrf},
    )
    assert big.status_code == 413 and big.json()["error"] == "too_large"
    assert len(rows(world.engine, wataru)) == 1 and len(blob_files(world)) == before
    assert actions(world.engine) == ["face.image_add"] + ["face.image_reject"] * 4


@pytest.mark.asyncio
async def test_who_sees_and_who_changes_images(world: World) -> None:
    """The user and their manager see the images; only administrators upload; others get 404."""
    alice, csrf = await world.signed_in("alice")
    wataru = world.ids["wataru"]
    await upload(alice, csrf, wataru, photo("obama/1.jpg"))
    image_id = rows(world.engine, wataru)[0].id
    statuses = {}
    for login in ("mika", "wataru", "wendy", "bob", "bill"):
        client, token = await world.signed_in(login)
        listed = await client.get(f"/api/v1/users/{wataru}/faces")
        thumb = await client.get(f"/api/v1/users/{wataru}/faces/{image_id}/thumbnail")
        added = await upload(client, token, wataru, photo("obama/2.jpg"))
        removed = await client.delete(
            f"/api/v1/users/{wataru}/faces/{image_id}", headers={"X-CSRF-Token": token}
        )
        statuses[login] = (listed.status_code, thumb.status_code, added.status_code, removed.status_code)
    assert statuses == {
        "mika": (200, 200, 403, 403),
        "wataru": (200, 200, 403, 403),
        "wendy": (404, 404, 404, 404),
        "bob": (404, 404, 404, 404),
        "bill": (404, 404, 404, 404),
    }
    assert len(rows(world.engine, wataru)) == 1


@pytest.mark.asyncio
async def test_delete_removes_row_and_blob_and_announces_the_template(world: World) -> None:
    """Deleting an image removes its row and encrypted blob, is audited, and announces the user."""
    alice, csrf = await world.signed_in("alice")
    wataru = world.ids["wataru"]
    await upload(alice, csrf, wataru, photo("obama/1.jpg"), photo("obama/2.jpg"))
    first, second = (r.id for r in rows(world.engine, wataru))
    pubsub = world.redis.pubsub()
    await pubsub.subscribe(templates_channel("acme"))
    await pubsub.get_message(timeout=1.0)  # the subscription's confirmation
    answer = await alice.delete(f"/api/v1/users/{wataru}/faces/{first}", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 204
    message = None
    async with asyncio.timeout(5):
        while message is None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
    assert message["data"] == str(wataru)
    await pubsub.aclose()
    assert [r.id for r in rows(world.engine, wataru)] == [second]
    assert len(blob_files(world)) == 1
    again = await alice.delete(f"/api/v1/users/{wataru}/faces/{first}", headers={"X-CSRF-Token": csrf})
    assert again.status_code == 404
    push = build_push(
        world.engine, face_parts.parts_of_app(world.app).store(world.engine).keyring, "acme", wataru
    )
    assert [(b.engine, len(b.embeddings)) for b in push.templates] == [("dlib", 1)]
    assert actions(world.engine) == ["face.image_add", "face.image_add", "face.image_delete"]


@pytest.mark.asyncio
async def test_erasure_removes_images_and_templates(world: World) -> None:
    """Erasing the user deletes their face rows and, after the commit, their encrypted images."""
    alice, csrf = await world.signed_in("alice")
    wataru = world.ids["wataru"]
    await upload(alice, csrf, wataru, photo("obama/1.jpg"), photo("obama/2.jpg"))
    assert len(blob_files(world)) == 2
    store = face_parts.parts_of_app(world.app).store(world.engine)
    erased = erase_rows(world.engine, store, find_subject(world.engine, "acme", "wataru"), "test")
    assert erased.rows["face_template"] == 2
    assert delete_blobs(world.engine, store, erased.manifest)["face_images"] == 2
    assert rows(world.engine, wataru) == [] and blob_files(world) == []


@pytest.mark.asyncio
async def test_face_page_lists_uploads_and_refusals(world: World) -> None:
    """The page shows each file's verdict; a manager sees thumbnails but no upload form."""
    alice, csrf = await world.signed_in("alice")
    wataru = world.ids["wataru"]
    answer = await alice.post(
        f"/users/{wataru}/faces",
        data={"csrf": csrf},
        files=[("files", photo("obama/1.jpg")), ("files", photo("groups/two_people.jpg"))],
    )
    assert answer.status_code == 200
    # alice's language is Japanese; the gate's reasons are the agent's (English)
    assert text("faces_accepted", "ja", file="1.jpg") in answer.text
    reason = "2 faces, need exactly 1"
    assert text("faces_rejected", "ja", file="two_people.jpg", reason=reason) in answer.text
    image_id = rows(world.engine, wataru)[0].id
    mika, _ = await world.signed_in("mika")
    page = await mika.get(f"/users/{wataru}/faces")
    assert page.status_code == 200
    assert f"/api/v1/users/{wataru}/faces/{image_id}/thumbnail" in page.text
    assert 'enctype="multipart/form-data"' not in page.text
    gone = await alice.post(f"/users/{wataru}/faces/{image_id}/delete", data={"csrf": csrf})
    assert gone.status_code == 303 and gone.headers["location"] == f"/users/{wataru}/faces?deleted=1"
    assert rows(world.engine, wataru) == []
