"""Live dashboard: merge rules, the Redis feed, and the page in a real headless Chromium."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from core.config import ConfigError
from core.settings import ServerSettings
from dashboard import view
from dashboard.feed import LiveFeed, decode, merge, reconnect_delay
from dashboard.live import TITLE, require_redis_url, start_background, websocket_origins
from realtime import keys
from realtime.protocol import LiveState, encode
from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def tenant_slug() -> str:
    return f"dash-{uuid.uuid4().hex[:10]}"


def live(
    tenant: str = "acme", agent: str = "a1", seq: int = 1, seen: datetime = T0, **kw: object
) -> LiveState:
    fields: dict[str, object] = {"online": True, "state": "present", "since": T0}
    fields.update(kw)
    return LiveState(tenant=tenant, agent_id=agent, last_seq=seq, last_seen=seen, **fields)


# ------------------------------------------------------------------ pure: merge


def test_merge_adds_unknown_agent_and_leaves_input_untouched():
    """An update for a new agent is added to a new dict; the given table is not modified."""
    table: dict[str, LiveState] = {}
    update = live()
    merged = merge(table, update)
    assert merged == {"a1": update}
    assert table == {}


def test_merge_newer_seq_replaces():
    """A higher last_seq replaces the held state even with an earlier last_seen."""
    held = live(seq=5, seen=T0)
    update = live(seq=6, seen=T0 - timedelta(seconds=1), state="away")
    assert merge({"a1": held}, update)["a1"] is update


def test_merge_older_seq_is_ignored():
    """A lower last_seq is ignored even with a later last_seen."""
    held = live(seq=5)
    update = live(seq=4, seen=T0 + timedelta(minutes=1), state="away")
    assert merge({"a1": held}, update)["a1"] is held


def test_merge_same_seq_compares_last_seen():
    """With equal last_seq a later last_seen wins (e.g. went offline) and an earlier one is ignored."""
    held = live(seq=5)
    later = live(seq=5, seen=T0 + timedelta(seconds=9), online=False)
    earlier = live(seq=5, seen=T0 - timedelta(seconds=9), state="away")
    assert merge({"a1": held}, later)["a1"] is later
    assert merge({"a1": held}, earlier)["a1"] is held


def test_merge_keeps_other_agents():
    """Merging one agent leaves the others as they were."""
    other = live(agent="b2")
    merged = merge({"b2": other}, live(agent="a1"))
    assert sorted(merged) == ["a1", "b2"]
    assert merged["b2"] is other


def test_reconnect_delay_doubles_and_caps():
    """Reconnect waits 0.1, 0.2, 0.4 ... seconds, never more than 5 s."""
    assert [reconnect_delay(n) for n in range(0, 8)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0]
    assert reconnect_delay(100) == 5.0


def test_decode_rejects_other_tenant_and_bad_json(caplog: pytest.LogCaptureFixture):
    """decode() skips a record of another tenant and an invalid one, logging the reason."""
    caplog.set_level(logging.WARNING, logger="dashboard.feed")
    assert decode(encode(live(tenant="other")), "acme", "channel") is None
    assert decode('{"type":"live_state","tenant":"acme","agent_id":"a1"}', "acme", "channel") is None
    assert [r.getMessage() for r in caplog.records] == [
        "skipping live state of another tenant: expected 'acme', got 'other'",
        "skipping malformed live state: online: Field required",
    ]
    assert caplog.records[1].field == "online"  # type: ignore[attr-defined]


# ------------------------------------------------------------------- pure: view


def test_counts_per_status_with_offline_winning():
    """Counts have every status; an offline agent counts as offline whatever its last state."""
    table = {
        "a": live(agent="a", state="present"),
        "b": live(agent="b", state="away"),
        "c": live(agent="c", state="away"),
        "d": live(agent="d", state="peeking", online=False),
        "e": live(agent="e", state=None),
    }
    assert view.counts(table) == {
        "impersonation": 0,
        "peeking": 0,
        "camera_blocked": 0,
        "camera_unavailable": 0,
        "away": 2,
        "present": 1,
        "unknown": 1,
        "offline": 1,
    }


def test_render_table_escapes_user_input_and_has_hooks():
    """User-supplied text is escaped and every row/cell carries its data-* hook."""
    state = live(user="<b>Eve</b>", task='x"><script>1</script>')
    html = view.render_table({"a1": state}, UTC, T0)
    assert "<script>" not in html and "<b>Eve</b>" not in html
    assert "&lt;b&gt;Eve&lt;/b&gt;" in html
    assert '<tr class="present" data-agent="a1" data-status="present">' in html
    assert '<td data-field="since">09:00:00</td>' in html
    assert html.count("data-field=") == 8


def test_format_time_today_and_other_day():
    """Times of today show HH:MM:SS; other days show the date; None shows a dash."""
    now = T0 + timedelta(hours=1)
    assert view.format_time(T0, UTC, now) == "09:00:00"
    assert view.format_time(T0 - timedelta(days=1), UTC, now) == "2026-11-24 09:00"
    assert view.format_time(None, UTC, now) == "—"


def test_websocket_origins():
    """Loopback hosts allow both loopback names; wildcard binds allow any host on the port."""
    assert websocket_origins("127.0.0.1", 8701) == ["127.0.0.1:8701", "localhost:8701"]
    assert websocket_origins("dash.example.com", 443) == ["dash.example.com:443"]
    assert websocket_origins("0.0.0.0", 8701) == ["*:8701"]


def test_redis_url_is_required():
    """Without a Redis URL the page refuses to start, naming TELEWORK_REDIS_URL."""
    with pytest.raises(ConfigError) as err:
        require_redis_url(ServerSettings(redis_url=None))
    assert err.value.key == "TELEWORK_REDIS_URL"
    assert str(err.value) == (
        "TELEWORK_REDIS_URL: the live dashboard needs a Redis URL (e.g. redis://127.0.0.1:6379/0); "
        "`telework up` starts an embedded Redis and sets it"
    )


# ------------------------------------------------------------- LiveFeed on Redis


async def test_feed_loads_hash_then_follows_channel(redis_url, aredis):
    """The hash is loaded at start (a bad entry skipped) and a published change reaches the listener."""
    tenant = tenant_slug()
    first = live(tenant, "a1", seq=3)
    await aredis.hset(keys.live_hash(tenant), mapping={"a1": encode(first), "zz": "garbage"})
    feed = LiveFeed(redis_url, tenant)
    seen: list[dict[str, LiveState]] = []
    feed.subscribe(lambda table: seen.append(dict(table)))
    feed.start()
    try:
        await wait_until(lambda: feed.connected, 5, what="hash loaded")
        assert seen == [{"a1": first}]
        update = live(tenant, "a1", seq=4, state="away")
        await aredis.publish(keys.live_channel(tenant), encode(update))
        await wait_until(lambda: len(seen) == 2, 5, what="published state delivered")
        assert seen[1] == {"a1": update}
        assert dict(feed.table) == {"a1": update}
    finally:
        await feed.stop()


async def test_feed_skips_malformed_message(redis_url, aredis, caplog: pytest.LogCaptureFixture):
    """A malformed or stale message is logged and skipped; the next good one still arrives."""
    caplog.set_level(logging.WARNING, logger="dashboard.feed")
    tenant = tenant_slug()
    feed = LiveFeed(redis_url, tenant)
    seen: list[dict[str, LiveState]] = []
    feed.subscribe(lambda table: seen.append(dict(table)))
    feed.start()
    try:
        await wait_until(lambda: feed.connected, 5, what="hash loaded")
        channel = keys.live_channel(tenant)
        current = live(tenant, "a1", seq=2)
        await aredis.publish(channel, encode(current))
        await aredis.publish(channel, "{not json")
        await aredis.publish(channel, encode(live(tenant, "a1", seq=1, state="away")))  # stale
        good = live(tenant, "b2", seq=1, state="peeking")
        await aredis.publish(channel, encode(good))
        await wait_until(lambda: "b2" in feed.table, 5, what="good message after the bad one")
        assert seen == [{}, {"a1": current}, {"a1": current, "b2": good}]
        assert [r.getMessage() for r in caplog.records] == [
            "skipping malformed live state: Invalid JSON: key must be a string at line 1 column 2"
        ]
    finally:
        await feed.stop()


async def test_feed_reconnects_and_reloads_hash(redis_url, aredis):
    """When Redis drops the feed's connection it reconnects and reloads the hash (missed changes)."""
    tenant = tenant_slug()
    feed = LiveFeed(redis_url, tenant)
    feed.start()
    try:
        await wait_until(lambda: feed.connected, 5, what="hash loaded")
        missed = live(tenant, "a9", seq=7, state="impersonation")
        await aredis.hset(keys.live_hash(tenant), "a9", encode(missed))  # written, never published
        clients = [c for c in await aredis.client_list() if c.get("name") == feed.client_name]
        assert len(clients) == 2  # the pubsub connection and the pooled one that read the hash
        for client in clients:
            await aredis.client_kill_filter(_id=client["id"])
        await wait_until(lambda: feed.connections == 2 and feed.connected, 10, what="reconnected")
        assert dict(feed.table) == {"a9": missed}
        update = live(tenant, "a9", seq=8, state="present")
        await aredis.publish(keys.live_channel(tenant), encode(update))
        await wait_until(lambda: feed.table.get("a9") == update, 5, what="follows channel again")
    finally:
        await feed.stop()


