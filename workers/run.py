"""Blocking entry points of the stream-consumer processes: ``telework worker`` (``python -m workers``)
and ``telework builder`` run the one stream consumer, each with its handler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from core.process import async_stop_on_signals
from core.process import redis_url as required_redis_url
from core.settings import ServerSettings
from realtime.redis_client import server_redis
from storage.db import open_database
from workers.builder import build_consumer
from workers.consumer import StreamConsumer
from workers.persist import persist_consumer

log = logging.getLogger(__name__)

# settings, engine, Redis client -> the consumer with its handler
ConsumerFactory = Callable[[ServerSettings, Engine, Any], StreamConsumer[Any]]


def run_worker(settings: ServerSettings) -> None:
    """Run one persistence worker until SIGINT/SIGTERM (see :func:`run_consumer`)."""
    run_consumer(settings, persist_consumer)


def run_builder(settings: ServerSettings) -> None:
    """Run one builder until SIGINT/SIGTERM; the batch in hand is built and acked before exit."""
    run_consumer(settings, build_consumer)


def run_consumer(settings: ServerSettings, make: ConsumerFactory) -> None:
    """Run one stream consumer until SIGINT/SIGTERM; the batch in hand is finished and acked first.

    Raises ConfigError without ``TELEWORK_REDIS_URL`` and storage.db.SchemaError on an
    un-migrated database.
    """
    url = required_redis_url(settings, "a worker", published=False)
    engine = open_database(settings)
    try:
        asyncio.run(_serve(settings, engine, url, make))
    finally:
        engine.dispose()


async def _serve(settings: ServerSettings, engine: Engine, redis_url: str, make: ConsumerFactory) -> None:
    # Raw bytes: an entry that is not UTF-8 is dead-lettered instead of failing the whole read.
    client = server_redis(redis_url, decode_responses=False, block_s=settings.worker_block_ms / 1000)
    try:
        with async_stop_on_signals(asyncio.Event()) as stop:
            await make(settings, engine, client).run(stop)
    finally:
        await client.aclose()
