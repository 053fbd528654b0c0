"""AgentSession: one agent's WebSocket session with the gateway, reconnecting forever.

Thin I/O around the pure :class:`agent.outbox.Outbox` and :func:`agent.backoff.next_delay`:

* connect, send ``hello`` (token, agent version, protocol 1), read ``welcome`` and apply
  its settings; a later ``settings`` frame replaces them live;
* send a ``heartbeat`` every ``settings.heartbeat_interval_s``;
* send queued events in ``events`` frames (up to ``batch_max`` per frame), each kept in
  the outbox until a cumulative ``ack`` covers it; after a reconnect the unacked ones
  are sent again, in order (at-least-once: the worker dedupes by event id);
* on any drop, reconnect after a capped exponential backoff with full jitter;
* close 1008 (bad or revoked token) or 1002 (unsupported protocol version) is fatal:
  the session stops with the reason logged and :attr:`AgentSession.fatal` set.

The outbox is in memory only: events survive reconnects, not an agent restart.
The persistent on-disk spool (offline recording) is a later issue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agent.backoff import next_delay
from agent.config import AGENT_VERSION
from agent.outbox import Outbox, events_frame
from realtime.protocol import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    AgentSettings,
    DutyEvent,
    DutyPayload,
    Error,
    Heartbeat,
    Hello,
    IncidentEvent,
    IncidentPayload,
    ProtocolError,
    SettingsPush,
    StateEvent,
    StatePayload,
    TaskEvent,
    TaskPayload,
    Welcome,
    encode,
    new_event_id,
    parse_server_frame,
)

log = logging.getLogger(__name__)

FATAL_CLOSE_CODES = frozenset({CLOSE_POLICY_VIOLATION, CLOSE_PROTOCOL_ERROR})
Payload = StatePayload | DutyPayload | TaskPayload | IncidentPayload
_EVENT_OF: dict[type, type[StateEvent | DutyEvent | TaskEvent | IncidentEvent]] = {
    StatePayload: StateEvent,
    DutyPayload: DutyEvent,
    TaskPayload: TaskEvent,
    IncidentPayload: IncidentEvent,
}


@dataclass(frozen=True)
class SessionOptions:
    batch_max: int = 200
    max_frame_bytes: int = MAX_FRAME_BYTES - 1024
    window: int = 2000  # unacked events in flight at most
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    open_timeout_s: float = 10.0


def is_fatal_close(code: int | None) -> bool:
    """Close codes after which reconnecting cannot help."""
    return code in FATAL_CLOSE_CODES


class AgentSession:
    """One agent's session; ``await run()`` until :meth:`stop` or a fatal close."""

    def __init__(
        self,
        gateway_url: str,
        token: str,
        options: SessionOptions | None = None,
        agent_version: str = AGENT_VERSION,
        on_ack: Callable[[int], None] | None = None,
        name: str = "",
    ) -> None:
        self.gateway_url = gateway_url
        self.options = options or SessionOptions()
        self.agent_version = agent_version
        self.on_ack = on_ack
        self.name = name
        self.settings = AgentSettings()
        self.outbox = Outbox()
        self.welcome: Welcome | None = None
        self.attempts = 0  # connection attempts
        self.connects = 0  # welcomes received
        self.fatal: str | None = None
        self.connected = asyncio.Event()
        self._token = token
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._acked = asyncio.Condition()

    # ----------------------------------------------------------------- producer API

    def emit(
        self, payload: Payload, ts: datetime | None = None
    ) -> StateEvent | DutyEvent | TaskEvent | IncidentEvent:
        """Queue one event (next seq, new UUIDv7, ``ts`` or now in UTC) and return it."""
        kind = _EVENT_OF[type(payload)]
        event = kind(
            id=new_event_id(),
            seq=self.outbox.take_seq(),
            ts=ts or datetime.now(UTC),
            payload=payload,
        )
        self.outbox.push(event.seq, encode(event))
        self._wake.set()
        return event

    @property
    def acked_seq(self) -> int:
        return self.outbox.acked

    @property
    def last_seq(self) -> int:
        return self.outbox.next_seq - 1

    async def wait_acked(self, seq: int | None = None) -> None:
        """Wait until every event up to ``seq`` (default: all queued) is acked, or a fatal close."""
        target = self.last_seq if seq is None else seq
        async with self._acked:
            await self._acked.wait_for(lambda: self.outbox.acked >= target or self.fatal is not None)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # ---------------------------------------------------------------------- runner

    async def run(self) -> None:
        """Connect, and reconnect after any drop, until stopped or refused for good."""
        attempt = 0
        while not self._stop.is_set():
            welcomed = self.connects
            self.attempts += 1
            try:
                async with connect(
                    self.gateway_url,
                    open_timeout=self.options.open_timeout_s,
                    compression=None,
                    max_size=MAX_FRAME_BYTES,
                    ping_interval=None,
                ) as ws:
                    await self._session(ws)
                    if self._stop.is_set():
                        return
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                reason = exc.rcvd.reason if exc.rcvd else ""
                if is_fatal_close(code):
                    await self._set_fatal(f"gateway closed the session with {code}: {reason}")
                    return
                log.warning("session dropped", extra={"agent": self.name, "code": code, "reason": reason})
            except (OSError, TimeoutError, InvalidHandshake, ProtocolError) as exc:
                log.warning(
                    "cannot reach gateway",
                    extra={
                        "agent": self.name,
                        "url": self.gateway_url,
                        "error": f"{type(exc).__name__}: {exc}",
                    },
                )
            except InvalidURI as exc:
                await self._set_fatal(f"bad gateway URL: {exc}")
                return
            finally:
                self.connected.clear()
            if self.connects > welcomed:
                attempt = 0  # the last connection worked: start the backoff afresh
            opts = self.options
            delay = next_delay(attempt, opts.backoff_base_s, opts.backoff_cap_s, random.random())
            attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def _set_fatal(self, reason: str) -> None:
        self.fatal = reason
        log.error("session refused; not retrying", extra={"agent": self.name, "reason": reason})
        async with self._acked:
            self._acked.notify_all()

    async def _session(self, ws: ClientConnection) -> None:
        hello = Hello(token=self._token, agent_version=self.agent_version, protocol=PROTOCOL_VERSION)
        await ws.send(encode(hello))
        async with asyncio.timeout(self.options.open_timeout_s):
            while True:
                frame = parse_server_frame(await ws.recv())
                if isinstance(frame, Welcome):
                    break
                self._log_unexpected(frame)
        self.welcome = frame
        self.settings = frame.settings
        self.connects += 1
        self.outbox.rewind()
        self.connected.set()
        self._wake.set()
        log.info(
            "session open",
            extra={
                "agent": frame.agent_id,
                "tenant": frame.tenant,
                "session": frame.session_id,
                "resend": self.outbox.unsent,
            },
        )
        tasks = [
            asyncio.create_task(self._reader(ws)),
            asyncio.create_task(self._sender(ws)),
            asyncio.create_task(self._heartbeats(ws)),
            asyncio.create_task(self._stop.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc

    def _log_unexpected(self, frame: object) -> None:
        if isinstance(frame, Error):
            log.warning(
                "gateway error",
                extra={"agent": self.name, "code": frame.code, "error": frame.message, "field": frame.field},
            )
        else:
            log.debug(
                "frame ignored before welcome", extra={"agent": self.name, "frame": type(frame).__name__}
            )

    async def _reader(self, ws: ClientConnection) -> None:
        while True:
            raw = await ws.recv()  # raises ConnectionClosed with the close code
            try:
                frame = parse_server_frame(raw)
            except ProtocolError as exc:
                log.warning(
                    "bad frame from gateway",
                    extra={"agent": self.name, "code": exc.code, "error": exc.message, "field": exc.field},
                )
                continue
            if isinstance(frame, Ack):
                self.outbox.ack(frame.seq)
                self._wake.set()
                if self.on_ack is not None:
                    self.on_ack(frame.seq)
                async with self._acked:
                    self._acked.notify_all()
            elif isinstance(frame, SettingsPush):
                self.settings = frame.settings
                log.info("settings replaced", extra={"agent": self.name, **frame.settings.model_dump()})
            elif isinstance(frame, Error):
                self._log_unexpected(frame)

    async def _sender(self, ws: ClientConnection) -> None:
        opts = self.options
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self.outbox.next_batch(opts.batch_max, opts.max_frame_bytes, opts.window):
                await ws.send(events_frame(batch))

    async def _heartbeats(self, ws: ClientConnection) -> None:
        while True:
            await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
            await asyncio.sleep(self.settings.heartbeat_interval_s)
