"""AgentSession: one agent's WebSocket session with the gateway, reconnecting forever.

Thin I/O around the pure :class:`agent.outbox.Outbox` and :func:`agent.backoff.next_delay`:

* connect, send ``hello`` (token, agent version, protocol 1), read ``welcome`` and apply
  its settings and offered tasks; a later ``settings`` or ``tasks`` frame replaces them live;
* send a ``heartbeat`` every ``settings.heartbeat_interval_s`` (a new interval applies at
  once: the wait for the next heartbeat is re-measured from the last one);
* send queued events in ``events`` frames (up to ``batch_max`` per frame); a cumulative ``ack``
  (the events are in the server's event store) moves the flow-control window, and a cumulative
  ``stored`` (committed in the database) frees them from the outbox and the spool; after a
  reconnect every event not yet stored is sent again, in order (at-least-once: the server
  dedupes by tenant and event id). A gateway that does not send ``stored`` (its welcome says so)
  frees events on the ack;
* on any drop, reconnect after a capped exponential backoff with full jitter;
* close 1008 (bad or revoked token) or 1002 (unsupported protocol version) is fatal:
  the session stops with the reason logged and :attr:`AgentSession.fatal` set.

With a :class:`agent.spool.Spool` every event is written to disk before it is queued and
leaves it only when stored, so events also survive an agent crash or a PC restart (numbering
continues, unacked events are flushed in order on the next connection). The spool also holds
the evidence images (:meth:`AgentSession.add_evidence`), uploaded after the events in paced
binary chunks (:mod:`agent.uploader`); images overwritten while offline are reported on the
next connection as a ``gap`` event. Without a spool the outbox is in memory only.

Bandwidth: every message sent and received is metered (:mod:`agent.bandwidth`); completed
minutes are reported upstream as a ``usage`` event every ``usage_report_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from agent.backoff import next_delay
from agent.bandwidth import BandwidthMeter, Pacer
from agent.config import AGENT_VERSION
from agent.outbox import Outbox, events_frame
from agent.ports import Payload
from agent.session_parts import (
    KEEP_BACKING_OFF,
    AnyEvent,
    SessionOptions,
    frame_limit,
    is_fatal_close,
    produced,
    stamped,
    usage_payloads,
    with_seq,
)
from agent.spool import ImageAdded, Kind, Purpose, Spool
from agent.tls import describe
from agent.uploader import Uploader
from realtime.protocol import (
    CLOSE_REPLACED,
    MAX_FRAME_BYTES,
    MAX_SEQ,
    PROTOCOL_VERSION,
    Ack,
    AgentSettings,
    DutyEvent,
    Error,
    EventsStored,
    EvidenceRejected,
    EvidenceStored,
    GapEvent,
    GapPayload,
    Heartbeat,
    Hello,
    IncidentEvent,
    ProtocolError,
    SettingsPush,
    StateEvent,
    TaskEvent,
    TasksPush,
    UsageEvent,
    Welcome,
    encode,
    parse_server_frame,
)
from realtime.protocol.face_templates import TemplatePush

log = logging.getLogger(__name__)


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
        spool: Spool | None = None,
        on_stored: Callable[[int], None] | None = None,
    ) -> None:
        self.gateway_url = gateway_url
        self.options = options or SessionOptions()
        self.agent_version = agent_version
        self.on_ack = on_ack
        self.on_stored = on_stored
        self.name = name
        self.settings = AgentSettings()
        # where events without a time of their own take it (gap, usage, emit without ts): the
        # agent's one clock once the monitor is wired (agent/clock.py); the wall clock until then
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.spool = spool
        if spool is None:
            self.outbox = Outbox()
        else:
            self.outbox = Outbox.restore(spool.next_seq, spool.acked, spool.pending_events())
        self.meter = BandwidthMeter()
        self.pacer = Pacer(self.options.upload_kbps, self.options.upload_chunk_bytes)
        self.uploader: Uploader | None = None  # of the current connection
        self.images_stored = 0
        self.welcome: Welcome | None = None
        self.tasks: tuple[str, ...] | None = None  # offered by the server; None: it does not say
        self.on_template: Callable[[TemplatePush], object] | None = None  # agent/face_sync.py
        self.attempts = 0  # connection attempts
        self.connects = 0  # welcomes received
        self.fatal: str | None = None
        self.last_close_code: int | None = None  # of the last session the gateway closed
        self.connected = asyncio.Event()
        self._token = token
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._acked = asyncio.Condition()
        self._idle = asyncio.Event()  # set while no event waits to be sent on the connection
        self._uploads = asyncio.Event()  # set at each upload reply (and a fatal close)
        self._settings_changed = asyncio.Event()  # set when a settings frame arrives

    # ----------------------------------------------------------------- producer API

    def emit(
        self, payload: Payload, ts: datetime | None = None
    ) -> StateEvent | DutyEvent | TaskEvent | IncidentEvent:
        """Queue one event (next seq, new UUIDv7, ``ts`` or the session's clock) and return it.

        With a spool the event is on disk (fsynced) when this returns.
        """
        event = produced(payload, self.outbox.next_seq, ts or self.clock())
        self._queue(event)
        return event

    def _queue(self, event: AnyEvent, gap_count: int = 0) -> None:
        text = encode(event)
        if self.spool is not None:
            try:
                self.spool.add_event(event.seq, str(event.id), text, gap_count)
            except sqlite3.Error as exc:  # disk full, file removed: keep going, in memory only
                log.error(
                    "spool write failed; event kept in memory only",
                    extra={"agent": self.name, "seq": event.seq, "error": f"{type(exc).__name__}: {exc}"},
                )
        self.outbox.push(self.outbox.take_seq(), text)
        self._idle.clear()
        self._wake.set()

    def add_evidence(
        self, data: bytes, kind: Kind, purpose: Purpose, taken_at: datetime | None = None
    ) -> ImageAdded:
        """Keep an evidence image (JPEG bytes) in the spool's ring for upload; needs a spool."""
        if self.spool is None:
            raise RuntimeError("add_evidence: this session has no spool (pass spool=Spool(...))")
        added = self.spool.add_image(data, kind, purpose, taken_at)
        if self.uploader is not None:
            self.uploader.wake.set()
        return added

    async def wait_uploaded(self) -> None:
        """Wait until the spool holds no image but those rejected on this connection, or a fatal close."""
        while self.fatal is None and self.spool is not None:
            skipped = self.uploader.skip if self.uploader is not None else set()
            if all(e.sha256 in skipped for e in self.spool.ring_entries()):
                return
            self._uploads.clear()
            await self._uploads.wait()

    def _upload_reply(self, stored: bool) -> None:
        self.images_stored += stored
        self._uploads.set()

    @property
    def acked_seq(self) -> int:
        """Every event up to this seq is in the server's event store."""
        return self.outbox.acked

    @property
    def stored_seq(self) -> int:
        """Every event up to this seq is committed in the server's database."""
        return self.outbox.stored

    @property
    def last_seq(self) -> int:
        return self.outbox.next_seq - 1

    async def wait_acked(self, seq: int | None = None) -> None:
        """Wait until every event up to ``seq`` (default: all queued) is acked, or a fatal close."""
        target = self.last_seq if seq is None else seq
        async with self._acked:
            await self._acked.wait_for(lambda: self.outbox.acked >= target or self.fatal is not None)

    async def wait_stored(self, seq: int | None = None) -> None:
        """Wait until every event up to ``seq`` (default: all queued) is in the server's database,
        or a fatal close."""
        target = self.last_seq if seq is None else seq
        async with self._acked:
            await self._acked.wait_for(lambda: self.outbox.stored >= target or self.fatal is not None)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # ---------------------------------------------------------------------- runner

    async def run(self) -> None:
        """Connect, and reconnect after any drop, until stopped or refused for good."""
        attempt = 0
        if (refusal := self.options.tls.refusal(self.gateway_url)) is not None:  # agent/tls.py
            await self._set_fatal(refusal)
            return
        while not self._stop.is_set():
            welcomed = self.connects
            closed_with: int | None = None
            self.attempts += 1
            try:
                async with connect(
                    self.gateway_url,
                    open_timeout=self.options.open_timeout_s,
                    compression=None,
                    max_size=MAX_FRAME_BYTES,
                    ping_interval=None,
                    ssl=self.options.tls.ssl_for(self.gateway_url),
                ) as ws:
                    self.options.tls.check_peer(ws.transport)  # the pins, before the token is sent
                    await self._session(ws)
                    if self._stop.is_set():
                        return
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                reason = exc.rcvd.reason if exc.rcvd else ""
                self.last_close_code = closed_with = code
                if is_fatal_close(code):
                    await self._set_fatal(f"gateway closed the session with {code}: {reason}")
                    return
                if code == CLOSE_REPLACED:
                    log.warning(
                        "session replaced by a newer one of this agent; is another agent using this token?",
                        extra={"agent": self.name, "code": code, "reason": reason},
                    )
                else:
                    log.warning("session dropped", extra={"agent": self.name, "code": code, "reason": reason})
            except (OSError, TimeoutError, InvalidHandshake, ProtocolError) as exc:
                log.warning(
                    "cannot reach gateway",
                    extra={
                        "agent": self.name,
                        "url": self.gateway_url,
                        "error": describe(exc),
                    },
                )
            except InvalidURI as exc:
                await self._set_fatal(f"bad gateway URL: {exc}")
                return
            finally:
                self.connected.clear()
            if self.connects > welcomed and closed_with not in KEEP_BACKING_OFF:
                # the last connection worked: start the backoff afresh (not when it was closed to
                # push back or replaced: agents would otherwise reconnect as fast as they can)
                attempt = 0
            opts = self.options
            delay = next_delay(attempt, opts.backoff_base_s, opts.backoff_cap_s, random.random())
            attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    async def _set_fatal(self, reason: str) -> None:
        self.fatal = reason
        self._uploads.set()
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
        self.tasks = None if frame.tasks is None else tuple(frame.tasks)
        if frame.face_template is not None and self.on_template is not None:  # agent/face_sync.py
            self.on_template(frame.face_template)
        self.connects += 1
        self.outbox.rewind()
        if self.outbox.unsent:
            self._idle.clear()  # resend first: uploads wait
        self._after_welcome(frame)
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
            asyncio.create_task(self._usage_reports()),
            asyncio.create_task(self._stop.wait()),
        ]
        if self.spool is not None:
            self.uploader = Uploader(
                self.spool,
                partial(self._send_paced, ws),
                self._idle.wait,
                self.options.upload_chunk_bytes,
                self.options.upload_timeout_s,
                self._upload_reply,
                self.name,
            )
            tasks.append(asyncio.create_task(self.uploader.run()))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.uploader = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc

    def _after_welcome(self, welcome: Welcome) -> None:
        """A fresh spool (or an agent without one: at its first welcome, what it queued before is
        renumbered) continues after the server's last seq; overwritten images become a gap event."""
        spool = self.spool
        if spool is None:
            if welcome.last_seq >= MAX_SEQ:
                return
            if len(self.outbox) == 0 and self.outbox.next_seq <= welcome.last_seq:
                self.outbox.reserve(welcome.last_seq + 1)
            elif self.connects == 1 and self.outbox.renumber(welcome.last_seq + 1, with_seq):
                log.info("queued events renumbered after the server's last seq", extra={"agent": self.name})
            return
        if len(self.outbox) == 0 and welcome.last_seq >= self.outbox.next_seq:
            if welcome.last_seq >= MAX_SEQ:  # only a forged event can get there: numbering cannot go on
                log.error(
                    "the server's last seq of this agent is at the limit; numbering continues from the spool",
                    extra={"agent": self.name, "last_seq": welcome.last_seq},
                )
            else:
                spool.reserve(welcome.last_seq + 1)
                self.outbox.reserve(welcome.last_seq + 1)
        count = spool.overwritten
        if count > 0 and spool.gap_in_flight is None:
            self._queue(
                stamped(GapEvent, GapPayload(images_overwritten=count), self.outbox.next_seq, self.clock()),
                gap_count=count,
            )
            log.warning("overwritten images reported", extra={"agent": self.name, "images": count})

    async def _send(self, ws: ClientConnection, data: str) -> None:
        size = len(data.encode())
        self.meter.sent(size)
        self.pacer.charge(size)
        await ws.send(data)

    async def _send_paced(self, ws: ClientConnection, data: bytes) -> None:
        await self.pacer.pace(len(data))
        self.meter.sent(len(data))
        await ws.send(data)

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
            self.meter.received(len(raw) if isinstance(raw, bytes) else len(raw.encode()))
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
                if self.welcome is None or not self.welcome.stored_watermark:
                    self._release(frame.seq)
                async with self._acked:
                    self._acked.notify_all()
            elif isinstance(frame, EventsStored):
                self._release(frame.seq)
                self._wake.set()
                async with self._acked:
                    self._acked.notify_all()
            elif isinstance(frame, EvidenceStored | EvidenceRejected):
                if self.uploader is not None:
                    self.uploader.resolve(frame)
            elif isinstance(frame, SettingsPush):
                self.settings = frame.settings
                self._settings_changed.set()
                log.info("settings replaced", extra={"agent": self.name, **frame.settings.model_dump()})
            elif isinstance(frame, TemplatePush):  # the user's face template, from the server
                if self.on_template is not None:
                    self.on_template(frame)
            elif isinstance(frame, TasksPush):
                self.tasks = tuple(frame.tasks)
                log.info("offered tasks replaced", extra={"agent": self.name, "tasks": len(frame.tasks)})
            elif isinstance(frame, Error):
                self._log_unexpected(frame)

    def _release(self, seq: int) -> None:
        """Events up to ``seq`` are in the database: out of the outbox and the spool."""
        self.outbox.release(seq)
        if self.spool is not None:
            self.spool.ack(seq)
        if self.on_stored is not None:
            self.on_stored(seq)

    async def _sender(self, ws: ClientConnection) -> None:
        opts = self.options
        while True:
            await self._wake.wait()
            self._wake.clear()
            limit = frame_limit(opts, None if self.welcome is None else self.welcome.max_frame_bytes)
            while batch := self.outbox.next_batch(opts.batch_max, limit, opts.window):
                await self._send(ws, events_frame(batch))
            if self.outbox.unsent == 0:
                self._idle.set()

    async def _heartbeats(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._send(ws, encode(Heartbeat(ts=datetime.now(UTC))))
            sent = loop.time()
            # the interval in force now, not when the wait began: a settings frame wakes the wait
            while (remaining := sent + self.settings.heartbeat_interval_s - loop.time()) > 0:
                self._settings_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._settings_changed.wait()

    async def _usage_reports(self) -> None:
        period = self.options.usage_report_s
        if period <= 0:
            await asyncio.Event().wait()  # never: wait for the session to end
        while True:
            await asyncio.sleep(period)
            self.report_usage()

    def report_usage(self) -> list[UsageEvent]:
        """Emit the completed minutes of traffic as usage events (none when there was no traffic)."""
        events = []
        for payload in usage_payloads(self.meter.drain()):
            event = stamped(UsageEvent, payload, self.outbox.next_seq, self.clock())
            self._queue(event)
            events.append(event)
        return events
