"""The Panel/Bokeh dashboards inside the console's web application, behind the console's sign-in.

The dashboards are Panel applications served by ``bokeh_fastapi`` (what ``panel.io.fastapi`` builds
on) in a FastAPI application of their own, mounted at :data:`PREFIX` of the console's: one address,
one sign-in, one session cookie. Bokeh's routes sit under the prefix (its JS and CSS at
``/dashboards/static/...``, served from the installed packages: no CDN).

:class:`SignedInOnly` guards everything under the prefix, HTTP and WebSocket alike, with the
console's own :func:`web.deps.caller` (the same cookie, expiry, and principal read afresh):

- a page request without a valid session is redirected to ``/signin`` (303);
- a WebSocket without one is refused before the handshake completes (HTTP 403), and so is one
  from another origin (``Origin`` must name the ``Host``), or one whose Bokeh session was not
  created by the same console session: a Bokeh session id is bound to the console session that
  opened the page (session ids are also signed with a key of this process);
- ``bokeh-session-id`` in a page's query is dropped, so no one can attach to another's session.

Each live page shows the signed-in user's tenant, and of it only the agents of the users their
scope lets them see (:meth:`web.scope.Scope.visible_agents`, the one place queries are scoped); its
rows come from Redis (:class:`dashboard.hub.FeedHub`, one feed per tenant), not the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import zoneinfo
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import tzinfo
from html import escape
from urllib.parse import parse_qsl, urlencode, urlsplit

import panel as pn
import panel.io.fastapi
from bokeh.util.token import get_session_id
from bokeh_fastapi import BokehFastAPI
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from panel.io.application import build_applications
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from core.process import redis_url
from dashboard.hub import FeedHub
from dashboard.live import LivePage
from web import keys
from web.console import Console
from web.deps import Problem, caller
from web.i18n import language_for, text
from web.pages import signin_location  # back to the board after signing in
from web.principal import Principal, load_principal
from web.scope import Scope
from web.sessions import SessionRecord, expiry, token_hash

log = logging.getLogger(__name__)

PREFIX = "/dashboards"
LIVE = "/live"  # the live board, at PREFIX + LIVE
LIVE_URL = PREFIX + LIVE
FIRST_LOAD_S = 2.0  # a page waits at most this long for its tenant's feed to load before it is drawn
SESSION_QUERY = frozenset({"bokeh-session-id", "bokeh_session_id"})
REFUSED = 1008  # WebSocket close code (policy violation); before the handshake it is an HTTP 403
# BokehJS runs the page's inline embedding script, evaluates code and inserts inline styles; Panel's
# module shims load modules the page made itself as blob: URLs. Nothing from another origin.
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
}


STATIC = PREFIX + "/static/"  # BokehJS and Panel's bundles (their URLs carry a version)
STATIC_CACHE = "private, max-age=86400"  # 2 MB of JS need not be fetched again for every page


def headers_for(path: str) -> dict[str, str]:
    """Pure: the headers of an answer under :data:`PREFIX` that replace the console's (CSP, caching)."""
    if path.startswith(STATIC):
        return {**HEADERS, "cache-control": STATIC_CACHE}
    return dict(HEADERS)


@dataclass(frozen=True)
class Viewer:
    """Who opens a dashboard page: the principal, their console session, the agents they may see."""

    principal: Principal
    session: str  # sha256 of the console session token
    visible: frozenset[str]


@dataclass(frozen=True)
class OpenPage:
    """A live page of one Bokeh session, and the console session (sha256) that opened it."""

    session: str
    page: LivePage


_viewer: ContextVar[Viewer | None] = ContextVar("dashboard_viewer", default=None)


def without_session_id(query: bytes) -> bytes:
    """Pure: a query string without ``bokeh-session-id`` (a page never attaches to a given session)."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k not in SESSION_QUERY]
    return query if len(kept) == len(pairs) else urlencode(kept).encode("latin-1")


def same_origin(origin: str | None, host: str | None) -> bool:
    """Pure: whether a WebSocket's ``Origin`` header names the ``Host`` it was sent to."""
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def bokeh_session_of(subprotocols: list[str]) -> str | None:
    """Pure: the Bokeh session id in a WebSocket's ``["bokeh", token]`` subprotocols, else None."""
    if len(subprotocols) != 2 or subprotocols[0] != "bokeh":
        return None
    try:
        return str(get_session_id(subprotocols[1]))
    except Exception:  # not a token at all (bokeh raises several kinds)
        return None


