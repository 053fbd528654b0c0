"""The gateway's sessions: agents' WebSocket frames -> Redis Streams and live state.

:mod:`realtime.app` serves this on Starlette/uvicorn (WebSocket ``/v1/agent``,
``GET /healthz``, ``GET /readyz``).

A session: the first frame must be a supported ``hello`` (else close 1002); its
token is checked (bad or revoked: close 1008); the agent is marked online in the
live state and gets a ``welcome`` with its user's effective agent settings
(:mod:`realtime.tenant_settings`: Redis cache, database on a miss; changes are pushed) and offered tasks
(:mod:`realtime.tenant_tasks`; changes are pushed as ``tasks`` frames). Each ``events``
frame's commands (an XADD per event with approximate MAXLEN, plus the live-state
HSET and PUBLISH) join the next group-committed pipeline
(:mod:`realtime.batcher`), and the frame is acked with its highest ``seq`` only
after that pipeline returned. ``heartbeat`` is answered
with a heartbeat. Bad frames get an ``error`` frame and the session stays up.
A session silent for ``heartbeat_timeout_s`` is closed with code 4000
(:data:`realtime.protocol.CLOSE_HEARTBEAT_TIMEOUT`); when Redis cannot store a
batch the session is closed with 1011 so the agent reconnects and resends.
Every session that ends marks its agent offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.settings import ServerSettings
from realtime import keys, live
from realtime.auth import Authenticator
from realtime.batcher import BatcherStopped, Command, WriteBatcher
from realtime.evidence_upload import EvidenceUploads
from realtime.protocol import (
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_STORE_UNAVAILABLE,
    Ack,
    Events,
    Heartbeat,
    LiveState,
    SettingsPush,
    StreamEvent,
    TasksPush,
    Welcome,
    WireModel,
    encode,
    is_evidence_frame,
    new_event_id,
)
from realtime.protocol.agent_settings import SettingsLayers, resolve
from realtime.session import (
    Rejection,
    close_reason,
    handle_frame,
    handle_hello,
    highest_seq,
)
from realtime.tenant_settings import Lookup, SettingsCache, SettingsListener, SettingsUnavailable
from realtime.tenant_tasks import TaskOffers
from storage.accounts import AgentIdentity

log = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 5.0  # a settings push to one slow session gives up after this


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreUnavailable(RuntimeError):
    """Redis did not take a batch; the session ends and the agent resends it."""


@dataclass(eq=False)
class Connection:
    """One open agent session."""

    websocket: WebSocket
    session_id: str
    identity: AgentIdentity
    live: LiveState

    @property
    def log_extra(self) -> dict[str, str]:
        return {
            "tenant": self.identity.tenant,
            "agent_id": self.identity.agent_id,
            "session_id": self.session_id,
        }

    async def send(self, frame: WireModel) -> None:
        await self.websocket.send_text(encode(frame))


class Gateway:
    """Sessions of one gateway process, and the settings listener that pushes to them."""

    def __init__(
        self,
        settings: ServerSettings,
        redis: aioredis.Redis,
        auth: Authenticator,
        offers: TaskOffers | None = None,
        settings_lookup: Lookup | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.auth = auth
        self.offers = offers  # None: welcomes say nothing about tasks
        self.sessions: dict[str, set[Connection]] = {}
        # tenant agent settings: Redis cache, the database on a miss (None: defaults on a miss)
        self.agent_settings = SettingsCache(redis, settings_lookup)
        self.settings_listener = SettingsListener(redis, self.push_layers, self.push_tasks)
        self.subscribed = self.settings_listener.subscribed  # set while the subscription is live
        self.writer = WriteBatcher(redis)
        self.evidence = EvidenceUploads(settings)  # binary evidence chunks (realtime/evidence_upload.py)

    # ------------------------------------------------------------ registry

    def _add(self, conn: Connection) -> None:
        self.sessions.setdefault(conn.identity.tenant, set()).add(conn)

    def _remove(self, conn: Connection) -> None:
        tenant_sessions = self.sessions.get(conn.identity.tenant)
        if tenant_sessions is not None:
            tenant_sessions.discard(conn)
            if not tenant_sessions:
                del self.sessions[conn.identity.tenant]

    def _still_connected(self, tenant: str, agent_id: str) -> bool:
        return any(c.identity.agent_id == agent_id for c in self.sessions.get(tenant, ()))

    def session_count(self) -> int:
        return sum(len(s) for s in self.sessions.values())

    # ------------------------------------------------------------- session

    async def run_session(self, websocket: WebSocket) -> None:
        await websocket.accept()
        session_id = str(new_event_id())
        try:
            raw = await self._next_frame(websocket)
        except TimeoutError:
            await _close(websocket, CLOSE_HEARTBEAT_TIMEOUT, "no hello frame within the heartbeat timeout")
            return
        if raw is None:
            return
        hello = handle_hello(raw, self.settings.max_frame_bytes)
        if isinstance(hello, Rejection):
            log.info("session rejected", extra={"session_id": session_id, "reason": hello.reason})
            await _close(websocket, hello.close_code, hello.reason)
            return
        identity = await self.auth.authenticate(hello.token)
        if isinstance(identity, Rejection):
            log.info("session refused", extra={"session_id": session_id, "reason": identity.reason})
            await _close(websocket, identity.close_code, identity.reason)
            return
        try:
            state = await live.mark_online(
                self.redis, identity.tenant, identity.agent_id, identity.user, utcnow()
            )
            agent_settings = await self.agent_settings.for_user(identity.tenant, identity.user_id)
            # no await between this and _add(): a change announced after the read reaches the session
            tasks = None if self.offers is None else await self.offers.get(identity.tenant)
        except (RedisError, OSError, SettingsUnavailable) as exc:
            log.error(
                "redis unavailable at session start", extra={"session_id": session_id, "error": str(exc)}
            )
            await _close(websocket, CLOSE_STORE_UNAVAILABLE, f"event store unavailable: {exc}")
            return
        conn = Connection(websocket, session_id, identity, state)
        self._add(conn)
        log.info("session open", extra={**conn.log_extra, "agent_version": hello.agent_version})
        try:
            await conn.send(
                Welcome(
                    session_id=session_id,
                    tenant=identity.tenant,
                    agent_id=identity.agent_id,
                    server_time=utcnow(),
                    settings=agent_settings,
                    last_seq=state.last_seq,
                    tasks=tasks,
                )
            )
            await self._serve(conn)
        except WebSocketDisconnect:
            pass
        except StoreUnavailable as exc:
            await _close(websocket, CLOSE_STORE_UNAVAILABLE, str(exc))
        finally:
            self._remove(conn)
            self.evidence.forget(session_id)
            await self._went_away(conn)

    async def _went_away(self, conn: Connection) -> None:
        log.info("session closed", extra=conn.log_extra)
        if self._still_connected(conn.identity.tenant, conn.identity.agent_id):
            return  # the agent already has a newer session on this gateway
        try:
            conn.live = await live.mark_offline(self.redis, conn.live, utcnow())
        except (RedisError, OSError) as exc:
            log.error("could not mark agent offline", extra={**conn.log_extra, "error": str(exc)})

    async def _next_frame(self, websocket: WebSocket) -> str | bytes | None:
        """The next frame's data; None when the peer closed; TimeoutError when it stays silent."""
        async with asyncio.timeout(self.settings.heartbeat_timeout_s):
            message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def _serve(self, conn: Connection) -> None:
        limit = self.settings.max_frame_bytes
        while True:
            try:
                raw = await self._next_frame(conn.websocket)
            except TimeoutError:
                timeout_s = self.settings.heartbeat_timeout_s
                log.info("heartbeat timeout", extra={**conn.log_extra, "timeout_s": timeout_s})
                await _close(
                    conn.websocket,
                    CLOSE_HEARTBEAT_TIMEOUT,
                    f"heartbeat timeout: no frame for {self.settings.heartbeat_timeout_s:g}s",
                )
                return
            if raw is None:
                return
            if is_evidence_frame(raw):
                ident = conn.identity
                reply = await self.evidence.receive(conn.session_id, ident.tenant, ident.agent_id, raw)
                if reply is not None:
                    await conn.send(reply)
                continue
            frame = handle_frame(raw, limit)
            if isinstance(frame, Events):
                await self._store(conn, frame)
            elif isinstance(frame, Heartbeat):
                await self._refresh(conn)
                await conn.send(Heartbeat(ts=utcnow()))
            else:
                log.info(
                    "bad frame",
                    extra={**conn.log_extra, "code": frame.code, "field": frame.field, "why": frame.message},
                )
                await conn.send(frame)

    async def _refresh(self, conn: Connection) -> None:
        """A heartbeat: move ``last_seen`` in the stored live state (no publish), for the reaper."""
        conn.live = conn.live.model_copy(update={"last_seen": utcnow()})
        command = ("HSET", keys.live_hash(conn.identity.tenant), conn.identity.agent_id, encode(conn.live))
        try:
            await self.writer.submit([command])
        except (RedisError, OSError, BatcherStopped) as exc:
            raise StoreUnavailable(close_reason(f"event store unavailable: {exc}")) from exc

    async def _store(self, conn: Connection, frame: Events) -> None:
        """XADD every event and update the live state in the next shared pipeline; then ack."""
        now = utcnow()
        tenant, agent_id = conn.identity.tenant, conn.identity.agent_id
        stream = keys.events_stream(tenant)
        maxlen = self.settings.stream_maxlen
        new_live = live.fold(conn.live, frame.events, now)
        commands: list[Command] = []
        for event in frame.events:
            entry = StreamEvent.model_construct(
                tenant=tenant,
                agent_id=agent_id,
                session_id=conn.session_id,
                received_at=now,
                event=event,
            )
            commands.append(("XADD", stream, "MAXLEN", "~", maxlen, "*", keys.ENTRY_FIELD, encode(entry)))
        if new_live is not conn.live:
            commands.extend(live.commands(new_live))
        try:
            await self.writer.submit(commands)
        except (RedisError, OSError, BatcherStopped) as exc:
            log.error("events not stored", extra={**conn.log_extra, "error": str(exc)})
            raise StoreUnavailable(close_reason(f"event store unavailable: {exc}")) from exc
        conn.live = new_live
        await conn.send(Ack(seq=highest_seq(frame.events)))

    # ------------------------------------------------------------ settings

    async def push_settings(self, tenant: str, frame: SettingsPush | TasksPush) -> int:
        """Send ``frame`` to every open session of ``tenant``; returns how many got it."""
        conns = list(self.sessions.get(tenant, ()))
        results = await asyncio.gather(
            *(asyncio.wait_for(c.send(frame), PUSH_TIMEOUT_S) for c in conns), return_exceptions=True
        )
        failed = sum(1 for r in results if isinstance(r, BaseException))
        extra = {"tenant": tenant, "frame": frame.type, "sessions": len(conns), "failed": failed}
        log.info("frame pushed to sessions", extra=extra)
        return len(conns) - failed

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
        conns = list(self.sessions.get(tenant, ()))
        frames = [SettingsPush(settings=resolve(layers, c.identity.user_id).settings) for c in conns]
        results = await asyncio.gather(
            *(asyncio.wait_for(c.send(f), PUSH_TIMEOUT_S) for c, f in zip(conns, frames, strict=True)),
            return_exceptions=True,
        )
        failed = sum(1 for r in results if isinstance(r, BaseException))
        extra = {"tenant": tenant, "frame": "settings", "sessions": len(conns), "failed": failed}
        log.info("frame pushed to sessions", extra=extra)
        return len(conns) - failed

    async def push_tasks(self, tenant: str, frame: TasksPush) -> int:
        """A tenant's task list changed: remember it for new welcomes and push it to open sessions."""
        if self.offers is not None:
            self.offers.announced(tenant, frame.tasks)
        return await self.push_settings(tenant, frame)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.close(code, close_reason(reason))


# ------------------------------------------------------------------ app
