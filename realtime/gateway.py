"""The gateway's sessions: agents' WebSocket frames -> Redis Streams and live state.

:mod:`realtime.app` serves this on Starlette/uvicorn (WebSocket ``/v1/agent``,
``GET /healthz``, ``GET /readyz``).

A session: the first frame must be a supported ``hello`` (else close 1002); its
token is checked (bad or revoked: close 1008); the agent is marked online in the
live state and gets a ``welcome`` with its user's effective agent settings
(:mod:`realtime.tenant_settings`: Redis cache, database on a miss; changes are pushed by
:mod:`realtime.pushes`) and offered tasks
(:mod:`realtime.tenant_tasks`; changes are pushed as ``tasks`` frames). Each ``events``
frame's commands (an XADD per event, never trimmed at XADD, plus the live-state
compare-and-set write) join the next group-committed pipeline
(:mod:`realtime.batcher`), and the frame is acked with its highest ``seq`` only
after that pipeline returned; ``stored`` follows once the database holds it
(:mod:`realtime.watermarks`; a full stream ends the session with 1013). ``heartbeat`` is answered
with a heartbeat. Bad frames get an ``error`` frame and the session stays up; an event with a
client timestamp outside the clock window goes to the tenant's dead-letter stream with the
reason, not its event stream, and the frame's other events are stored
(:func:`realtime.session.refused_times`); a frame above the size limit, text or binary,
closes the session with 1009; an unexpected error while handling one frame is one log line
and closes only that session, with 1011. Refusals before authentication are logged at most
once per reason every 10 s (:class:`core.logs.LogThrottle`).
A session silent for ``heartbeat_timeout_s`` is closed with code 4000
(:data:`realtime.protocol.CLOSE_HEARTBEAT_TIMEOUT`); when Redis cannot store a
batch the session is closed with 1011 so the agent reconnects and resends.
Every session that ends marks its agent offline, unless a newer session of the agent
owns its live state by then.

One session per agent (:mod:`realtime.registry`): a newer session replaces the older
one, closed with 4001 (:data:`realtime.protocol.CLOSE_REPLACED`); across gateways the
live state's owner decides (:mod:`realtime.live_scripts`: a session whose write finds
another owner is closed with 4001 too). Each session's frames are read at most at
``session_frames_per_s`` (:mod:`core.rate`); open sessions' tokens are re-checked
by :mod:`realtime.revocation`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.logs import LogThrottle
from core.rate import Bucket, take_tokens
from core.settings import ServerSettings
from realtime import keys, live
from realtime.auth import Authenticator
from realtime.batcher import BatcherStopped, Command, WriteBatcher
from realtime.connection import (
    Connection,
    SessionReplaced,
    StoreFull,
    StoreUnavailable,
    close_websocket,
    failed,
)
from realtime.evidence_upload import EvidenceUploads
from realtime.live_scripts import NOT_OWNER, REPUBLISHED, SCRIPTS
from realtime.protocol import (
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_REPLACED,
    CLOSE_STORE_UNAVAILABLE,
    CLOSE_TRY_AGAIN_LATER,
    Ack,
    Error,
    Events,
    Heartbeat,
    Hello,
    StreamEvent,
    Welcome,
    encode,
    is_evidence_frame,
    new_event_id,
)
from realtime.pushes import Pusher
from realtime.registry import REPLACED_REASON, SessionRegistry
from realtime.session import (
    Rejection,
    close_reason,
    handle_frame,
    handle_hello,
    highest_seq,
    oversize,
    refused_letter,
    refused_times,
)
from realtime.templates_push import TemplatePusher
from realtime.tenant_settings import Lookup, SettingsCache, SettingsListener, SettingsUnavailable
from realtime.tenant_tasks import TaskOffers
from realtime.watermarks import StoredReporter
from storage.accounts import AgentIdentity

log = logging.getLogger(__name__)

REFUSAL_LOG_WINDOW_S = 10.0  # at most one log line per refusal reason this often (then a count)


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.refusals = LogThrottle(REFUSAL_LOG_WINDOW_S)  # pre-authentication log lines
        self.offers = offers  # None: welcomes say nothing about tasks
        self.registry: SessionRegistry[Connection] = SessionRegistry()  # one session per agent
        self.sessions: dict[str, set[Connection]] = self.registry.by_tenant  # tenant -> its sessions
        # tenant agent settings: Redis cache, the database on a miss (None: defaults on a miss)
        self.agent_settings = SettingsCache(redis, settings_lookup)
        self.pusher = Pusher(lambda: self.sessions, self.agent_settings, offers)  # realtime/pushes.py
        self.settings_listener = SettingsListener(
            redis,
            self.pusher.push_layers,
            self.pusher.push_tasks,
            on_resubscribed=self.pusher.push_current,
        )
        self.subscribed = self.settings_listener.subscribed  # set while the subscription is live
        self.writer = WriteBatcher(redis, scripts=SCRIPTS)
        # `stored` watermarks and the streams' capacity (realtime/watermarks.py)
        self.watermarks = StoredReporter(
            redis, lambda: self.sessions, settings.stored_poll_s, settings.stream_maxlen
        )
        self.evidence = EvidenceUploads(settings)  # binary evidence chunks (realtime/evidence_upload.py)
        self.templates: TemplatePusher | None = None  # face templates (realtime/templates_push.py)

    # ------------------------------------------------------------ registry

    def session_count(self) -> int:
        return self.registry.count()  # realtime/registry.py

    # ------------------------------------------------------------- session

    async def _admit(self, websocket: WebSocket, session_id: str) -> tuple[Hello, AgentIdentity] | None:
        """Before authentication: a supported hello with a valid token, or None once the connection
        is closed. Each refusal is one log line, at most one per reason per REFUSAL_LOG_WINDOW_S."""
        try:
            try:
                raw = await self._next_frame(websocket)
            except TimeoutError:
                refusal = Rejection(CLOSE_HEARTBEAT_TIMEOUT, "no hello frame within the heartbeat timeout")
            else:
                if raw is None:
                    return None
                hello = handle_hello(raw, self.settings.max_frame_bytes)
                if isinstance(hello, Rejection):
                    refusal = hello
                else:
                    identity = await self.auth.authenticate(hello.token)
                    if not isinstance(identity, Rejection):
                        return hello, identity
                    refusal = identity
        except WebSocketDisconnect:
            return None
        except Exception as exc:  # the last line of defence, as for frames of an open session
            if self.refusals.admit(f"failed {type(exc).__name__}") is not None:
                await failed(websocket, {"session_id": session_id}, exc)
            else:
                await close_websocket(
                    websocket, CLOSE_STORE_UNAVAILABLE, f"internal error ({type(exc).__name__})"
                )
            return None
        suppressed = self.refusals.admit(f"{refusal.close_code} {refusal.kind or refusal.reason}")
        if suppressed is not None:
            extra = {"session_id": session_id, "code": refusal.close_code, "reason": refusal.reason}
            log.info("session refused", extra=extra | ({"suppressed": suppressed} if suppressed else {}))
        await close_websocket(websocket, refusal.close_code, refusal.reason)
        return None

    async def run_session(self, websocket: WebSocket) -> None:
        await websocket.accept()
        session_id = str(new_event_id())
        admitted = await self._admit(websocket, session_id)
        if admitted is None:
            return
        hello, identity = admitted
        if self.watermarks.is_full(identity.tenant):  # pushed back before any work: no welcome
            await close_websocket(websocket, CLOSE_TRY_AGAIN_LATER, "event store full; retry later")
            return
        # The agent's openings take turns from taking over its live state to registering, so the
        # session that owns the state last is registered last (realtime/registry.py).
        async with self.registry.opening(identity.tenant, identity.agent_id):
            try:
                state = await live.mark_online(
                    self.redis,
                    identity.tenant,
                    identity.agent_id,
                    identity.user,
                    utcnow(),
                    session_id,
                    hello.agent_version,
                )
                agent_settings = await self.agent_settings.for_user(identity.tenant, identity.user_id)
                # no await between this and add(): a change announced after the read reaches the session
                tasks = None if self.offers is None else await self.offers.get(identity.tenant)
            except (RedisError, OSError, SettingsUnavailable) as exc:
                log.error(
                    "redis unavailable at session start", extra={"session_id": session_id, "error": str(exc)}
                )
                await close_websocket(websocket, CLOSE_STORE_UNAVAILABLE, f"event store unavailable: {exc}")
                return
            budget = Bucket(self.settings.session_frame_burst, time.monotonic())
            conn = Connection(websocket, session_id, identity, state, budget=budget)
            replaced = self.registry.add(conn)
        log.info("session open", extra={**conn.log_extra, "agent_version": hello.agent_version})
        if replaced is not None:
            log.info("session replaced", extra={**replaced.log_extra, "by": session_id})
            await replaced.close(CLOSE_REPLACED, REPLACED_REASON)
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
                    stored_watermark=True,
                    max_frame_bytes=self.settings.max_frame_bytes,
                    face_template=None if self.templates is None else await self.templates.current(identity),
                )
            )
            await self._serve(conn)
        except WebSocketDisconnect:
            pass
        except StoreUnavailable as exc:
            await close_websocket(websocket, CLOSE_STORE_UNAVAILABLE, str(exc))
        except StoreFull as exc:
            await close_websocket(websocket, CLOSE_TRY_AGAIN_LATER, str(exc))
        except SessionReplaced as exc:
            log.info("session replaced on another gateway", extra=conn.log_extra)
            await conn.close(CLOSE_REPLACED, str(exc))
        finally:
            current = self.registry.remove(conn)
            self.evidence.forget(session_id)
            await self._went_away(conn, current)

    async def _went_away(self, conn: Connection, current: bool) -> None:
        """The session ended: mark the agent offline, unless a newer session replaced it (here, or
        on another gateway: the write is refused when the live state has another owner)."""
        log.info("session closed", extra={**conn.log_extra, "replaced": not current})
        if not current:
            return  # replaced by a newer session of the agent on this gateway
        try:
            gone = await live.mark_offline(self.redis, conn.live, utcnow(), self.writer)
        except (RedisError, OSError) as exc:
            log.error("could not mark agent offline", extra={**conn.log_extra, "error": str(exc)})
            return
        if gone is None:
            log.info("agent left online: a newer session owns its live state", extra=conn.log_extra)
        else:
            conn.live = gone

    async def _pace(self, conn: Connection) -> None:
        """Over its frame rate, a session's next frame is read only when the budget allows: the
        frames wait in the socket buffers and TCP pushes back on the agent (nothing is lost)."""
        if conn.budget is not None:
            rate, burst = self.settings.session_frames_per_s, self.settings.session_frame_burst
            conn.budget, wait = take_tokens(conn.budget, 1, time.monotonic(), rate, burst)
            if wait > 0:
                await asyncio.sleep(wait)  # pacing is waiting for time to pass, not for a condition

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
            await self._pace(conn)
            try:
                raw = await self._next_frame(conn.websocket)
            except TimeoutError:
                timeout_s = self.settings.heartbeat_timeout_s
                log.info("heartbeat timeout", extra={**conn.log_extra, "timeout_s": timeout_s})
                await close_websocket(
                    conn.websocket,
                    CLOSE_HEARTBEAT_TIMEOUT,
                    f"heartbeat timeout: no frame for {self.settings.heartbeat_timeout_s:g}s",
                )
                return
            if raw is None:
                return
            try:
                if not await self._handle(conn, raw, limit):
                    return
            except (WebSocketDisconnect, StoreUnavailable, StoreFull, SessionReplaced):
                raise  # the ends of a session that run_session turns into their close codes
            except Exception as exc:  # the last line of defence: one line, this session closed, 1011
                await failed(conn.websocket, conn.log_extra, exc)
                return

    async def _handle(self, conn: Connection, raw: str | bytes, limit: int) -> bool:
        """One frame of an open session; False when it closed the session (a frame above the limit)."""
        too_big = oversize(raw, limit)
        if too_big is None and is_evidence_frame(raw):
            ident = conn.identity
            reply = await self.evidence.receive(conn.session_id, ident.tenant, ident.agent_id, raw)
            if reply is not None:
                await conn.send(reply)
            return True
        frame = too_big or handle_frame(raw, limit)
        if isinstance(frame, Rejection):
            log.info("frame too large", extra={**conn.log_extra, "why": frame.reason})
            await close_websocket(conn.websocket, frame.close_code, frame.reason)
            return False
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
        return True

    async def _refresh(self, conn: Connection) -> None:
        """A heartbeat: move ``last_seen`` in the stored live state, for the reaper. Published only
        when the stored state is not what the session believes (reaped while alive, or gone); a
        state owned by a newer session ends this one (:class:`SessionReplaced`)."""
        believed = conn.live
        conn.live = believed.model_copy(update={"last_seen": utcnow()})
        try:
            (done,) = await self.writer.submit([live.refresh(believed, conn.live)])
        except (RedisError, OSError, BatcherStopped) as exc:
            raise StoreUnavailable(close_reason(f"event store unavailable: {exc}")) from exc
        if done == NOT_OWNER:
            raise SessionReplaced(REPLACED_REASON)
        if done == REPUBLISHED:
            log.info("live state republished", extra={**conn.log_extra, "online": conn.live.online})

    async def _store(self, conn: Connection, frame: Events) -> None:
        """XADD every event and update the live state in the next shared pipeline; then ack."""
        now = utcnow()
        window = self.settings.max_event_age_s, self.settings.max_clock_skew_s
        refused = refused_times(frame.events, now, *window)  # realtime/session.py
        tenant, agent_id = conn.identity.tenant, conn.identity.agent_id
        if self.watermarks.is_full(tenant):
            length, capacity = self.watermarks.lengths.get(tenant, 0), self.settings.stream_maxlen
            message = (
                f"the event store holds {length} events of this tenant (capacity {capacity}) that its "
                "consumers have not caught up with; keep the events and send them again later"
            )
            await conn.send(Error(code="store_full", message=message))
            raise StoreFull("event store full; retry later")
        stream = keys.events_stream(tenant)
        kept = [e for i, e in enumerate(frame.events) if i not in refused]
        new_live = live.fold(conn.live, kept, now)
        commands: list[Command] = []
        for index, event in enumerate(frame.events):
            entry = encode(
                StreamEvent.model_construct(
                    tenant=tenant, agent_id=agent_id, session_id=conn.session_id, received_at=now, event=event
                )
            )
            if index in refused:  # kept with its reason, never silently dropped (the agent frees it)
                letter = refused_letter(stream, entry, refused[index].message, now)
                commands.append(("XADD", keys.dead_letter_stream(tenant), "*", keys.ENTRY_FIELD, letter))
            else:
                commands.append(("XADD", stream, "*", keys.ENTRY_FIELD, entry))
        writes_live = new_live is not conn.live
        if writes_live:
            commands.append(live.write(new_live))  # last: its reply says whether this session owns it
        try:
            replies = await self.writer.submit(commands)
        except (RedisError, OSError, BatcherStopped) as exc:
            log.error("events not stored", extra={**conn.log_extra, "error": str(exc)})
            raise StoreUnavailable(close_reason(f"event store unavailable: {exc}")) from exc
        conn.live = new_live
        seq = highest_seq(frame.events)
        stored_ids = [r for i, r in enumerate(replies[: len(frame.events)]) if i not in refused]
        # a frame refused whole is done at once (in order: after the frames before it)
        conn.stored.added(str(stored_ids[-1]) if stored_ids else "0-0", seq)
        for error in refused.values():
            log.info("event refused", extra={**conn.log_extra, "code": error.code, "field": error.field})
        if refused:
            await conn.send(next(iter(refused.values())))
        await conn.send(Ack(seq=seq))
        if writes_live and replies[-1] == NOT_OWNER:
            raise SessionReplaced(REPLACED_REASON)  # the events are stored and acked; the state is not ours
