"""The trim pass: a tenant stream never loses what a consumer still needs; consumed and dead
letters go by age; high water is warned about."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from realtime import keys
from realtime.stream_positions import GroupPosition, done_below, format_id, parse_id
from tests.test_worker import count_rows, events, new_tenant, produce, running, settings_for
from tests.waiting import wait_until
from workers.persist import persist_consumer
from workers.retention import RetentionPolicy
from workers.trim import (
    GroupBacklog,
    HighWater,
    StreamReading,
    TrimDecision,
    TrimPolicy,
    behind_s,
    dead_letter_backlog,
    dead_letter_minid,
    decide,
    high_water,
    id_at,
    ms_of,
    warn_due,
)
from workers.trim_store import StreamTrimmer, redis_now

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
NOW_MS = ms_of(NOW)
HOUR_AGO = NOW_MS - 3_600_000
POLICY = TrimPolicy(keep_s=3600, capacity=10_000, warn_ratio=0.8)


def group(name: str, last: str, first_pending: str | None = None, pending: int = 0) -> GroupPosition:
    return GroupPosition(name, last, first_pending, pending)


def reading(
    *positions: GroupPosition,
    length: int = 100,
    first: str | None = format_id((NOW_MS - 2 * 86_400_000, 0)),
    last: str = "",
) -> StreamReading:
    return StreamReading("tw:{acme}:events", length, first, last or format_id((NOW_MS, 0)), positions)


# --------------------------------------------------------------------------- pure


def test_nothing_is_trimmed_while_a_required_group_is_missing() -> None:
    """No group, or only `persist` fully done: no MINID, however old and long the stream."""
    assert decide(reading(length=50_000), NOW, POLICY).minid is None
    only_persist = reading(group("persist", format_id((NOW_MS, 0))), length=50_000)
    decision = decide(only_persist, NOW, POLICY)
    assert decision.minid is None
    assert decision.high_water == HighWater(
        "tw:{acme}:events", 50_000, 10_000, (GroupBacklog("persist", 0, 0.0),), missing=("build",)
    )


def test_minid_is_the_lower_of_the_trim_point_and_the_age_cutoff() -> None:
    """Pending in persist two hours ago: its first pending id; everything done: now - keep_s."""
    two_hours = format_id((NOW_MS - 7_200_000, 5))
    behind = reading(
        group("persist", format_id((NOW_MS, 0)), first_pending=two_hours, pending=3),
        group("build", format_id((NOW_MS, 0))),
    )
    assert decide(behind, NOW, POLICY) == TrimDecision(two_hours, approximate=True)
    done = reading(group("persist", format_id((NOW_MS, 0))), group("build", format_id((NOW_MS, 0))))
    assert decide(done, NOW, POLICY) == TrimDecision(format_id((HOUR_AGO, 0)), approximate=True)


def test_the_keep_window_yields_above_half_the_capacity() -> None:
    """5,001 of 10,000 entries, all consumed: trimmed to the trim point at once, not kept an hour,
    so kept entries never push agents back; 5,000: kept for the window."""
    now_id = format_id((NOW_MS, 0))
    done = (group("persist", now_id), group("build", now_id))
    assert decide(reading(*done, length=5_001), NOW, POLICY).minid == format_id((NOW_MS, 1))
    assert decide(reading(*done, length=5_000), NOW, POLICY).minid == format_id((HOUR_AGO, 0))


def test_no_minid_when_it_drops_nothing_and_exact_past_retention() -> None:
    """Oldest entry newer than the MINID: nothing to do; oldest older than retention_days: exact trim."""
    fresh = format_id((NOW_MS - 10, 0))
    done = (group("persist", format_id((NOW_MS, 0))), group("build", format_id((NOW_MS, 0))))
    assert decide(reading(*done, first=fresh), NOW, POLICY).minid is None
    ancient = format_id((ms_of(NOW - timedelta(days=91)), 0))
    assert decide(reading(*done, first=ancient), NOW, POLICY) == TrimDecision(
        format_id((HOUR_AGO, 0)), approximate=False
    )


def test_high_water_above_the_ratio_names_stream_capacity_and_each_group() -> None:
    """8,000 of 10,000 (the ratio exactly): quiet; 8,001: the warning text with pending and lag."""
    first, last = format_id((NOW_MS - 200_000, 0)), format_id((NOW_MS, 0))
    groups = (
        group("persist", last, first_pending=format_id((NOW_MS - 182_300, 0)), pending=1200),
        group("build", last),
    )
    assert high_water(reading(*groups, length=8000, first=first, last=last), NOW, POLICY) is None
    warning = high_water(reading(*groups, length=8001, first=first, last=last), NOW, POLICY)
    assert warning is not None
    assert warning.text() == (
        "tenant stream tw:{acme}:events holds 8001 entries, 80% of its capacity 10000 "
        "(TELEWORK_STREAM_MAXLEN); at capacity the gateway pushes agents back (store_full) until the "
        "consumers catch up; group build: 0 pending, 0.0 s behind; "
        "group persist: 1200 pending, 182.3 s behind"
    )
    assert warning.extra() == {
        "stream": "tw:{acme}:events",
        "length": 8001,
        "capacity": 10000,
        "build_pending": 0,
        "persist_pending": 1200,
        "build_behind_s": 0.0,
        "persist_behind_s": 182.3,
        "missing_groups": "",
    }


def test_behind_counts_from_the_oldest_entry_still_in_the_stream() -> None:
    """A group that never read (done below 0-1) is as far behind as the oldest entry, not since 1970;
    a group done with the newest entry is not behind, however old that entry."""
    never = group("build", "0-0")
    last = format_id((NOW_MS - 1000, 0))
    assert behind_s(never, format_id((NOW_MS - 5000, 0)), last, NOW) == 5.0
    assert behind_s(never, None, "0-0", NOW) == 0.0
    assert behind_s(group("persist", last), format_id((NOW_MS - 5000, 0)), last, NOW) == 0.0


def test_dead_letters_go_after_the_lower_of_their_keep_and_retention() -> None:
    """keep 30 d under retention 90 d: 30 d; retention 20 d: 20 d; a warning only above the limit."""
    assert dead_letter_minid(NOW, POLICY) == id_at(NOW - timedelta(days=30))
    short = TrimPolicy(retention=RetentionPolicy(retention_days=20, dead_letter_keep_days=30))
    assert dead_letter_minid(NOW, short) == id_at(NOW - timedelta(days=20))
    assert dead_letter_backlog("tw:{acme}:dead", 1000, POLICY) is None
    backlog = dead_letter_backlog("tw:{acme}:dead", 1001, POLICY)
    assert backlog is not None and backlog.text().startswith(
        "dead-letter stream tw:{acme}:dead holds 1001 letters, more than TELEWORK_DEAD_LETTER_WARN=1000"
    )


def test_warnings_at_most_once_per_interval() -> None:
    """Never warned: due; 59.9 s later: not; 60 s later: due."""
    assert warn_due(None, 5.0, 60.0)
    assert not warn_due(5.0, 64.9, 60.0)
    assert warn_due(5.0, 65.0, 60.0)


def test_policy_refuses_impossible_values() -> None:
    """A ratio above 1 is refused, naming what was expected and what arrived."""
    with pytest.raises(ValueError, match=r"0 < warn_ratio <= 1.*got 3600.0, 1000000, 1.5, 1000"):
        TrimPolicy(warn_ratio=1.5)


ids = st.tuples(st.integers(0, 2**45), st.integers(0, 2**20)).map(format_id)


@given(
    st.lists(st.tuples(ids, st.one_of(st.none(), ids), st.integers(0, 10)), min_size=0, max_size=4),
    st.booleans(),
    ids,
)
def test_minid_never_passes_a_group_or_the_keep_window(
    raw: list[tuple[str, str | None, int]], with_build: bool, first: str
) -> None:
    """Any positions: the MINID is at or below every group's done region and the age cut-off."""
    positions = [
        group("persist" if i == 0 else f"g{i}", last, pend, n) for i, (last, pend, n) in enumerate(raw)
    ]
    if with_build:
        positions.append(group("build", format_id((NOW_MS, 0))))
    decision = decide(reading(*positions, first=first), NOW, POLICY)
    if decision.minid is None:
        return
    assert {"persist", "build"} <= {p.name for p in positions}
    assert all(parse_id(decision.minid) <= parse_id(done_below(p)) for p in positions)
    assert parse_id(decision.minid) <= (HOUR_AGO, 0)
    assert parse_id(decision.minid) > parse_id(first)