def zone(name: str) -> tzinfo | None:
    """Pure: the time zone ``name`` (the viewer's), None (the server's local zone) if unknown here."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class Dashboards:
    """The dashboards of one console application: the Bokeh application, the feeds, the sessions' owners."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.hub = FeedHub(lambda: redis_url(console.settings, "the live board"))
        self.pages: dict[str, OpenPage] = {}  # by Bokeh session id: bound to the console session that made it
        self.board = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        apps = build_applications({LIVE: self._live_page}, title="Telework Supporter", location=False)
        self.bokeh = BokehFastAPI(
            apps,
            app=self.board,
            prefix=PREFIX,
            websocket_origins=["*"],  # the origin is checked by SignedInOnly: it must be this host
            secret_key=secrets.token_urlsafe(32).encode(),
            sign_sessions=True,
        )
        self._cleanup: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()  # running sign-in re-checks of open boards

    def _live_page(self) -> pn.viewable.Viewable:
        viewer = _viewer.get()
        doc = pn.state.curdoc
        if viewer is None or doc is None or doc.session_context is None:  # never drawn without a viewer
            return pn.pane.HTML("<p>Not signed in.</p>")
        p = viewer.principal
        session_id = str(doc.session_context.id)

        def forget(_ctx: object) -> None:
            self.pages.pop(session_id, None)

        doc.on_session_destroyed(forget)
        lang = language_for(p.language, None, None)
        header = (
            f'<nav class="dash-nav"><a href="/users">{escape(text("dash_console", lang))}</a></nav>'
            f"<h1>{escape(text('dash_live', lang))}</h1>"
        )
        page = LivePage(self.hub.feed(p.tenant), viewer.visible, header_html=header, tz=zone(p.time_zone))
        page.attach(doc, lambda listener: self.hub.subscribe(p.tenant, listener)[1])
        self.pages[session_id] = OpenPage(viewer.session, page)

        def end() -> None:
            page.end(f'<p id="live-ended">{escape(text("dash_ended", lang))}</p>')

        async def check() -> None:
            if session_id in self.pages and not await self.still_signed_in(viewer.session):
                self.pages.pop(session_id, None)
                doc.add_next_tick_callback(end)  # documents change under their lock, on their tick
                log.info("live board ended: its console session is over", extra={"user_id": p.user_id})

        def recheck() -> None:  # a sign-out, expiry or disabled user ends an open board too
            if not any(t.get_name() == session_id for t in self._checks):
                task = asyncio.get_running_loop().create_task(check(), name=session_id)
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)

        doc.add_periodic_callback(recheck, int(self.console.settings.web_dashboard_recheck_s * 1000))
        doc.title = f"{text('dash_live', lang)} · {p.tenant} — {text('app', lang)}"  # tenant: one per sign-in
        return page.layout

    async def still_signed_in(self, session: str) -> bool:
        """Whether the console session (sha256 ``session``) is still live and its user still may sign in:
        not ended, not past its absolute life (watching a board is not idling), user enabled."""
        c = self.console
        raw = await c.redis.hgetall(keys.session_key(session))
        record = SessionRecord.parse({str(k): str(v) for k, v in raw.items()}) if raw else None
        if (
            record is None
            or expiry(record, c.clock(), float("inf"), c.settings.web_session_absolute_s) != "live"
        ):
            return False
        return await run_in_threadpool(load_principal, c.engine, record) is not None

    def start(self) -> None:
        """Start Bokeh's clean-up of closed sessions on the running loop (once)."""
        if self._cleanup is None:
            self._cleanup = asyncio.get_running_loop().create_task(self.bokeh._cleanup_loop())

    async def close(self) -> None:
        """Stop the clean-up and every feed (the web process ends)."""
        task, self._cleanup = self._cleanup, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for check in list(self._checks):
            check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await check
        await self.hub.close()


class SignedInOnly:
    """ASGI: everything under the dashboards' prefix for a signed-in console session only."""

    def __init__(self, dashboards: Dashboards) -> None:
        self.dashboards = dashboards
        self.app: ASGIApp = dashboards.board

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.dashboards.start()
        scope = dict(scope, query_string=without_session_id(scope.get("query_string", b"")))
        probe = Request(dict(scope, type="http", method=scope.get("method", "GET")))
        try:
            who = await caller(probe, self.dashboards.console)
        except Problem as refused:
            log.info("dashboard request refused", extra={"path": scope.get("path"), "why": refused.code})
            await self._refuse(kind, scope, receive, send)
            return
        digest = token_hash(who.token)
        if kind == "websocket":
            opened = self.dashboards.pages.get(bokeh_session_of(list(scope.get("subprotocols", []))) or "")
            owner = None if opened is None else opened.session
            if not same_origin(probe.headers.get("origin"), probe.headers.get("host")) or owner != digest:
                log.warning("dashboard WebSocket refused", extra={"user_id": who.principal.user_id})
                await send({"type": "websocket.close", "code": REFUSED})
                return
        route = scope["path"].removeprefix(scope.get("root_path", ""))
        visible: frozenset[str] = frozenset()
        if kind == "http" and route == LIVE:
            visible = await run_in_threadpool(
                Scope(who.principal, self.dashboards.console.engine).visible_agents
            )
            feed = self.dashboards.hub.feed(who.principal.tenant)
            with contextlib.suppress(TimeoutError):  # drawn "reconnecting" when Redis is slow; fills in live
                await asyncio.wait_for(feed.loaded.wait(), FIRST_LOAD_S)
        reset = _viewer.set(Viewer(who.principal, digest, visible))
        try:
            await self.app(scope, receive, send)
        finally:
            _viewer.reset(reset)

    async def _refuse(self, kind: str, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if kind == "websocket":
            await send({"type": "websocket.close", "code": REFUSED})
            return
        asset = str(scope.get("path", "")).startswith(STATIC)  # only a page is worth coming back to
        where = "/signin" if asset else signin_location(Request(scope))
        await RedirectResponse(where, status_code=303)(scope, receive, send)


def mount(app: FastAPI, console: Console) -> Dashboards:
    """Serve the dashboards under :data:`PREFIX` of the console ``app``, behind its sign-in."""
    dashboards = Dashboards(console)
    app.state.dashboards = dashboards
    app.mount(PREFIX, SignedInOnly(dashboards), name="dashboards")
    return dashboards


async def close_mounted(app: object) -> None:
    """Stop the dashboards :func:`mount` put into ``app`` (their feeds), if it has any."""
    found = getattr(getattr(app, "state", None), "dashboards", None)
    if isinstance(found, Dashboards):
        await found.close()
