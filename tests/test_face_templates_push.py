"""The server is the one source of a user's face template: the welcome carries it, a change is pushed
to the user's open sessions, and the frame's embeddings round-trip exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlmodel import Session, col, select

from core.settings import ServerSettings, sqlite_url
from realtime.protocol import Welcome
from realtime.protocol.face_templates import TemplatePush, decode_embedding, encode_embedding
from realtime.templates_push import announce, parse_announcement
from storage.db import make_engine, upgrade
from storage.evidence_store import open_store
from storage.face_images import NewImage, add_image
from storage.keyring import ensure_master_key
from storage.models import User
from tests.test_gateway import gateway_on, recv, session


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def store_image(database_url: str, tmp_path: Path, tenant: str, seed: int) -> list[float]:
    """A face image of the tenant's alice with a random unit embedding (no gate); its embedding."""
    engine = make_engine(database_url)
    try:
        store = open_store(ServerSettings(data_dir=tmp_path, database_url=database_url), engine)
        vector = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
        vector /= np.linalg.norm(vector)
        with Session(engine) as s:
            user_id = s.execute(select(col(User.id)).where(col(User.tenant_id) == tenant)).scalar_one()
            new = NewImage(b"\xff\xd8jpeg %d" % seed, 4, 4, vector, "dlib", "m1")
            add_image(s, store, tenant, user_id, new, datetime.now(UTC))
            s.commit()
        return [float(x) for x in vector]
    finally:
        engine.dispose()


async def test_welcome_carries_the_template_and_a_change_is_pushed(
    sqlite_db: str, redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """An agent's welcome has its user's embeddings; after an image is added and announced, the open
    session gets a template frame with both."""
    ensure_master_key(tmp_path)
    async with gateway_on(sqlite_db, redis_url, tmp_path) as running:
        first = store_image(sqlite_db, tmp_path, running.tenant, 1)
        async with session(running) as (ws, welcome):
            assert welcome.face_template is not None
            [body] = welcome.face_template.templates
            assert (body.engine, body.model_version) == ("dlib", "m1")
            assert [decode_embedding(e) for e in body.embeddings] == [first]
            second = store_image(sqlite_db, tmp_path, running.tenant, 2)
            user_id = welcome.face_template.user_id
            assert await announce(aredis, running.tenant, user_id)
            frame = await recv(ws)
            assert isinstance(frame, TemplatePush)
            assert [decode_embedding(e) for e in frame.templates[0].embeddings] == [first, second]
            assert frame.revision != welcome.face_template.revision


async def test_welcome_without_a_master_key_says_nothing_about_templates(
    sqlite_db: str, redis_url: str, tmp_path: Path
) -> None:
    """No master key and no images: the welcome's template is empty (the key is not needed to say so)."""
    async with gateway_on(sqlite_db, redis_url, tmp_path) as running, session(running) as (_, welcome):
        assert isinstance(welcome, Welcome) and welcome.face_template is not None
        assert (welcome.face_template.user_id, welcome.face_template.templates) == (1, [])


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=1024))
def test_embeddings_round_trip_exactly(values: list[float]) -> None:
    """Any finite float32 vector of 1-1024 values survives encode/decode unchanged."""
    assert decode_embedding(encode_embedding(values)) == values


@given(st.text(max_size=40))
def test_decode_embedding_refuses_anything_else_with_a_reason(text: str) -> None:
    """Text that is not base64 of float32 values is refused with a ValueError naming the field."""
    try:
        values = decode_embedding(text)
    except ValueError as exc:
        assert str(exc).startswith("embedding: expected")
    else:
        assert encode_embedding(values) == text or len(values) >= 1


def test_template_frame_bounds() -> None:
    """A frame with a bad revision, too many embeddings or an unknown field is refused."""
    good = {"user_id": 1, "revision": "a" * 64, "templates": []}
    assert TemplatePush.model_validate(good).templates == []
    for bad in (
        {**good, "revision": "x"},
        {**good, "extra": 1},
        {**good, "user_id": 0},
        {**good, "templates": [{"engine": "dlib", "model_version": "m", "embeddings": ["AAAA"] * 51}]},
    ):
        with pytest.raises(ValidationError):
            TemplatePush.model_validate(bad)  # fmt: skip


def test_announcements_parse_only_user_ids() -> None:
    """An announcement is a positive user id; anything else is None."""
    assert [parse_announcement(x) for x in (b"42", "7", b"0", b"-1", b"abc", b"99999999999", "")] == [
        42, 7, None, None, None, None, None,
    ]  # fmt: skip