# --------------------------------------------------------------------------- Redis


async def _fill(client: aioredis.Redis, tenant: str, ms: int, n: int, start: int = 0) -> list[str]:
    """XADD ``n`` small entries (one stream node per 100) at Redis time ``ms``; SADD the tenant."""
    stream = keys.events_stream(tenant)
    async with client.pipeline(transaction=False) as pipe:
        for i in range(start, start + n):
            pipe.xadd(stream, {"e": "{}"}, id=f"{ms}-{i + 1}")
        pipe.sadd(keys.TENANTS, tenant)
        replies = await pipe.execute()
    return [str(r) for r in replies[:-1]]


async def _consume(client: aioredis.Redis, tenant: str, name: str, ack: int | None = None) -> list[str]:
    """Group ``name`` reads the whole stream and acks its first ``ack`` entries (all: None)."""
    stream = keys.events_stream(tenant)
    reply: list[tuple[str, list[tuple[str, Any]]]] = await client.xreadgroup(  # type: ignore[assignment]
        name, "c", {stream: ">"}, count=100_000
    )
    read = [entry_id for _, entries in reply for entry_id, _ in entries]
    done = read if ack is None else read[:ack]
    if done:
        await client.xack(stream, name, *done)
    return read


async def _groups(client: aioredis.Redis, tenant: str, *names: str) -> None:
    for name in names:
        await client.xgroup_create(keys.events_stream(tenant), name, id="0", mkstream=True)


