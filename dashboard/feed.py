"""Live state of one tenant's agents, fed from Redis (hash + pub/sub), shared by all views.

Pure core: :func:`merge` (which update wins), :func:`reconnect_delay` (backoff),
:func:`decode` (a record, or the reason it is skipped: never an exception; a record of an
older or newer release with a field this one cannot read keeps the rest, the field at its
default) and :func:`removal` (a :class:`~realtime.protocol.LiveRemoved` on the channel: the
agent's row goes, its user was erased). Thin I/O around it: :class:`LiveFeed` loads
``keys.live_hash(tenant)`` once, then follows ``keys.live_channel(tenant)`` and calls its
listeners with every new table. One feed per tenant per server process; browser sessions
register listeners, they never touch Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime import keys
from realtime.protocol import LiveRemoved, LiveState, ProtocolError, load_object, parse_record

log = logging.getLogger(__name__)

LiveTable = Mapping[str, LiveState]
Listener = Callable[[LiveTable], None]

RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0
MAX_RECORD_BYTES = 64 * 1024  # a live state is well under 1 KiB; a larger value is not one
# Fields a record can do without (each has a default): one that cannot be read is dropped.
OPTIONAL_FIELDS = frozenset(
    n for n, f in LiveState.model_fields.items() if not f.is_required() and n not in ("type", "v")
)


# ---------------------------------------------------------------------- pure core


def is_newer(update: LiveState, held: LiveState | None) -> bool:
    """Whether ``update`` may replace ``held``: not older by (last_seq, last_seen)."""
    if held is None:
        return True
    return (update.last_seq, update.last_seen) >= (held.last_seq, held.last_seen)


def merge(table: Mapping[str, LiveState], update: LiveState) -> dict[str, LiveState]:
    """A new table with ``update`` applied, unless it is older than the state held for its agent."""
    merged = dict(table)
    if is_newer(update, table.get(update.agent_id)):
        merged[update.agent_id] = update
    return merged


def reconnect_delay(failures: int, first: float = RECONNECT_FIRST_S, cap: float = RECONNECT_MAX_S) -> float:
    """Seconds to wait before reconnect attempt number ``failures`` (1, 2, ...): doubling, capped."""
    if failures < 1:
        return 0.0
    return float(min(cap, first * 2 ** (failures - 1)))


def salvage(raw: str | bytes) -> tuple[LiveState, tuple[str, ...]] | None:
    """A record whose only faults are in fields it can do without (an unknown state, a time that is
    out of range, a field of a newer release): the rest, and the names of the fields dropped."""
    try:
        data: dict[str, Any] = load_object(raw, MAX_RECORD_BYTES)
    except ProtocolError:
        return None
    dropped: list[str] = []
    for _ in range(len(data) + 1):
        try:
            return LiveState.model_validate(data), tuple(dropped)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not bad or any(n in LiveState.model_fields and n not in OPTIONAL_FIELDS for n in bad):
                return None
            for name in sorted(bad):
                data.pop(name, None)
                dropped.append(name)
    return None


def removal(raw: str | bytes, tenant: str) -> LiveRemoved | None:
    """The agent whose row goes (its live state was deleted: its user erased), when ``raw`` is a
    :class:`LiveRemoved` of ``tenant``; None for anything else (a live state, or unreadable)."""
    try:
        data = load_object(raw, MAX_RECORD_BYTES)
    except ProtocolError:
        return None
    if data.get("type") != "live_removed":
        return None
    try:
        removed: LiveRemoved = LiveRemoved.model_validate(data)
    except ValidationError as exc:
        log.warning("skipping malformed live removal", extra={"tenant": tenant, "error": str(exc)[:300]})
        return None
    return removed if removed.tenant == tenant else None


def decode(raw: str | bytes, tenant: str, source: str) -> LiveState | None:
    """A LiveState of ``tenant`` from ``raw``, or None (logged with the reason) if it is unusable."""
    try:
        state: LiveState = parse_record(raw, LiveState)
    except ProtocolError as exc:
        kept = salvage(raw)
        if kept is None:
            log.warning(
                "skipping malformed live state: %s",
                exc.message,
                extra={"tenant": tenant, "source": source, "code": exc.code, "field": exc.field},
            )
            return None
        state, dropped = kept
        log.warning(
            "live state read without its unreadable fields: %s",
            ", ".join(dropped),
            extra={"tenant": tenant, "source": source, "agent_id": state.agent_id, "why": exc.message},
        )
    if state.tenant != tenant:
        log.warning(
            "skipping live state of another tenant: expected %r, got %r",
            tenant,
            state.tenant,
            extra={"tenant": tenant, "source": source, "agent_id": state.agent_id},
        )
        return None
    return state


# ------------------------------------------------------------------------- I/O


class LiveFeed:
    """Follows one tenant's live states in Redis and tells listeners about every change.

    ``start()`` and ``stop()`` must be called on the event loop the listeners should run on
    (the dashboard server's loop). Listeners are called with a read-only snapshot of the
    whole table; they must be quick and must not block (schedule work instead).
    """

    def __init__(self, redis_url: str, tenant: str, idle_timeout_s: float = 1.0) -> None:
        self.redis_url = redis_url
        self.tenant = tenant
        self.idle_timeout_s = idle_timeout_s
        self._table: dict[str, LiveState] = {}
        self._listeners: list[Listener] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.loaded = asyncio.Event()  # set once the hash has been read (again after reconnects)
        self.connections = 0  # successful (re)connections, for health and tests
        self.client_name = f"tw-live-feed-{tenant}"  # CLIENT LIST shows who is subscribed

    # ----------------------------------------------------------------- listeners

    @property
    def connected(self) -> bool:
        """Whether the table is live (hash loaded, channel followed)."""
        return self.loaded.is_set()

    @property
    def table(self) -> LiveTable:
        """The current table (read-only view)."""
        return MappingProxyType(self._table)

    @property
    def listener_count(self) -> int:
        """Number of registered listeners (one per open browser session)."""
        return len(self._listeners)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns a function that unregisters it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _publish(self) -> None:
        snapshot = MappingProxyType(dict(self._table))
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception as exc:  # one line, no traceback: a listener's fault never stops the feed
                error = f"{type(exc).__name__}: {exc}"
                log.error("live feed listener failed", extra={"tenant": self.tenant, "error": error})

    def _apply(self, state: LiveState) -> None:
        held = self._table.get(state.agent_id)
        merged = merge(self._table, state)
        if merged.get(state.agent_id) != held:
            self._table = merged
            self._publish()

    def _remove(self, agent_id: str) -> None:
        if self._table.pop(agent_id, None) is not None:
            self._publish()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start following Redis in a task of the running loop."""
        if self._task is not None:
            raise RuntimeError(f"live feed of tenant {self.tenant!r} is already started")
        self._stop.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"live-feed-{self.tenant}")

    async def stop(self) -> None:
        """Stop following Redis and wait for the task to end."""
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()  # wakes a pending read at once; _follow closes its connection
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                await self._follow()
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                if self.loaded.is_set():
                    self.loaded.clear()
                    self._publish()  # views show that they are not live any more
                delay = reconnect_delay(failures)
                log.warning(
                    "live feed lost Redis, reconnecting in %.1fs: %s",
                    delay,
                    exc,
                    extra={"tenant": self.tenant, "failures": failures},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    async def _follow(self) -> None:
        # retries=0: redis-py would otherwise reconnect and resubscribe silently, and the
        # changes published while the connection was down would never reach the views.
        client = aioredis.Redis.from_url(
            self.redis_url,
            decode_responses=False,  # values are decoded by decode(): bytes that are not UTF-8 are skipped
            retry=Retry(NoBackoff(), 0),
            client_name=self.client_name,
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=15,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            # Subscribe before reading the hash so no change falls between the two;
            # merge() drops anything the hash already holds in a newer version.
            await pubsub.subscribe(keys.live_channel(self.tenant))
            await self._load(client)
            self.connections += 1
            while not self._stop.is_set():
                message = await pubsub.get_message(timeout=self.idle_timeout_s)
                if message is None or message.get("type") != "message":
                    continue
                gone = removal(message["data"], self.tenant)
                if gone is not None:
                    self._remove(gone.agent_id)
                    continue
                state = decode(message["data"], self.tenant, "channel")
                if state is not None:
                    self._apply(state)
        finally:
            try:
                await pubsub.aclose()
            finally:
                await client.aclose()

    async def _load(self, client: aioredis.Redis) -> None:
        raw = await client.hgetall(keys.live_hash(self.tenant))
        table: dict[str, LiveState] = {}
        for field, value in raw.items():
            name = field.decode(errors="replace") if isinstance(field, bytes) else str(field)
            state = decode(value, self.tenant, f"hash:{name}")
            if state is not None:
                table = merge(table, state)
        self._table = table
        self.loaded.set()
        log.info("live feed loaded %d agents", len(table), extra={"tenant": self.tenant})
        self._publish()
