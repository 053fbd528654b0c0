"""The live page (Panel on a Bokeh server): who of the tenant is present, away or compromised.

One :class:`~dashboard.feed.LiveFeed` per server process follows Redis; every browser
session registers a listener and gets changes pushed into its document on the server's
event loop (``doc.add_next_tick_callback``), coalesced to one render per tick.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import zoneinfo
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import panel as pn
from bokeh.document import Document
from bokeh.server.server import Server
from tornado.ioloop import IOLoop

from core.config import ConfigError
from core.errors import OperatorError
from core.process import async_stop_on_signals
from core.settings import ServerSettings
from core.tls import is_loopback
from dashboard import view
from dashboard.feed import Listener, LiveFeed, LiveTable

log = logging.getLogger(__name__)

TITLE = "Telework Supporter — live"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class LivePage:
    """The page of one browser session, kept current by the shared feed.

    ``visible``: the agents whose rows are shown (the signed-in viewer's scope); None shows all.
    ``tz``: the zone times are shown in (the viewer's); None: the browser's once known, the
    server's local zone until then.
    """

    def __init__(
        self,
        feed: LiveFeed,
        visible: frozenset[str] | None = None,
        header_html: str | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.feed = feed
        self.visible = visible
        self.fixed_tz = tz is not None
        self.tz: tzinfo | None = tz
        self._doc: Document | None = None
        self._pending = False
        self._unsubscribe: Callable[[], None] | None = None
        self.ended = False
        stylesheets = [view.CSS]
        self.counts = pn.pane.HTML(sizing_mode="stretch_width", stylesheets=stylesheets)
        self.status = pn.pane.HTML(sizing_mode="stretch_width", stylesheets=stylesheets, margin=(0, 10))
        self.table = pn.pane.HTML(sizing_mode="stretch_width", stylesheets=stylesheets)
        header = pn.pane.HTML(
            header_html or f"<h1>{TITLE}</h1>",
            stylesheets=[view.CSS + "h1 { font-size: 22px; font-weight: 600; margin: 8px 0 4px; }"],
            sizing_mode="stretch_width",
        )
        self.layout = pn.Column(
            header, self.counts, self.status, self.table, sizing_mode="stretch_width", margin=(8, 24)
        )
        self.render()

    def attach(
        self, doc: Document, subscribe: Callable[[Listener], Callable[[], None]] | None = None
    ) -> None:
        """Follow the feed (through ``subscribe``, else its own) for as long as ``doc``'s session lives."""
        self._doc = doc
        self._unsubscribe = (subscribe or self.feed.subscribe)(self._on_change)
        doc.on_session_destroyed(lambda _ctx: self._leave())
        info = pn.state.browser_info
        if info is not None and not self.fixed_tz:
            info.param.watch(self._on_timezone, "timezone")

    def _leave(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_timezone(self, event: object) -> None:
        name = getattr(event, "new", None)
        try:
            self.tz = zoneinfo.ZoneInfo(name) if isinstance(name, str) and name else None
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            log.info("unknown browser time zone %r; showing server local time", name)
            self.tz = None
        self.render()

    def _on_change(self, _table: LiveTable) -> None:
        # Called on the server loop by the feed: schedule one render into this session's document.
        if self._doc is None or self._pending:
            return
        self._pending = True
        self._doc.add_next_tick_callback(self._render_scheduled)

    def _render_scheduled(self) -> None:
        self._pending = False
        self.render()

    def end(self, notice_html: str) -> None:
        """Stop following the feed and show only ``notice_html`` (the viewer may no longer see it)."""
        self.ended = True
        self._leave()
        self.layout.objects = [pn.pane.HTML(notice_html, sizing_mode="stretch_width")]

    def shown(self) -> LiveTable:
        """The rows of the feed this page shows (those of :attr:`visible`)."""
        table = self.feed.table
        if self.visible is None:
            return table
        return {agent: state for agent, state in table.items() if agent in self.visible}

    def render(self) -> None:
        """Draw the current table of the feed (nothing once the page has ended)."""
        if self.ended:
            return
        table = self.shown()
        now = datetime.now(UTC)
        self.counts.object = view.render_counts(table)
        connected = self.feed.connected
        self.status.object = view.render_status(len(table), connected, self.feed.tenant, now, self.tz)
        self.table.object = view.render_table(table, self.tz, now)


def page_factory(feed: LiveFeed) -> Callable[[], pn.viewable.Viewable]:
    """The Panel app function: one :class:`LivePage` per browser session."""

    def create() -> pn.viewable.Viewable:
        page = LivePage(feed)
        doc = pn.state.curdoc
        if doc is not None:
            page.attach(doc)
        return page.layout

    return create


def require_redis_url(settings: ServerSettings) -> str:
    """The Redis URL the live page follows; ConfigError if it is not set."""
    if not settings.redis_url:
        raise ConfigError(
            "TELEWORK_REDIS_URL",
            "the live dashboard needs a Redis URL (e.g. redis://127.0.0.1:6379/0); "
            "`telework up` starts an embedded Redis and sets it",
        )
    return settings.redis_url


def websocket_origins(host: str, port: int) -> list[str]:
    """Hosts whose pages may open the session WebSocket of a server bound to host:port."""
    if host in WILDCARD_HOSTS:
        return [f"*:{port}"]
    origins = [f"{host}:{port}"]
    if host in ("127.0.0.1", "localhost", "::1"):
        origins += [f"localhost:{port}", f"127.0.0.1:{port}"]
    return sorted(set(origins))


def _build_server(settings: ServerSettings, feed: LiveFeed) -> Server:
    """A Bokeh server for the page on the current loop, bound but not started."""
    server: Server = pn.serve(
        page_factory(feed),
        address=settings.dashboard_host,
        port=settings.dashboard_port,
        websocket_origin=websocket_origins(settings.dashboard_host, settings.dashboard_port),
        loop=IOLoop.current(),
        show=False,
        start=False,
        title=TITLE,
        verbose=False,
        location=False,
    )
    if settings.dashboard_port == 0:
        # Bound to a free port only now: allow the real host:port. BokehTornado exposes the
        # allow-list as a mutable set; the Server keeps its BokehTornado in ``_tornado``.
        bound = int(server.port or 0)
        server._tornado.websocket_origins.update(websocket_origins(settings.dashboard_host, bound))
    return server


async def _run(
    settings: ServerSettings,
    stopping: asyncio.Event,
    on_ready: Callable[[int, LiveFeed], None] | None = None,
) -> None:
    """Serve the page until ``stopping`` is set, then stop the server and the feed."""
    feed = LiveFeed(require_redis_url(settings), settings.dashboard_tenant)
    server = _build_server(settings, feed)
    feed.start()
    server.start()
    port = int(server.port or 0)
    log.info(
        "live dashboard on http://%s:%d/",
        settings.dashboard_host,
        port,
        extra={"tenant": settings.dashboard_tenant, "port": port},
    )
    try:
        if on_ready is not None:
            on_ready(port, feed)
        await stopping.wait()
    finally:
        server.stop()
        await feed.stop()
        log.info("live dashboard stopped", extra={"tenant": settings.dashboard_tenant})


def serve(settings: ServerSettings) -> None:
    """Serve the live page on dashboard_host:dashboard_port until SIGINT/SIGTERM. Blocking.

    This standalone page has no sign-in, so it serves loopback only; managers use the console's
    live board (``/dashboards/live`` of ``telework web``), behind the sign-in.
    """
    if not is_loopback(settings.dashboard_host):
        raise OperatorError(
            f"TELEWORK_DASHBOARD_HOST: the standalone live page has no sign-in and serves loopback only, "
            f"got {settings.dashboard_host!r}; the console's /dashboards/live is the page behind the sign-in"
        )
    require_redis_url(settings)

    async def main() -> None:
        with async_stop_on_signals(asyncio.Event()) as stopping:
            await _run(settings, stopping)

    asyncio.run(main())


@dataclass
class BackgroundDashboard:
    """A live page served from a thread (tests, embedding); ``stop()`` ends it cleanly."""

    port: int
    host: str
    feed: LiveFeed  # the one feed all sessions of this server share
    _loop: asyncio.AbstractEventLoop
    _stopping: asyncio.Event
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and its feed and wait for the thread to end."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"live dashboard thread still running {timeout}s after stop")


def start_background(settings: ServerSettings, timeout: float = 15.0) -> BackgroundDashboard:
    """Start the live page in a daemon thread (use dashboard_port=0 for a free port); returns once bound."""
    require_redis_url(settings)
    ready: Future[tuple[asyncio.AbstractEventLoop, asyncio.Event, int, LiveFeed]] = Future()

    def target() -> None:
        async def main() -> None:
            stopping = asyncio.Event()
            loop = asyncio.get_running_loop()
            await _run(settings, stopping, lambda port, feed: ready.set_result((loop, stopping, port, feed)))

        try:
            asyncio.run(main())
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.exception("live dashboard thread failed")

    thread = threading.Thread(target=target, name="live-dashboard", daemon=True)
    thread.start()
    loop, stopping, port, feed = ready.result(timeout)
    return BackgroundDashboard(port, settings.dashboard_host, feed, loop, stopping, thread)


__all__: list[str] = [
    "TITLE",
    "BackgroundDashboard",
    "LivePage",
    "page_factory",
    "require_redis_url",
    "serve",
    "start_background",
    "websocket_origins",
]
