"""A sign-in waiting for its second-factor code: half signed in, in Redis, for a few minutes.

After the right password of a user whose second factor is on, no session begins: a random
token (for a short-lived cookie, or the API answer) names a Redis hash holding who is signing
in, which expires after ``TELEWORK_WEB_CODE_WAIT_S``. :func:`take` ends the wait exactly once
(a DELETE only one request can win), :func:`miss` counts a wrong code and ends the wait after
:data:`MAX_MISSES`, so that a guesser must type the password again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from web.sessions import new_token, token_hash

MAX_MISSES = 5  # wrong codes before the wait ends (the sign-in limits count them too)


def wait_key(digest: str) -> str:
    """Hash of one sign-in waiting for its code (by the sha256 of its token)."""
    return f"tw:web:code-wait:{digest}"


@dataclass(frozen=True)
class Waiting:
    user_id: int
    tenant: str
    login: str
    version: int
    misses: int

    def fields(self) -> dict[str, str]:
        """Pure: the Redis hash fields."""
        return {
            "user_id": str(self.user_id),
            "tenant": self.tenant,
            "login": self.login,
            "version": str(self.version),
            "misses": str(self.misses),
        }

    @classmethod
    def parse(cls, fields: dict[str, str]) -> Waiting | None:
        """Pure: the record of a Redis hash, or None when incomplete or malformed."""
        try:
            return cls(
                int(fields["user_id"]), fields["tenant"], fields["login"], int(fields["version"]),
                int(fields["misses"]),
            )  # fmt: skip
        except (KeyError, ValueError):
            return None


async def begin(redis: aioredis.Redis, waiting: Waiting, ttl_s: int) -> str:
    """Start a wait; returns its token (never stored)."""
    token = new_token()
    key = wait_key(token_hash(token))
    fields: dict[Any, Any] = waiting.fields()  # redis-py's Mapping type is invariant in its keys
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, ttl_s)
        await pipe.execute()
    return token


async def load(redis: aioredis.Redis, token: str) -> Waiting | None:
    raw = await redis.hgetall(wait_key(token_hash(token)))
    return Waiting.parse({str(k): str(v) for k, v in raw.items()}) if raw else None


async def take(redis: aioredis.Redis, token: str) -> bool:
    """End the wait; True for the one caller that ended it."""
    return bool(await redis.delete(wait_key(token_hash(token))))


async def miss(redis: aioredis.Redis, token: str) -> None:
    """Count a wrong code; the wait ends at :data:`MAX_MISSES`."""
    key = wait_key(token_hash(token))
    misses = int(await redis.hincrby(key, "misses", 1))
    # at the limit; or the wait ended meanwhile and HINCRBY made a stub without expiry
    if misses >= MAX_MISSES or await redis.ttl(key) == -1:
        await redis.delete(key)
