"""Frames the gateway pushes to open sessions: a tenant's agent settings and its task list.

:class:`realtime.tenant_settings.SettingsListener` hears a change and calls these; each frame goes
to every open session of the tenant at once, and a slow session gives up after
:data:`realtime.connection.SEND_TIMEOUT_S` without holding up the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from redis.exceptions import RedisError

from realtime.connection import SEND_TIMEOUT_S, Connection
from realtime.protocol import SettingsPush, TasksPush, WireModel
from realtime.protocol.agent_settings import SettingsLayers, resolve
from realtime.tenant_settings import SettingsCache, SettingsUnavailable
from realtime.tenant_tasks import TaskOffers

log = logging.getLogger(__name__)


class Pusher:
    """Pushes settings and task changes to the open sessions ``sessions()`` lists per tenant."""

    def __init__(
        self,
        sessions: Callable[[], Mapping[str, Iterable[Connection]]],
        agent_settings: SettingsCache,
        offers: TaskOffers | None,
    ) -> None:
        self.sessions = sessions
        self.agent_settings = agent_settings
        self.offers = offers

    def _open(self, tenant: str) -> list[Connection]:
        return list(self.sessions().get(tenant, ()))

    async def push_frame(self, tenant: str, frame: SettingsPush | TasksPush) -> int:
        """Send ``frame`` to every open session of ``tenant``; returns how many got it."""
        return await push(tenant, frame.type, [(c, frame) for c in self._open(tenant)])

    async def push_layers(self, tenant: str, layers: SettingsLayers | None) -> int:
        """A tenant's settings changed: send each open session its user's effective settings.

        ``layers`` None (an unreadable announcement): read them through the cache (database on a miss).
        """
        if layers is None:
            try:
                layers = await self.agent_settings.layers(tenant)
            except (RedisError, OSError, SettingsUnavailable) as exc:
                log.error("settings change not pushed", extra={"tenant": tenant, "error": str(exc)})
                return 0
        pushes = [
            (c, SettingsPush(settings=resolve(layers, c.identity.user_id).settings))
            for c in self._open(tenant)
        ]
        return await push(tenant, "settings", pushes)

    async def push_current(self) -> None:
        """After the subscription came back: every open tenant's settings and task list, read afresh
        and pushed again (a change announced while it was down would otherwise wait for the next
        reconnect)."""
        if self.offers is not None:
            self.offers.forget()
        for tenant in [t for t, conns in self.sessions().items() if conns]:
            await self.push_layers(tenant, None)
            if self.offers is not None and (tasks := await self.offers.get(tenant)) is not None:
                await self.push_frame(tenant, TasksPush(tasks=tasks))

    async def push_tasks(self, tenant: str, frame: TasksPush) -> int:
        """A tenant's task list changed: remember it for new welcomes and push it to open sessions."""
        if self.offers is not None:
            self.offers.announced(tenant, frame.tasks)
        return await self.push_frame(tenant, frame)


async def push(tenant: str, kind: str, pushes: Sequence[tuple[Connection, WireModel]]) -> int:
    """Send each frame to its session at once (each gives up after SEND_TIMEOUT_S); how many got it."""
    results = await asyncio.gather(
        *(asyncio.wait_for(c.send(f), SEND_TIMEOUT_S) for c, f in pushes), return_exceptions=True
    )
    failed_count = sum(1 for r in results if isinstance(r, BaseException))
    extra = {"tenant": tenant, "frame": kind, "sessions": len(pushes), "failed": failed_count}
    log.info("frame pushed to sessions", extra=extra)
    return len(pushes) - failed_count
