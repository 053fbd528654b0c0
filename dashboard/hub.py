"""One :class:`~dashboard.feed.LiveFeed` per tenant in a web process, shared by the pages of that tenant.

A page asks the hub for its tenant's feed (:meth:`FeedHub.subscribe`); the first page of a tenant
starts the feed (it loads the tenant's live hash once, then follows its channel), the last page to
go stops it after :data:`LINGER_S` (a reload does not restart it). Must be used on the event loop the
pages run on (the web server's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from dashboard.feed import Listener, LiveFeed

log = logging.getLogger(__name__)

LINGER_S = 30.0  # a feed without pages is stopped this long after its last page went


class FeedHub:
    """The live feeds of one web process, one per tenant with an open page."""

    def __init__(self, redis_url: Callable[[], str], linger_s: float = LINGER_S) -> None:
        self.redis_url = redis_url  # asked when a feed starts (the URL a running `up` published may change)
        self.linger_s = linger_s
        self._feeds: dict[str, LiveFeed] = {}
        self._stops: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def feed(self, tenant: str) -> LiveFeed:
        """The tenant's feed, started if it is not running."""
        found = self._feeds.get(tenant)
        if found is None:
            found = self._feeds[tenant] = LiveFeed(self.redis_url(), tenant)
            found.start()
            log.info("live feed started", extra={"tenant": tenant})
        pending = self._stops.pop(tenant, None)
        if pending is not None:
            pending.cancel()
        return found

    def subscribe(self, tenant: str, listener: Listener) -> tuple[LiveFeed, Callable[[], None]]:
        """Follow ``tenant``'s feed; returns it and the function that stops following."""
        feed = self.feed(tenant)
        unsubscribe = feed.subscribe(listener)

        def leave() -> None:
            unsubscribe()
            if feed.listener_count == 0 and tenant not in self._stops:
                loop = asyncio.get_running_loop()
                self._stops[tenant] = loop.call_later(self.linger_s, self._stop_idle, tenant)

        return feed, leave

    @property
    def tenants(self) -> frozenset[str]:
        """Tenants whose feed is running."""
        return frozenset(self._feeds)

    def _stop_idle(self, tenant: str) -> None:
        self._stops.pop(tenant, None)
        feed = self._feeds.get(tenant)
        if feed is None or feed.listener_count:
            return
        del self._feeds[tenant]
        task = asyncio.get_running_loop().create_task(feed.stop(), name=f"live-feed-stop-{tenant}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("live feed stopped: no page follows it", extra={"tenant": tenant})

    async def close(self) -> None:
        """Stop every feed."""
        for handle in self._stops.values():
            handle.cancel()
        self._stops.clear()
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.stop()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
