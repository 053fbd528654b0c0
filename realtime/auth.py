"""Agent token authentication for the gateway, with a small TTL cache of valid identities.

The lookup itself is synchronous SQLAlchemy (:func:`storage.accounts.lookup_token`)
and runs in a worker thread. Valid identities are cached for ``ttl_s`` seconds so
a reconnect storm does not turn into a database storm; unknown and revoked
tokens are looked up every time. A revocation reaches the cache sooner than
``ttl_s``: the gateway's revocation check (:mod:`realtime.revocation`) re-reads
the cached tokens with its open sessions' and drops those no longer valid
(:meth:`Authenticator.forget`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from realtime.protocol import CLOSE_POLICY_VIOLATION
from realtime.session import Rejection
from storage.accounts import AgentIdentity, hash_token

INVALID_TOKEN = Rejection(CLOSE_POLICY_VIOLATION, "invalid agent token")
REVOKED_TOKEN = Rejection(CLOSE_POLICY_VIOLATION, "agent token revoked")
MAX_CACHED = 100_000

Lookup = Callable[[str], AgentIdentity | None]


def decide(identity: AgentIdentity | None) -> AgentIdentity | Rejection:
    """Pure: what a lookup result means for the session."""
    if identity is None:
        return INVALID_TOKEN
    if identity.revoked:
        return REVOKED_TOKEN
    return identity


class Authenticator:
    """Token -> identity, through ``lookup`` (run in a thread) and a TTL cache."""

    def __init__(self, lookup: Lookup, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, AgentIdentity]] = {}

    def cached(self, token: str) -> AgentIdentity | None:
        """The cached valid identity of ``token``, or None when absent or expired."""
        key = hash_token(token)
        hit = self._cache.get(key)
        if hit is None:
            return None
        expires, identity = hit
        if expires <= self._clock():
            del self._cache[key]
            return None
        return identity

    def cached_hashes(self) -> set[str]:
        """The token hashes of every cached identity (expired ones included)."""
        return set(self._cache)

    def forget(self, token_hashes: Iterable[str]) -> None:
        """Drop these token hashes from the cache: their next session start is looked up again."""
        for key in token_hashes:
            self._cache.pop(key, None)

    def remember(self, token: str, identity: AgentIdentity) -> None:
        if self._ttl_s <= 0:
            return
        now = self._clock()
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[hash_token(token)] = (now + self._ttl_s, identity)

    async def authenticate(self, token: str) -> AgentIdentity | Rejection:
        identity = self.cached(token)
        if identity is not None:
            return identity
        result = decide(await asyncio.to_thread(self._lookup, token))
        if isinstance(result, AgentIdentity):
            self.remember(token, result)
        return result
