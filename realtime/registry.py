"""The open sessions of one gateway: at most one per agent.

:meth:`SessionRegistry.add` registers a session and hands back the one it replaces (the
same agent's older session), which the gateway then closes with
:data:`~realtime.protocol.CLOSE_REPLACED`. Opening sessions of one agent take turns
(:meth:`SessionRegistry.opening`): from taking over the live state to registering, so
the session that owns the live state last is the one registered last. Across gateways
the live state's owner decides (:mod:`realtime.live_scripts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from storage.accounts import AgentIdentity

REPLACED_REASON = "replaced by a newer session of this agent"


class Registered(Protocol):
    @property
    def session_id(self) -> str: ...

    @property
    def identity(self) -> AgentIdentity: ...


S = TypeVar("S", bound=Registered)


@dataclass
class _Turns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


class SessionRegistry(Generic[S]):
    """The open sessions, by tenant (``by_tenant``: tenant -> its sessions) and by agent (one each)."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, set[S]] = {}
        self._by_agent: dict[tuple[str, str], S] = {}
        self._turns: dict[tuple[str, str], _Turns] = {}

    @asynccontextmanager
    async def opening(self, tenant: str, agent_id: str) -> AsyncIterator[None]:
        """Hold the agent's turn while one of its sessions opens (other openings wait)."""
        key = (tenant, agent_id)
        turns = self._turns.setdefault(key, _Turns())
        turns.waiting += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.waiting -= 1
            if turns.waiting == 0:
                del self._turns[key]

    def add(self, session: S) -> S | None:
        """Register ``session``; the agent's session it replaces (no longer registered), if any."""
        tenant, agent_id = session.identity.tenant, session.identity.agent_id
        previous = self._by_agent.get((tenant, agent_id))
        if previous is not None and previous is not session:
            self.remove(previous)
        else:
            previous = None
        self._by_agent[(tenant, agent_id)] = session
        self.by_tenant.setdefault(tenant, set()).add(session)
        return previous

    def remove(self, session: S) -> bool:
        """Unregister ``session``; False when it was not registered (a newer one replaced it)."""
        tenant, agent_id = session.identity.tenant, session.identity.agent_id
        if self._by_agent.get((tenant, agent_id)) is not session:
            return False
        del self._by_agent[(tenant, agent_id)]
        sessions = self.by_tenant[tenant]
        sessions.discard(session)
        if not sessions:
            del self.by_tenant[tenant]
        return True

    def current(self, tenant: str, agent_id: str) -> S | None:
        """The agent's registered session."""
        return self._by_agent.get((tenant, agent_id))

    def of_tenant(self, tenant: str) -> list[S]:
        return list(self.by_tenant.get(tenant, ()))

    def all(self) -> list[S]:
        return list(self._by_agent.values())

    def count(self) -> int:
        return len(self._by_agent)