# ------------------------------------------------------------ serve() as a program

SERVE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
from dashboard.live import serve
from core.settings import ServerSettings
serve(ServerSettings(redis_url=sys.argv[1], dashboard_port=0, dashboard_tenant=sys.argv[2]))
"""


def test_serve_runs_until_sigterm(redis_url):
    """serve() blocks serving the page and returns cleanly (exit 0, feed stopped) on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, redis_url, tenant_slug()],
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert proc.stderr is not None
        port = None
        for line in proc.stderr:  # blocks line by line until the server reports its port
            found = re.search(r"live dashboard on http://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "serve() never reported its port"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200
            assert "<title>Telework Supporter — live</title>" in resp.read().decode()
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=15)[1]
        assert proc.returncode == 0
        assert "dashboard.live live dashboard stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------- the page in Chromium


def test_live_page_in_browser(redis_url):
    """The page shows the hash at load and a published change within 1 s; screenshot to /tmp."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (make test installs it)")
    from playwright.sync_api import sync_playwright

    tenant = tenant_slug()
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    since = datetime.now(UTC) - timedelta(minutes=42)

    def put(state: LiveState) -> None:
        r.hset(keys.live_hash(tenant), state.agent_id, encode(state))
        r.publish(keys.live_channel(tenant), encode(state))

    put(
        live(
            tenant,
            "pc-tanaka",
            seq=10,
            seen=since,
            user="Tanaka Yui",
            state="away",
            on_duty=True,
            task="Quarterly report",
            since=since,
        )
    )
    server = start_background(ServerSettings(redis_url=redis_url, dashboard_port=0, dashboard_tenant=tenant))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 640})
                page.goto(server.url)
                row = page.locator('[data-agent="pc-tanaka"]')
                row.wait_for(timeout=15_000)
                assert page.title() == TITLE
                assert row.get_attribute("data-status") == "away"
                assert row.locator('[data-field="user"]').inner_text() == "Tanaka Yui"
                assert row.locator('[data-field="task"]').inner_text() == "Quarterly report"
                assert page.locator('[data-count="away"] .n').inner_text() == "1"

                second = browser.new_page()  # another manager's session: same feed, own document
                second.goto(server.url)
                second.locator('[data-agent="pc-tanaka"]').wait_for(timeout=15_000)
                assert server.feed.listener_count == 2

                now = datetime.now(UTC)
                back = live(
                    tenant,
                    "pc-tanaka",
                    seq=11,
                    seen=now,
                    user="Tanaka Yui",
                    state="present",
                    on_duty=True,
                    task="Quarterly report",
                    since=now,
                )
                start = time.monotonic()
                put(back)
                page.locator('[data-agent="pc-tanaka"][data-status="present"]').wait_for(timeout=5_000)
                latency = time.monotonic() - start
                logging.getLogger(__name__).warning("publish -> DOM latency %.3f s", latency)
                assert latency < 1.0, f"change shown after {latency:.3f}s"
                assert page.locator('[data-count="present"] .n').inner_text() == "1"
                second.locator('[data-agent="pc-tanaka"][data-status="present"]').wait_for(timeout=1_000)
                second.close()
                assert page.locator('[data-count="away"] .n').inner_text() == "0"

                for state in (
                    live(
                        tenant,
                        "pc-sato",
                        seq=3,
                        seen=now,
                        user="Sato Ken",
                        state="peeking",
                        on_duty=True,
                        task="Customer calls",
                        since=now - timedelta(minutes=2),
                    ),
                    live(
                        tenant,
                        "pc-kim",
                        seq=8,
                        seen=now,
                        user="Kim Min-ji",
                        state="away",
                        on_duty=True,
                        task="Code review",
                        since=now - timedelta(minutes=9),
                    ),
                    live(
                        tenant,
                        "pc-ito",
                        seq=2,
                        seen=now - timedelta(hours=3),
                        user="Ito Hana",
                        online=False,
                        state="present",
                        since=now - timedelta(hours=4),
                    ),
                    live(
                        tenant,
                        "pc-lopez",
                        seq=5,
                        seen=now,
                        user="Maria Lopez",
                        state="camera_blocked",
                        on_duty=True,
                        since=now - timedelta(seconds=40),
                    ),
                ):
                    put(state)
                page.locator('[data-agent="pc-lopez"]').wait_for(timeout=5_000)
                page.locator('[data-agent="pc-ito"]').wait_for(timeout=5_000)
                assert page.locator("tr[data-agent]").count() == 5
                assert page.locator('[data-count="offline"] .n').inner_text() == "1"
                page.screenshot(path="/tmp/dashboard.png", full_page=True)
            finally:
                browser.close()
    finally:
        server.stop()
        r.close()
