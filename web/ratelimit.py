"""Failed sign-ins, limited per account and per client address (the ``limits`` library, moving window).

Only failures count. Before a password (or a code) is checked, :meth:`SignInLimits.blocked` asks
whether one of three windows is used up; if so the attempt is refused without looking at the
password, so a guesser learns nothing more:

- ``account``: the account (tenant and login, hashed into the key) from this client address
  (``TELEWORK_WEB_FAILS_PER_ACCOUNT``): a guesser elsewhere cannot lock the owner out;
- ``account_total``: the account from every address together, a much higher limit
  (``TELEWORK_WEB_FAILS_PER_ACCOUNT_TOTAL``): a guess spread over many addresses still stops;
- ``address``: the client address over every account (``TELEWORK_WEB_FAILS_PER_ADDRESS``).

The windows live in the deployment's Redis (keys under :data:`web.keys.LIMITS_PREFIX`), shared
by every web process.
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


def account_address_key(tenant: str, login: str, address: str) -> str:
    """Pure: the limit key of an account tried from one client address (a digest, as :func:`account_key`)."""
    text = f"{account_key(tenant, login)}\0{address}"  # the account's digest first: no login can shift it
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class Blocked:
    """Which limit is used up, and in how many seconds a failure leaves its window."""

    what: str  # account (from this address) | account_total (from every address) | address
    retry_after_s: int


class SignInLimits:
    """Per-account and per-address moving windows of failed sign-ins."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        window_s: int,
        per_account: int,
        per_address: int,
        per_account_total: int,
    ) -> None:
        pool: Any = redis.connection_pool  # the library types its pass-through options narrowly
        storage = RedisStorage(
            "async+redis://", implementation="redispy", key_prefix=LIMITS_PREFIX, connection_pool=pool
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._account = RateLimitItemPerSecond(per_account, window_s, namespace="signin-account")
        self._address = RateLimitItemPerSecond(per_address, window_s, namespace="signin-address")
        self._total = RateLimitItemPerSecond(per_account_total, window_s, namespace="signin-account-total")

    def _windows(
        self, tenant: str, login: str, address: str
    ) -> tuple[tuple[str, RateLimitItemPerSecond, str], ...]:
        return (
            ("account", self._account, account_address_key(tenant, login, address)),
            ("account_total", self._total, account_key(tenant, login)),
            ("address", self._address, address),
        )

    async def blocked(self, tenant: str, login: str, address: str) -> Blocked | None:
        """The limit a new attempt would exceed, or None."""
        for what, item, key in self._windows(tenant, login, address):
            if not await self._limiter.test(item, key):
                stats = await self._limiter.get_window_stats(item, key)
                return Blocked(what, max(1, math.ceil(stats.reset_time - time.time())))
        return None

    async def failed(self, tenant: str, login: str, address: str) -> None:
        """Count one failed sign-in against the account from this address, the account, and the address."""
        for _what, item, key in self._windows(tenant, login, address):
            await self._limiter.hit(item, key)
