"""Live dashboard: merge rules, the Redis feed, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis

from core.config import ConfigError
from core.settings import ServerSettings
from dashboard import view
from dashboard.feed import LiveFeed, decode, merge, reconnect_delay
from dashboard.feed import removal as removal_of
from dashboard.live import TITLE, require_redis_url, start_background, websocket_origins
from realtime import keys
from realtime.live import removal
from realtime.protocol import LiveRemoved, LiveState, encode
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


def test_format_time_shows_a_placeholder_for_times_it_cannot_show():
    """A time at the end of the range shows; one that overflows in the zone, or is no time, shows '?'."""
    far = datetime(9000, 12, 31, 23, 59, tzinfo=UTC)
    assert view.format_time(far, timezone(timedelta(hours=14)), T0) == "9001-01-01 13:59"
    assert view.format_time(datetime.max.replace(tzinfo=UTC), timezone(timedelta(hours=14)), T0) == "?"
    assert view.format_time("9999-99-99", UTC, T0) == "?"  # type: ignore[arg-type]


def test_display_text_cuts_and_replaces_control_characters():
    """Cell text is cut to 80 characters with an ellipsis and control characters become U+FFFD."""
    assert view.display_text("x" * 10_000) == "x" * 79 + "…"
    assert view.display_text("a\x1b[31m\r\nb\u2028c") == "a\ufffd[31m\ufffd\ufffdb\ufffdc"
    assert (view.display_text(None), view.display_text(""), view.display_text(42)) == (None, None, "42")


def test_row_with_surprising_values_shows_placeholders():
    """An unknown state, a huge control-character task, a far-future time: placeholders, no exception."""
    odd = LiveState.model_construct(
        tenant="acme",
        agent_id="a1",
        online=True,
        state="sleeping",  # type: ignore[arg-type]  # a state of another release
        on_duty=True,
        task="\x1b[2J<script>" + "t" * 5000,
        user=None,
        since=datetime.max.replace(tzinfo=UTC),
        last_seen=datetime(9000, 12, 31, 23, 59, tzinfo=UTC),
        last_seq=1,
    )
    html = view.render_table({"a1": odd}, timezone(timedelta(hours=14)), T0)
    assert '<tr class="unknown" data-agent="a1" data-status="unknown">' in html
    assert '<span class="badge" style="--c:#868e96" title="unknown state sleeping">?</span>' in html
    assert '<td data-field="task">\ufffd[2J&lt;script&gt;' + "t" * 67 + "…</td>" in html
    assert '<td data-field="since">?</td><td data-field="last_seen">9001-01-01 13:59</td>' in html
    assert view.counts({"a1": odd})["unknown"] == 1


def test_a_row_that_cannot_be_drawn_is_one_unreadable_row():
    """A state missing its required fields becomes one 'unreadable live state' row; the others draw."""
    broken = LiveState.model_construct(tenant="acme")  # type: ignore[call-arg]
    html = view.render_table({"zz\r<b>": broken, "a1": live()}, UTC, T0)
    assert (
        '<tr class="unknown" data-agent="zz\ufffd&lt;b&gt;" data-status="unknown">'
        '<td data-field="agent">zz\ufffd&lt;b&gt;</td>'
        '<td class="muted" colspan="7">unreadable live state</td></tr>'
    ) in html
    assert '<tr class="present" data-agent="a1" data-status="present">' in html


def test_decode_keeps_a_record_without_the_fields_it_cannot_read(caplog: pytest.LogCaptureFixture):
    """An unknown state, a time out of range, an over-long task, a newer field: dropped, the rest kept."""
    caplog.set_level(logging.WARNING, logger="dashboard.feed")
    good = json.loads(encode(live(state="away", task="mail", on_duty=True)))
    old = good | {"state": "sleeping", "since": "9999-12-31T23:59:59-14:00", "task": "t" * 500, "mood": 1}
    state = decode(json.dumps(old), "acme", "hash:a1")
    assert state == live(state=None, since=None, task=None, on_duty=True)
    assert [r.getMessage() for r in caplog.records] == [
        "live state read without its unreadable fields: mood, since, state, task"
    ]


def test_decode_skips_unreadable_bytes_and_deep_json(caplog: pytest.LogCaptureFixture):
    """Bytes that are not UTF-8, JSON nested 10000 deep, a bad required field: None, logged."""
    caplog.set_level(logging.WARNING, logger="dashboard.feed")
    good = json.loads(encode(live()))
    for raw in (b"\xff\xfe{", "[" * 10_000, json.dumps(good | {"last_seen": "year 9000"})):
        assert decode(raw, "acme", "hash:a1") is None
    assert len(caplog.records) == 3
    assert all(r.getMessage().startswith("skipping malformed live state: ") for r in caplog.records)


async def test_feed_survives_unreadable_values_in_the_hash(redis_url, aredis):
    """Invalid UTF-8 and an old record with an unknown state in the live hash: the feed loads the rest."""
    tenant = tenant_slug()
    kept = live(tenant, "a1", seq=3)
    old = json.loads(encode(live(tenant, "b2", seq=1))) | {"state": "sleeping"}
    mapping = {"a1": encode(kept), "b2": json.dumps(old), "c3": b"\xff\xfe\x00"}
    await aredis.hset(keys.live_hash(tenant), mapping=mapping)
    feed = LiveFeed(redis_url, tenant)
    feed.start()
    try:
        await wait_until(lambda: feed.connected, 5, what="hash loaded")
        assert dict(feed.table) == {"a1": kept, "b2": live(tenant, "b2", seq=1, state=None)}
    finally:
        await feed.stop()


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


async def test_removal_drops_the_agents_row_and_nothing_else(redis_url, aredis):
    """The erasure's commands (realtime.live.removal) delete the agent's live state and its row
    leaves open feeds; a removal of another tenant or a malformed one changes nothing."""
    tenant = tenant_slug()
    kept, erased = live(tenant, "a1", seq=3), live(tenant, "b2", seq=5)
    await aredis.hset(keys.live_hash(tenant), mapping={"a1": encode(kept), "b2": encode(erased)})
    feed = LiveFeed(redis_url, tenant)
    seen: list[dict[str, LiveState]] = []
    feed.subscribe(lambda table: seen.append(dict(table)))
    feed.start()
    try:
        await wait_until(lambda: feed.connected, 5, what="hash loaded")
        channel, now = keys.live_channel(tenant), datetime.now(UTC)
        other = LiveRemoved(tenant=tenant_slug(), agent_id="a1", at=now)
        await aredis.publish(channel, encode(other))
        await aredis.publish(channel, '{"type": "live_removed", "tenant": 5}')
        for command in removal(tenant, "b2", now):
            await aredis.execute_command(*command)
        await wait_until(lambda: "b2" not in feed.table, 5, what="the erased agent's row gone")
        assert seen == [{"a1": kept, "b2": erased}, {"a1": kept}]
        assert await aredis.hgetall(keys.live_hash(tenant)) == {"a1": encode(kept)}
        assert removal_of(encode(other), tenant) is None
        assert removal_of(encode(kept), tenant) is None
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
