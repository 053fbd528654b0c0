"""The live board inside the console (``/dashboards/live``): behind the sign-in, one tenant per
sign-in, each viewer's scope, Bokeh's WebSocket guarded too, assets and CSP of its own origin."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
import websockets
from bokeh.util.token import get_session_id
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session
from websockets.typing import Subprotocol

from dashboard.hub import FeedHub
from realtime import keys
from realtime.protocol import LiveState, encode
from storage.accounts import create_agent
from storage.models import User
from tests.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.waiting import wait_until
from tests.web_world import PASSWORD, World, make_world
from web import dashboards
from web.app import SECURITY_HEADERS
from web.dashboards import LIVE_URL, OpenPage, bokeh_session_of, same_origin, without_session_id

AGENTS = {  # agent -> (tenant, user login)
    "pc-alice": ("acme", "alice"),
    "pc-mika": ("acme", "mika"),
    "pc-wataru": ("acme", "wataru"),
    "pc-wendy": ("acme", "wendy"),
    "pc-bill": ("beta", "bill"),
}
SEES = {  # caller -> the rows of their live board
    "alice": {"pc-alice", "pc-mika", "pc-wataru", "pc-wendy", "pc-spare"},  # the tenant, unassigned too
    "mika": {"pc-mika", "pc-wataru"},  # herself and sales
    "wataru": {"pc-wataru"},
    "wendy": {"pc-wendy"},
    "bob": {"pc-bill"},
    "ben": {"pc-bill"},
    "bill": {"pc-bill"},
}
SCREENSHOTS = Path("/tmp/telework-screenshots")


def state(tenant: str, agent: str, presence: str = "present", seq: int = 1) -> LiveState:
    return LiveState(
        tenant=tenant, agent_id=agent, user=agent.removeprefix("pc-").title(), online=True, state=presence,
        on_duty=True, since=datetime.now(UTC), last_seen=datetime.now(UTC), last_seq=seq,
    )  # fmt: skip


async def put(redis: aioredis.Redis, live: LiveState) -> None:
    await redis.hset(keys.live_hash(live.tenant), live.agent_id, encode(live))
    await redis.publish(keys.live_channel(live.tenant), encode(live))


async def agents_live(world: World, redis: aioredis.Redis) -> None:
    """Every agent of :data:`AGENTS` registered and live; acme's ``pc-spare`` has no user."""
    for agent, (tenant, login) in AGENTS.items():
        create_agent(world.engine, tenant, agent, login)
        await put(redis, state(tenant, agent))
    create_agent(world.engine, "acme", "pc-spare")
    await put(redis, state("acme", "pc-spare"))


def bokeh_token(page: str) -> str:
    found = re.search(r'"token":"([^"]+)"', page)
    assert found is not None, "no Bokeh session token in the page"
    return found.group(1)


async def open_board(world: World, client: httpx.AsyncClient) -> tuple[httpx.Response, OpenPage]:
    """GET the live board; the server-side page of the Bokeh session it made."""
    answer = await client.get(LIVE_URL)
    assert answer.status_code == 200, answer.text[:300]
    opened: OpenPage = world.app.state.dashboards.pages[get_session_id(bokeh_token(answer.text))]
    return answer, opened


@contextlib.asynccontextmanager
async def boards(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, **kw: object
) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url, **kw) as world:
        try:
            yield world
        finally:
            await world.app.state.dashboards.close()


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on a real uvicorn on a free port; its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started, timeout=20, what="uvicorn started")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# ------------------------------------------------------------------ pure


def test_without_session_id_drops_only_the_session_id() -> None:
    """A page's query loses ``bokeh-session-id`` (both spellings) and keeps the rest."""
    assert without_session_id(b"bokeh-session-id=abc&x=1") == b"x=1"
    assert without_session_id(b"bokeh_session_id=abc") == b""
    assert without_session_id(b"x=1&y=2") == b"x=1&y=2"


