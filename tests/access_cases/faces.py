"""The access matrix of the face-image routes (pages and API): see ``tests/access_matrix.py``.

Every case prepares a fresh face image of acme's worker ``wataru`` (stored directly, encrypted,
without the gate): administrators see and change it; mika (his manager) and wataru see it but may
not upload or delete (403); wendy and tenant beta cannot see it (404). Uploads send a file that
is not an image, so an administrator's upload answers its refusal without a face engine.
"""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from storage.face_images import NewImage, add_image
from storage.keyring import ensure_master_key
from tests.access_matrix import Call, Case, expect
from tests.web_world import World
from web.face_parts import parts_of_app

API = "/api/v1/users/{user_id}/faces"
NOT_AN_IMAGE = {"files": ("notes.jpg", b"not a photo at all", "image/jpeg")}


def _store_image(world: World) -> int:
    ensure_master_key(world.settings.data_dir)
    rng = np.random.default_rng()
    pixels = rng.integers(0, 255, size=(48, 40, 3), dtype=np.uint8)
    jpeg = bytes(cv2.imencode(".jpg", pixels)[1].tobytes())
    vector = rng.standard_normal(128).astype(np.float32)
    new = NewImage(jpeg, 40, 48, vector / np.linalg.norm(vector), "dlib", "test-model")
    store = parts_of_app(world.app).store(world.engine)
    with Session(world.engine) as s:
        stored = add_image(s, store, "acme", world.ids["wataru"], new, datetime.now(UTC))
        s.commit()
    return stored.id


async def image_of_wataru(world: World) -> Call:
    image_id = await run_in_threadpool(_store_image, world)
    return Call(path={"user_id": world.ids["wataru"], "image_id": image_id})


async def wataru(world: World) -> Call:
    await run_in_threadpool(_store_image, world)
    return Call(path={"user_id": world.ids["wataru"]})


async def upload_api(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]}, files=NOT_AN_IMAGE)


async def upload_page(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]}, data={}, files=NOT_AN_IMAGE)


async def delete_page(world: World) -> Call:
    call = await image_of_wataru(world)
    call.data = {}
    return call


ADMIN_ONLY = expect(admin=200, manager=403, own=403, other=404)
SEEN = expect(admin=200, manager=200, own=200, other=404)
PAGE_SEEN = expect(admin=200, manager=200, own=200, other=404, anon=303)

CASES = [
    Case("GET", API, SEEN, wataru),
    Case("POST", API, ADMIN_ONLY, upload_api),
    Case("GET", API + "/{image_id}/thumbnail", SEEN, image_of_wataru),
    Case("DELETE", API + "/{image_id}", expect(admin=204, manager=403, own=403, other=404), image_of_wataru),
    Case("GET", "/users/{user_id}/faces", PAGE_SEEN, wataru),
    Case(  # the only file is not an image: refused, so the page answers 422 with its reason
        "POST", "/users/{user_id}/faces",
        expect(admin=422, manager=403, own=403, other=404, anon=303), upload_page,
    ),
    Case(
        "POST", "/users/{user_id}/faces/{image_id}/delete",
        expect(admin=303, manager=403, own=403, other=404, anon=303), delete_page,
    ),
]  # fmt: skip