async def _node_size(client: aioredis.Redis) -> int:
    return int((await client.config_get("stream-node-max-entries"))["stream-node-max-entries"] or 100)


async def _ids(client: aioredis.Redis, stream: str) -> list[str]:
    entries: list[tuple[str, Any]] = await client.xrange(stream)  # type: ignore[assignment]
    return [entry_id for entry_id, _ in entries]


async def test_consumers_stopped_nothing_is_trimmed_however_long(aredis: aioredis.Redis) -> None:
    """Groups created, nothing acked (or build missing): 5,000 two-day-old entries all stay; warned."""
    now_ms = ms_of(await redis_now(aredis))
    stopped, half = new_tenant(), new_tenant()
    await _groups(aredis, stopped, "persist", "build")
    await _fill(aredis, stopped, now_ms - 2 * 86_400_000, 5000)
    await _groups(aredis, half, "persist")
    await _fill(aredis, half, now_ms - 2 * 86_400_000, 5000)
    await _consume(aredis, half, "persist")  # persist is done with all; there is no builder
    trimmer = StreamTrimmer(TrimPolicy(keep_s=0, capacity=1000), aredis)
    report = await trimmer.trim_all()
    assert (report.events, report.streams) == (0, 2)
    assert await aredis.xlen(keys.events_stream(stopped)) == 5000
    assert await aredis.xlen(keys.events_stream(half)) == 5000


async def test_acked_entries_past_the_keep_window_go_pending_ones_never(aredis: aioredis.Redis) -> None:
    """1,000 entries 2 h old + 200 new; persist acked 550: two concurrent passes trim the 500 below
    its first pending (whole nodes); once all is acked, the old rest goes and the new 200 stay."""
    node = await _node_size(aredis)
    now_ms = ms_of(await redis_now(aredis))
    tenant = new_tenant()
    stream = keys.events_stream(tenant)
    await _groups(aredis, tenant, "persist", "build")
    old = await _fill(aredis, tenant, now_ms - 7_200_000, 1000)
    new = await _fill(aredis, tenant, now_ms - 1000, 200, start=1000)
    read = await _consume(aredis, tenant, "persist", ack=550)
    await _consume(aredis, tenant, "build")
    policy = TrimPolicy(keep_s=3600)
    first, second = await asyncio.gather(
        StreamTrimmer(policy, aredis).trim_all(), StreamTrimmer(policy, aredis).trim_all()
    )
    expected = 550 // node * node
    assert first.events + second.events == expected
    assert await aredis.xlen(stream) == 1200 - expected
    still = set(await _ids(aredis, stream))
    assert set(read[550:]) <= still  # every pending entry is still there
    assert len(await aredis.xpending_range(stream, "persist", "-", "+", 10_000)) == 650
    await aredis.xack(stream, "persist", *read[550:])
    report = await StreamTrimmer(policy, aredis).trim_all()
    assert report.events == 1000 - expected
    assert await _ids(aredis, stream) == new
    assert old[0] not in still


async def test_entries_past_retention_are_trimmed_exactly(aredis: aioredis.Redis) -> None:
    """1,050 entries 100 days old, persist pending from the 1,026th: exactly the 1,025 below it go."""
    now_ms = ms_of(await redis_now(aredis))
    tenant = new_tenant()
    await _groups(aredis, tenant, "persist", "build")
    ids_ = await _fill(aredis, tenant, now_ms - 100 * 86_400_000, 1050)
    await _consume(aredis, tenant, "persist", ack=1025)
    await _consume(aredis, tenant, "build")
    report = await StreamTrimmer(TrimPolicy(), aredis).trim_all()
    assert report.events == 1025
    assert await _ids(aredis, keys.events_stream(tenant)) == ids_[1025:]