@given(st.binary(max_size=200))
def test_without_session_id_never_fails_nor_keeps_one(query: bytes) -> None:
    """Any query: no exception, and no session id left in it."""
    kept = without_session_id(query).decode("latin-1")
    assert not {k for k, _ in parse_qsl(kept, keep_blank_values=True)} & dashboards.SESSION_QUERY


def test_same_origin() -> None:
    """A WebSocket's Origin must name the Host it was sent to (scheme http/https)."""
    assert same_origin("http://127.0.0.1:8702", "127.0.0.1:8702")
    assert same_origin("https://Console.Example", "console.example")
    assert not same_origin("http://evil.example", "127.0.0.1:8702")
    assert not same_origin(None, "127.0.0.1:8702")
    assert not same_origin("null", "127.0.0.1:8702")


@given(st.lists(st.text(max_size=80), max_size=3))
def test_bokeh_session_of_any_subprotocols(protocols: list[str]) -> None:
    """Any subprotocol list: a session id only for ``["bokeh", <token>]``, never an exception."""
    found = bokeh_session_of(protocols)
    assert found is None or (len(protocols) == 2 and protocols[0] == "bokeh")


async def test_the_hub_shares_one_feed_per_tenant_and_stops_it_after_the_last_page(
    redis_url: str, aredis: aioredis.Redis
) -> None:
    """Two pages of acme share a feed; it outlives a reload within the linger, then stops."""
    hub = FeedHub(lambda: redis_url, linger_s=0.2)
    try:
        await put(aredis, state("acme", "pc-one"))
        seen: list[int] = []
        first, leave_first = hub.subscribe("acme", lambda table: seen.append(len(table)))
        second, leave_second = hub.subscribe("acme", lambda table: None)
        assert first is second and hub.tenants == {"acme"}
        await wait_until(lambda: first.connected, what="feed loaded")
        assert set(first.table) == {"pc-one"} and seen[-1] == 1
        leave_first()
        leave_second()
        again, leave_again = hub.subscribe("acme", lambda table: None)  # a reload: the same feed
        assert again is first
        leave_again()
        await wait_until(lambda: not hub.tenants, timeout=5, what="feed stopped")
        assert first.listener_count == 0
    finally:
        await hub.close()


# --------------------------------------------------------- behind the sign-in


