"""The one place the server processes get their Redis clients: they live through a Redis restart.

redis-py's clients made from a URL never retry: after Redis restarts, every connection left in
the pool fails its next command once ("Connection closed by server"), so a gateway refuses one
session start (1011) per pooled connection, and agents backing off stretch that into minutes.
A client from :func:`server_redis`:

- retries a command that failed with a connection error or a timeout :data:`RETRIES` times,
  reconnecting first, after 0.1 s doubling to 0.5 s (:data:`RETRY_BASE_S`, :data:`RETRY_CAP_S`):
  a dead pooled connection is replaced on the spot, and a Redis that stays away fails the command
  within about 3 s (each reconnect is retried the same way), so sessions are told at once;
- PINGs a connection idle for :data:`HEALTH_CHECK_S` (2 s) before using it (a pub/sub connection too,
  each time its reader wakes up);
- gives up on a connect after :data:`CONNECT_TIMEOUT_S` and on a reply after
  :data:`READ_TIMEOUT_S` plus the longest ``BLOCK`` the caller sends (``block_s``);
- keeps TCP keepalive on with short probes, so the kernel finds a peer that vanished without
  closing (a network cut) in about 25 s.

Retried writes can be stored twice (a reply lost after Redis took the write): every event
carries its id and is stored once downstream, exactly as for an agent's resend.
"""

from __future__ import annotations

import socket
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RETRIES = 3  # a failed command is tried again this many times
RETRY_BASE_S = 0.05  # first retry after twice this; doubles per failure
RETRY_CAP_S = 0.5  # longest wait between two tries
HEALTH_CHECK_S = 2.0  # a connection idle this long is PINGed before it is used
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0  # a reply that takes longer (beyond the command's own BLOCK) is a dead connection
POOL_WAIT_S = 10.0  # with a bounded pool: how long a command waits for a free connection
KEEPALIVE_IDLE_S = 10  # TCP keepalive: first probe after this long without traffic
KEEPALIVE_INTERVAL_S = 5  # then one probe this often
KEEPALIVE_COUNT = 3  # unanswered probes before the kernel closes the connection


def retry_policy() -> Retry:
    """Pure: the retry of every server client (connection errors and timeouts, capped backoff)."""
    return Retry(
        ExponentialBackoff(cap=RETRY_CAP_S, base=RETRY_BASE_S),
        RETRIES,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def client_options(url: str, block_s: float = 0.0) -> dict[str, Any]:
    """Pure: the connection options of a server client for ``url`` whose longest blocking command
    waits ``block_s`` seconds (e.g. XREADGROUP BLOCK); TCP options only for a TCP URL."""
    if block_s < 0:
        raise ValueError(f"block_s: expected >= 0 seconds, got {block_s}")
    options: dict[str, Any] = {
        "retry": retry_policy(),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": HEALTH_CHECK_S,
        "socket_timeout": READ_TIMEOUT_S + block_s,
    }
    if not url.lower().startswith("unix:"):
        options |= {
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "socket_keepalive": True,
            "socket_keepalive_options": keepalive_options(),
        }
    return options


def keepalive_options() -> dict[int, int]:
    """TCP keepalive probes where the platform names them: a silent peer is given up after about
    ``KEEPALIVE_IDLE_S + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S`` (the kernel default is hours)."""
    wanted = {
        "TCP_KEEPIDLE": KEEPALIVE_IDLE_S,
        "TCP_KEEPINTVL": KEEPALIVE_INTERVAL_S,
        "TCP_KEEPCNT": KEEPALIVE_COUNT,
    }
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def server_redis(
    url: str, *, decode_responses: bool = True, max_connections: int | None = None, block_s: float = 0.0
) -> aioredis.Redis:
    """A Redis client for a server process (see the module docstring).

    ``max_connections`` bounds the pool: a burst of callers then queues for a connection (up to
    :data:`POOL_WAIT_S`) instead of failing with "Too many connections". ``decode_responses``
    False gives raw bytes (a worker dead-letters an entry that is not UTF-8 instead of failing).
    """
    options = client_options(url, block_s)
    pool: aioredis.ConnectionPool
    if max_connections is None:
        pool = aioredis.ConnectionPool.from_url(url, decode_responses=decode_responses, **options)
    else:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT_S,
            decode_responses=decode_responses,
            **options,
        )
    return aioredis.Redis.from_pool(pool)