async def test_high_water_warned_once_a_minute(
    aredis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Above 80% of capacity: one warning per stream per minute, naming the groups and the push-back."""
    now_ms = ms_of(await redis_now(aredis))
    tenant = new_tenant()
    await _groups(aredis, tenant, "persist", "build")
    await _fill(aredis, tenant, now_ms - 90_000, 900)
    await _consume(aredis, tenant, "persist", ack=0)
    clock = [100.0]
    trimmer = StreamTrimmer(TrimPolicy(capacity=1000), aredis, clock=lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="workers.trim_store")
    for at in (100.0, 159.0, 160.0):
        clock[0] = at
        await trimmer.trim_all()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    text = warnings[0].getMessage()
    stream = keys.events_stream(tenant)
    assert text.startswith(f"tenant stream {stream} holds 900 entries, 90% of its capacity 1000 ")
    assert "the gateway pushes agents back (store_full)" in text
    # the entries are 90 s old (by the Redis clock, which moved on a little since they were added)
    assert re.search(
        r"group build: 0 pending, 9\d\.\d s behind; group persist: 900 pending, 9\d\.\d s behind$", text
    )
    assert (warnings[0].__dict__["stream"], warnings[0].__dict__["persist_pending"]) == (stream, 900)


async def test_dead_letters_trimmed_by_age_and_warned_about(
    aredis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Letters 40 and 31 days old go (exactly), those of yesterday stay; above the limit: a warning."""
    now_ms = ms_of(await redis_now(aredis))
    tenant = new_tenant()
    dead = keys.dead_letter_stream(tenant)
    await aredis.sadd(keys.TENANTS, tenant)
    for days, n in ((40, 10), (31, 5), (1, 3)):
        for i in range(n):
            await aredis.xadd(dead, {"e": "{}"}, id=f"{now_ms - days * 86_400_000}-{i + 1}")
    caplog.set_level(logging.WARNING, logger="workers.trim_store")
    report = await StreamTrimmer(TrimPolicy(dead_letter_warn=2), aredis).trim_all()
    assert (report.dead_letters, await aredis.xlen(dead)) == (15, 3)
    assert [r.getMessage()[:60] for r in caplog.records] == [
        f"dead-letter stream {dead} holds 3 letters, more than TELEWORK_"[:60]
    ]


async def test_persistence_worker_runs_the_trim_hook(
    aredis: aioredis.Redis, redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """A persistence worker stores 300 events, and its hook `trim` then drops them once build is done."""
    tenant = new_tenant()
    stream = keys.events_stream(tenant)
    await _groups(aredis, tenant, "persist", "build")
    await produce(aredis, tenant, events(tenant, 300))
    await _consume(aredis, tenant, "build")
    settings = settings_for(redis_url, database_url, tmp_path, stream_keep_s=0, trim_interval_s=0.05)
    worker = persist_consumer(settings, engine, aredis)
    assert [(h.name, h.every_s) for h in worker.hooks] == [("trim", 0.05)]
    async with running(worker):
        await wait_until(
            lambda: _emptied(aredis, stream), timeout=20, what="the stored events trimmed from the stream"
        )
    assert await count_rows(engine, tenant) == 300


async def _emptied(client: aioredis.Redis, stream: str) -> bool:
    return int(await client.xlen(stream)) == 0


async def test_a_refused_tenant_does_not_stop_the_pass(aredis: aioredis.Redis) -> None:
    """A tenant whose stream key holds a string: named in the report's problems; the others are trimmed."""
    now_ms = ms_of(await redis_now(aredis))
    good, bad = new_tenant(), new_tenant()
    await _groups(aredis, good, "persist", "build")
    await _fill(aredis, good, now_ms - 7_200_000, 300)
    await _consume(aredis, good, "persist")
    await _consume(aredis, good, "build")
    await aredis.set(keys.events_stream(bad), "not a stream")
    await aredis.sadd(keys.TENANTS, bad)
    report = await StreamTrimmer(TrimPolicy(), aredis).trim_all()
    assert (report.events, report.streams) == (300, 1)
    assert [p.split(":", 3)[:3] for p in report.problems] == [["tw", "{" + bad + "}", "events"]]
    assert "WRONGTYPE" in report.problems[0]
