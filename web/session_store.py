"""Console sessions in Redis: begin, load, touch, end one, end every session of a user.

Each session is a hash under :func:`web.keys.session_key` (the token's sha256), expiring in Redis
``absolute_s`` after it began (a backstop: whether it is still live is decided by
:func:`web.sessions.expiry` on every request); each user has a set of their sessions'
token hashes (:func:`web.keys.user_sessions_key`), so that signing out everywhere, a password
change and disabling the user end them all. :func:`end_user_sessions` (or, from synchronous code,
:func:`end_user_sessions_now`) is what disabling a user must call; requests of a disabled user are
refused even before, as every request re-reads the user (:mod:`web.principal`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis

from realtime.redis_client import server_redis
from web import keys
from web.sessions import SessionRecord, new_token, token_hash

log = logging.getLogger(__name__)


async def begin(
    redis: aioredis.Redis,
    *,
    user_id: int,
    tenant: str,
    version: int,
    now: float,
    address: str,
    absolute_s: int,
) -> tuple[str, SessionRecord]:
    """A new session; returns its token (for the cookie, never stored) and its record."""
    token = new_token()
    record = SessionRecord(user_id, tenant, version, new_token(), now, now, address)
    digest = token_hash(token)
    index = keys.user_sessions_key(tenant, user_id)
    fields: dict[Any, Any] = record.fields()  # redis-py's Mapping type is invariant in its keys
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.session_key(digest), mapping=fields)
        pipe.expire(keys.session_key(digest), absolute_s)
        pipe.sadd(index, digest)
        pipe.expire(index, absolute_s)
        await pipe.execute()
    return token, record


async def load(redis: aioredis.Redis, token: str) -> SessionRecord | None:
    """The record of the session whose cookie holds ``token``, or None (unknown, ended, malformed)."""
    raw = await redis.hgetall(keys.session_key(token_hash(token)))  # a client with decode_responses
    fields = {str(k): str(v) for k, v in raw.items()}
    return SessionRecord.parse(fields) if fields else None


async def touch(redis: aioredis.Redis, token: str, now: float) -> None:
    """Note a request of the session (its idle time starts again); a session ended meanwhile stays ended."""
    key = keys.session_key(token_hash(token))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.exists(key)
        pipe.hset(key, "seen", repr(now))
        exists, _ = await pipe.execute()
    if not exists:  # ended between load and touch: the HSET just made a stub; take it away
        await redis.delete(key)


async def end(redis: aioredis.Redis, token: str, record: SessionRecord) -> None:
    """End one session (sign-out)."""
    digest = token_hash(token)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(keys.session_key(digest))
        pipe.srem(keys.user_sessions_key(record.tenant, record.user_id), digest)
        await pipe.execute()


async def end_user_sessions(
    redis: aioredis.Redis, tenant: str, user_id: int, *, keep: str | None = None
) -> int:
    """End every open session of the user (but the one of token ``keep``); returns how many ended.

    Call it when a user is disabled, their password is changed or reset, or they sign out everywhere.
    """
    index = keys.user_sessions_key(tenant, user_id)
    kept = None if keep is None else token_hash(keep)
    members = await redis.smembers(index)  # str or bytes, whichever the client decodes to
    digests = [d.decode() if isinstance(d, bytes) else str(d) for d in members]
    digests = [d for d in digests if d != kept]
    if not digests:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for digest in digests:
            pipe.delete(keys.session_key(digest))
        pipe.srem(index, *digests)
        results = await pipe.execute()
    ended = sum(int(n) for n in results[:-1])
    log.info("console sessions ended", extra={"tenant": tenant, "user_id": user_id, "ended": ended})
    return ended


def end_user_sessions_now(redis_url: str, tenant: str, user_id: int) -> int:
    """:func:`end_user_sessions` for a synchronous caller (``telework admin user update --disable``),
    on a Redis client of its own; returns how many sessions ended."""

    async def run() -> int:
        client = server_redis(redis_url)
        try:
            return await end_user_sessions(client, tenant, user_id)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def set_version(redis: aioredis.Redis, token: str, version: int) -> None:
    """The session of ``token`` now holds credential ``version`` (it survives its own password change)."""
    key = keys.session_key(token_hash(token))
    if await redis.exists(key):
        await redis.hset(key, "version", str(version))
