"""Blocking entry points of the stream-consumer processes: ``telework worker`` (``python -m workers``)
and ``telework builder`` share one runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import redis.asyncio as aioredis
from sqlalchemy.engine import Engine

from storage.db import check_schema, make_engine, sqlite_url
from telework.config import ConfigError, env_key
from telework.settings import ServerSettings
from workers.consumer import PersistWorker

log = logging.getLogger(__name__)


def run_worker(settings: ServerSettings) -> None:
    """Run one persistence worker until SIGINT/SIGTERM (see :func:`run_consumer`)."""
    run_consumer(settings, PersistWorker)


def run_consumer(settings: ServerSettings, worker_class: type[PersistWorker]) -> None:
    """Run one stream consumer until SIGINT/SIGTERM; the batch in hand is finished and acked first.

    Raises ConfigError without ``TELEWORK_REDIS_URL`` and storage.db.SchemaError on an
    un-migrated database.
    """
    if settings.redis_url is None:
        raise ConfigError(
            env_key("redis_url"),
            "not set; a worker reads the Redis streams the gateway writes, so it needs that Redis's URL "
            "(`telework up` starts an embedded Redis and passes its URL to its workers)",
        )
    url = settings.database_url or sqlite_url(settings.data_dir)
    engine = make_engine(url)
    try:
        check_schema(engine)
        asyncio.run(_serve(settings, engine, settings.redis_url, worker_class))
    finally:
        engine.dispose()


async def _serve(
    settings: ServerSettings, engine: Engine, redis_url: str, worker_class: type[PersistWorker]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available off the main thread or on Windows; the caller then stops us another way.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    # Raw bytes: an entry that is not UTF-8 is dead-lettered instead of failing the whole read.
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    try:
        await worker_class(settings, engine, client).run(stop)
    finally:
        await client.aclose()
