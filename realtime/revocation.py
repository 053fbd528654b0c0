"""Revoked tokens reach open sessions: every gateway re-checks its sessions' tokens.

Every ``revocation_check_s`` the gateway looks up, in one bulk query
(:func:`storage.accounts.invalid_tokens`, run in a thread), the token hashes of its
open sessions and of its auth cache. Sessions whose token was revoked (or reissued, or
whose device is gone) are closed with 1008 ``agent token revoked`` and the hashes are
dropped from the auth cache (:meth:`realtime.auth.Authenticator.forget`), so the agent
cannot come straight back. A database that does not answer is logged and asked again
at the next round; it never closes a session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from realtime.auth import REVOKED_TOKEN, Authenticator
from storage.accounts import AgentIdentity

log = logging.getLogger(__name__)

InvalidLookup = Callable[[Collection[str]], set[str]]  # token hashes -> those no longer valid


class Revocable(Protocol):
    @property
    def identity(self) -> AgentIdentity: ...

    async def close(self, code: int, reason: str) -> None: ...


R = TypeVar("R", bound=Revocable)


def revoked_sessions(sessions: Iterable[R], invalid: Collection[str]) -> list[R]:
    """The sessions whose token is among ``invalid``. Pure."""
    return [s for s in sessions if s.identity.token_hash in invalid]


class RevocationCheck:
    """Closes the open sessions whose token stopped being valid; :meth:`run` every ``interval_s``."""

    def __init__(
        self,
        sessions: Callable[[], Iterable[Revocable]],
        auth: Authenticator,
        lookup: InvalidLookup,
        interval_s: float,
    ) -> None:
        self.sessions = sessions
        self.auth = auth
        self.lookup = lookup
        self.interval_s = interval_s
        self.rounds = 0  # completed lookups
        self.failures = 0  # lookups the database did not answer
        self.closed = 0  # sessions closed

    async def run_once(self) -> int:
        """One round: look the tokens up, close the revoked sessions; how many were closed."""
        hashes = {s.identity.token_hash for s in self.sessions()} | self.auth.cached_hashes()
        hashes.discard("")
        if not hashes:
            self.rounds += 1
            return 0
        invalid = await asyncio.to_thread(self.lookup, hashes)
        self.rounds += 1
        if not invalid:
            return 0
        self.auth.forget(invalid)
        doomed = revoked_sessions(self.sessions(), invalid)
        for session in doomed:
            ident = session.identity
            extra = {"tenant": ident.tenant, "agent_id": ident.agent_id}
            log.info("session of a revoked token closed", extra=extra)
        await asyncio.gather(*(s.close(REVOKED_TOKEN.close_code, REVOKED_TOKEN.reason) for s in doomed))
        self.closed += len(doomed)
        return len(doomed)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except (SQLAlchemyError, OSError) as exc:
                self.failures += 1
                log.warning(
                    "revocation check failed; sessions kept, retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_s": self.interval_s},
                )
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                continue