async def test_anonymous_is_sent_to_sign_in_for_the_page_and_its_assets(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """Without a session, the board, Bokeh's JS and a bad cookie all get a 303 to /signin (and back)."""
    async with boards(tmp_path, database_url, engine, redis_url) as world:
        anon = world.client()
        for path in (LIVE_URL, "/dashboards/static/js/bokeh.min.js", "/dashboards/live/ws"):
            answer = await anon.get(path)
            back = "/signin" if "/static/" in path else "/signin?next=" + quote(path, safe="")
            assert (answer.status_code, answer.headers["location"]) == (303, back), path
        anon.cookies.set(world.app.state.console.session_cookie, "x" * 43)
        assert (await anon.get(LIVE_URL)).status_code == 303
        assert world.app.state.dashboards.pages == {}


async def test_each_viewer_sees_their_tenant_and_scope_only(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, aredis: aioredis.Redis
) -> None:
    """acme's admin sees acme's agents, mika her sales group, a worker himself; beta none of acme."""
    async with boards(tmp_path, database_url, engine, redis_url) as world:
        await agents_live(world, aredis)
        for login, rows in SEES.items():
            client, _ = await world.signed_in(login)
            _, opened = await open_board(world, client)
            assert set(opened.page.shown()) == rows, login
            assert str(opened.page.tz) == ("UTC" if login.startswith("b") else "Asia/Tokyo")  # tenants' zones
            tenant = "beta" if login.startswith("b") else "acme"
            assert opened.page.feed.tenant == tenant
            assert 'data-status="present"' in str(opened.page.table.object)
        assert world.app.state.dashboards.hub.tenants == {"acme", "beta"}


async def test_a_change_in_redis_reaches_the_page_of_whoever_may_see_it(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, aredis: aioredis.Redis
) -> None:
    """A published state is drawn in mika's page for wataru; wendy's change is never in it."""
    async with boards(tmp_path, database_url, engine, redis_url) as world:
        await agents_live(world, aredis)
        client, _ = await world.signed_in("mika")
        _, opened = await open_board(world, client)
        await put(aredis, state("acme", "pc-wendy", "peeking", seq=2))
        await put(aredis, state("acme", "pc-wataru", "away", seq=2))
        await wait_until(lambda: 'data-status="away"' in str(opened.page.table.object), what="away drawn")
        assert set(opened.page.shown()) == {"pc-mika", "pc-wataru"}
        assert "pc-wendy" not in str(opened.page.table.object)
        assert "peeking" not in str(opened.page.table.object).split("<tbody>")[1]


async def test_the_board_has_its_own_csp_and_same_origin_assets(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """Every script/link of the board is of this origin and served; only /dashboards gets the wider CSP."""
    async with boards(tmp_path, database_url, engine, redis_url) as world:
        client, _ = await world.signed_in("alice")
        answer, _ = await open_board(world, client)
        assert answer.headers["content-security-policy"] == dashboards.HEADERS["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"  # the page itself is never cached
        assert "https:" not in answer.headers["content-security-policy"]
        console_page = await client.get("/profile")
        assert console_page.headers["content-security-policy"] == SECURITY_HEADERS["content-security-policy"]

        class Assets(HTMLParser):
            found: list[str] = []

            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
                value = dict(attrs).get(wanted or "")
                if value:
                    self.found.append(value)

        parser = Assets()
        parser.feed(answer.text)
        base = f"https://console.test{LIVE_URL}"
        assets = [urljoin(base, href) for href in parser.found]
        assert len(assets) >= 6  # bokeh (4 bundles), panel, module shims, icons
        for url in assets:
            assert urlsplit(url).netloc == "console.test", url
            if url.endswith("favicon.ico"):
                continue
            served = await client.get(url.removeprefix("https://console.test"))
            assert served.status_code == 200, url
            assert served.headers["cache-control"] == dashboards.STATIC_CACHE, url
        assert not re.search(r"(src|href)=\"(https?:)?//", answer.text)


async def test_a_session_id_in_the_query_never_attaches_to_another_session(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """``?bokeh-session-id=`` of alice's page gives wendy a session of her own, with her rows."""
    async with boards(tmp_path, database_url, engine, redis_url) as world:
        alice, _ = await world.signed_in("alice")
        answer, _ = await open_board(world, alice)
        theirs = get_session_id(bokeh_token(answer.text))
        wendy, _ = await world.signed_in("wendy")
        again = await wendy.get(LIVE_URL, params={"bokeh-session-id": theirs})
        assert again.status_code == 200
        assert get_session_id(bokeh_token(again.text)) != theirs


async def test_an_open_board_ends_when_its_console_session_does(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, aredis: aioredis.Redis
) -> None:
    """Signed out, or the user disabled: the open board stops following the feed, shows only the notice."""
    async with boards(tmp_path, database_url, engine, redis_url, web_dashboard_recheck_s=0.1) as world:
        await agents_live(world, aredis)
        client, csrf = await world.signed_in("mika")
        other, _ = await world.signed_in("alice")
        _, opened = await open_board(world, client)
        _, kept = await open_board(world, other)
        feed = opened.page.feed
        listeners = feed.listener_count
        assert (await client.post("/signout", data={"csrf": csrf})).status_code == 303
        await wait_until(lambda: opened.page.ended, timeout=10, what="board ended")
        assert feed.listener_count == listeners - 1
        assert [str(o.object) for o in opened.page.layout.objects] == [
            '<p id="live-ended">サインアウトしました。ライブボードを見るには再度サインインしてください。</p>'
        ]
        assert opened not in world.app.state.dashboards.pages.values()
        assert not kept.page.ended  # alice's session is not mika's

        wendy, _ = await world.signed_in("wendy")
        _, hers = await open_board(world, wendy)
        with Session(engine) as s:  # disabled (by whatever means): her open board ends too
            user = s.get(User, world.ids["wendy"])
            assert user is not None
            user.enabled = False
            s.commit()
        await wait_until(lambda: hers.page.ended, timeout=10, what="disabled user's board ended")
        assert not kept.page.ended


# ------------------------------------------------------------ the WebSocket


async def test_the_websocket_is_refused_without_the_session_that_opened_the_page(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """WS: no cookie, another origin, another user's cookie, a signed-out session: refused; the owner: ACK."""
    async with boards(tmp_path, database_url, engine, redis_url) as world, serving(world.app) as base:
        cookie = world.app.state.console.session_cookie
        alice, csrf = await world.signed_in("alice")
        bob, _ = await world.signed_in("bob")
        answer, _ = await open_board(world, alice)
        token = bokeh_token(answer.text)
        ws = base.replace("http://", "ws://") + LIVE_URL + "/ws"

        async def connect(session: str | None, origin: str = base) -> str:
            headers = {"Origin": origin} | ({"Cookie": f"{cookie}={session}"} if session else {})
            try:
                async with websockets.connect(
                    ws, subprotocols=[Subprotocol("bokeh"), Subprotocol(token)], additional_headers=headers
                ) as s:
                    return str(await asyncio.wait_for(s.recv(), 10))
            except websockets.InvalidStatus as refused:
                return f"refused {refused.response.status_code}"

        mine, others = alice.cookies[cookie], bob.cookies[cookie]
        assert await connect(None) == "refused 403"
        assert await connect(mine, origin="http://evil.example") == "refused 403"
        assert await connect(others) == "refused 403"
        assert json.loads(await connect(mine))["msgtype"] == "ACK"
        assert (await alice.post("/signout", data={"csrf": csrf})).status_code == 303
        assert await connect(mine) == "refused 403"


# --------------------------------------------------------------- in Chromium


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_manager_signs_in_once_and_watches_the_live_board_in_chromium(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, aredis: aioredis.Redis
) -> None:
    """Chromium: mika signs in on /signin, follows the nav link, sees sales live, a change within 1 s."""
    from playwright.async_api import async_playwright

    overrides = {"web_secure_cookie": False, "web_base_url": "http://127.0.0.1:8702"}
    async with (
        boards(tmp_path, database_url, engine, redis_url, **overrides) as world,
        serving(world.app) as base,
    ):
        await agents_live(world, aredis)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 720})
                refused: list[str] = []
                page.on(
                    "console",
                    lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
                )
                outside: list[str] = []
                page.on(
                    "request",
                    lambda r: None if r.url.startswith((base, f"blob:{base}")) else outside.append(r.url),
                )
                await page.goto(f"{base}/signin?lang=en")
                await page.fill('input[name="tenant"]', "acme")
                await page.fill('input[name="login"]', "mika")
                await page.fill('input[name="password"]', PASSWORD)
                await page.click('button[type="submit"]')
                await page.click(f'a[href="{LIVE_URL}"]')
                await page.locator('[data-agent="pc-wataru"][data-status="present"]').wait_for(timeout=15_000)
                assert await page.locator("tr[data-agent]").count() == 2  # mika and wataru, not wendy
                loop = asyncio.get_running_loop()
                start = loop.time()
                await put(aredis, state("acme", "pc-wataru", "away", seq=3))
                await page.locator('[data-agent="pc-wataru"][data-status="away"]').wait_for(timeout=5_000)
                assert loop.time() - start < 1.0
                await asyncio.to_thread(SCREENSHOTS.mkdir, mode=0o700, exist_ok=True)
                await page.screenshot(path=str(SCREENSHOTS / "dashboard-live-manager.png"), full_page=True)
                assert (outside, refused) == ([], [])
            finally:
                await browser.close()
