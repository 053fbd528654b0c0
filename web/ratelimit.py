"""Failed sign-ins, limited per account and per client address (the ``limits`` library, moving window).

Only failures count. Before a password is checked, :meth:`SignInLimits.blocked` asks whether the
account (tenant and login, hashed into the key) or the address has used up its failures within
the window; if so the sign-in is refused without looking at the password, so a guesser learns
nothing more. The windows live in the deployment's Redis (keys under
:data:`web.keys.LIMITS_PREFIX`), shared by every web process.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from web.keys import LIMITS_PREFIX


def account_key(tenant: str, login: str) -> str:
    """Pure: the limit key of an account: a digest, so any login (control characters, 10 kB) is one key."""
    return hashlib.sha256(f"{tenant}\0{login}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Blocked:
    """Which limit is used up, and in how many seconds a failure leaves its window."""

    what: str  # account | address
    retry_after_s: int


class SignInLimits:
    """Per-account and per-address moving windows of failed sign-ins."""

    def __init__(self, redis: aioredis.Redis, *, window_s: int, per_account: int, per_address: int) -> None:
        pool: Any = redis.connection_pool  # the library types its pass-through options narrowly
        storage = RedisStorage(
            "async+redis://", implementation="redispy", key_prefix=LIMITS_PREFIX, connection_pool=pool
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._account = RateLimitItemPerSecond(per_account, window_s, namespace="signin-account")
        self._address = RateLimitItemPerSecond(per_address, window_s, namespace="signin-address")

    async def blocked(self, tenant: str, login: str, address: str) -> Blocked | None:
        """The limit a new attempt would exceed, or None."""
        for what, item, key in (
            ("account", self._account, account_key(tenant, login)),
            ("address", self._address, address),
        ):
            if not await self._limiter.test(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                return Blocked(what, max(1, math.ceil(stats.reset_time - time.time())))
        return None

    async def failed(self, tenant: str, login: str, address: str) -> None:
        """Count one failed sign-in against the account and the address."""
        await self._limiter.hit(self._account, account_key(tenant, login))
        await self._limiter.hit(self._address, address)
