"""Bad rows already in the event table never stop the builder: skipped once each, the rest still built."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from realtime.protocol import MAX_SEQ, DutyPayload, IncidentPayload, StatePayload, new_event_id
from storage.accounts import create_agent
from tests.test_builder import Agent, at, incidents, produce, settings_for, setup_accounts
from tests.waiting import wait_until
from workers.builder import BuildHandler, build_consumer
from workers.intervals import Ev, event_of_row, seconds_before

INSERT = text(
    "INSERT INTO event (id, tenant_id, agent_id, seq, ts, type, payload, session_id, received_at, stored_at) "
    "VALUES (:id, 'acme', :agent, :seq, :ts, :type, :payload, 's1', :ts_ok, :ts_ok)"
)


def sql_time(engine: Engine, minute: float) -> str:
    """A row time as the dialect stores it (SQLite: naive UTC text)."""
    moment = at(minute)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if engine.dialect.name == "sqlite" else moment.isoformat()


def insert_rows(engine: Engine) -> dict[str, str]:
    """pc-1's rows straight into the table (one good, with seq 2**63-1, the others bad); the bad ids."""
    sqlite = engine.dialect.name == "sqlite"
    ok = sql_time(engine, 0)
    bad = {name: str(new_event_id()) for name in ("year 9999", "year 1", "state 5", "no object", "meteor")}
    rows: list[dict[str, Any]] = [
        {
            "id": "max-seq",
            "seq": MAX_SEQ,
            "ts": sql_time(engine, 1),
            "type": "state",
            "payload": '{"state": "present"}',
        },
        # times Python cannot hold once in UTC (PostgreSQL keeps them: 1 BC, year 10000)
        {
            "id": bad["year 9999"],
            "seq": 5,
            "ts": "9999-12-31 23:59:59.000000" if sqlite else "9999-12-31 23:59:59-01",
            "type": "state",
            "payload": '{"state": "away"}',
        },
        {
            "id": bad["year 1"],
            "seq": 6,
            "ts": "0001-01-01 00:00:00.000000" if sqlite else "0001-01-01 00:00:00+01",
            "type": "state",
            "payload": '{"state": "away"}',
        },
        {
            "id": bad["state 5"],
            "seq": 7,
            "ts": sql_time(engine, 10),
            "type": "state",
            "payload": '{"state": 5}',
        },
        {
            "id": bad["no object"],
            "seq": 8,
            "ts": sql_time(engine, 12),
            "type": "state",
            "payload": "not json" if sqlite else "[1, 2]",
        },
        {
            "id": bad["meteor"],
            "seq": 9,
            "ts": sql_time(engine, 27),
            "type": "incident",
            "payload": '{"kind": "meteor", "phase": "start"}',
        },
    ]
    with engine.begin() as conn:
        for row in rows:
            conn.execute(INSERT, {"agent": "pc-1", "ts_ok": ok, **row})
    return bad


def expected_reasons(engine: Engine, bad: dict[str, str]) -> dict[str, str]:
    sqlite = engine.dialect.name == "sqlite"
    time_range = "a time from 2000-01-01 to 9000-12-31 (UTC)"
    return {
        bad["year 9999"]: f"ts: expected {time_range}, got "
        + ("'9999-12-31 23:59:59.000000'" if sqlite else "'10000-01-01 00:59:59+00'"),
        bad["state 5"]: "payload.state: expected one of present, away, peeking, impersonation, "
        "camera_blocked, camera_unavailable, got 5",
        bad["no object"]: (
            "unreadable row: json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
            if sqlite
            else "payload: expected a JSON object, got [1, 2]"
        ),
        bad["meteor"]: "payload.kind: expected one of peeking, impersonation, camera_blocked, got 'meteor'",
    }


def by_agent(engine: Engine, agent: str = "%") -> list[tuple[Any, ...]]:
    """Intervals of agents LIKE ``agent``: (agent, kind, value, start, end, closed_by, user), sorted."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT agent_id, kind, value, started_at, ended_at, closed_by, user_id FROM interval "
                "WHERE agent_id LIKE :agent"
            ),
            {"agent": agent},
        ).all()

    def minutes(value: Any) -> float | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return (moment.replace(tzinfo=UTC) - at(0)).total_seconds() / 60

    found = [(r[0], r[1], r[2], minutes(r[3]), minutes(r[4]), r[5], r[6]) for r in rows]
    return sorted(found, key=lambda r: (r[0], r[1], r[3] or 0.0, r[2]))


def skipped_lines(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    lines = [r for r in caplog.records if r.getMessage() == "skipped an event row the builder cannot use"]
    found = {r.event_id: r.reason for r in lines}  # type: ignore[attr-defined]
    assert len(found) == len(lines), "a skipped row was logged more than once"
    return found


async def test_bad_rows_are_skipped_and_every_agent_still_built(
    redis_url: str,
    aredis: aioredis.Redis,
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Extreme times, seq 2**63-1, unparsable payloads in the table: both agents built, builder running."""
    caplog.set_level(logging.INFO)
    user = setup_accounts(engine)
    create_agent(engine, "acme", "pc-2", "bob")
    bad = insert_rows(engine)
    pc1, pc2 = Agent("acme", "pc-1"), Agent("acme", "pc-2")
    pc1.seq = 100
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    settings = settings_for(redis_url, database_url, tmp_path)
    try:
        worker = build_consumer(settings, engine, client)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await produce(
                aredis,
                "acme",
                [
                    pc1.entry(0, DutyPayload(on_duty=True)),
                    pc1.entry(25, IncidentPayload(kind="peeking", phase="start")),
                    pc1.entry(26, IncidentPayload(kind="peeking", phase="end")),
                    pc1.entry(30, StatePayload(state="away")),
                    pc2.entry(0, DutyPayload(on_duty=True)),
                    pc2.entry(0, StatePayload(state="present")),
                    pc2.entry(60, DutyPayload(on_duty=False)),
                ],
            )
            expected = [
                ("pc-1", "duty", "on", 0, None, None, user),
                ("pc-1", "presence", "present", 1, 30, "event", user),
                ("pc-1", "presence", "away", 30, None, None, user),
                ("pc-2", "duty", "on", 0, 60, "event", user),
                ("pc-2", "presence", "present", 0, 60, "event", user),
            ]
            await wait_until(lambda: by_agent(engine) == expected, what="both agents' intervals")
            await wait_until(lambda: len(incidents(engine)) == 1, what="pc-1's incident")
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)  # re-raises anything that ended it
        assert incidents(engine)[0][1:4] == ("peeking", 25, 26)
        assert skipped_lines(caplog) == expected_reasons(engine, bad)
        handler: BuildHandler = worker.handler
        assert (handler.stats.rows_skipped, handler.stats.failed) == (4, 0)
        assert (worker.stats.dead_lettered, worker.stats.acked) == (0, 7)

        # A restart with the bad rows still there: the silence pass closes pc-1 at its last good event.
        silent = settings.model_copy(update={"builder_silence_s": 60.0})
        again = build_consumer(silent, engine, client)
        stop = asyncio.Event()
        task = asyncio.create_task(again.run(stop))
        try:
            await wait_until(lambda: again.handler.stats.silent_closed == 1, what="the silence pass")
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)
    finally:
        await client.aclose()
    assert by_agent(engine) == [
        ("pc-1", "duty", "on", 0, 30, "silence", user),
        ("pc-1", "presence", "present", 1, 30, "event", user),
        ("pc-2", "duty", "on", 0, 60, "event", user),
        ("pc-2", "presence", "present", 0, 60, "event", user),
    ]
    assert again.handler.stats.failed == 0


async def test_an_error_while_building_one_agent_skips_only_that_agent(
    redis_url: str,
    aredis: aioredis.Redis,
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stored interval that cannot be read fails pc-1's build: one log line, pc-2 built, no exit."""
    caplog.set_level(logging.INFO)
    user = setup_accounts(engine)
    create_agent(engine, "acme", "pc-2", "bob")
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:  # an interval ending before year 1 in UTC (SQLite: a year-0 text)
        conn.execute(
            text(
                "INSERT INTO interval (tenant_id, agent_id, kind, value, started_at, ended_at, "
                "start_event_id) VALUES ('acme', 'pc-1', 'presence', 'present', :start, :end, 'x')"
            ),
            {
                "start": sql_time(engine, 1),
                "end": "0000-06-01 00:00:00" if sqlite else "0001-01-01 00:00:00+01",
            },
        )
    pc1, pc2 = Agent("acme", "pc-1"), Agent("acme", "pc-2")
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    try:
        worker = build_consumer(settings_for(redis_url, database_url, tmp_path), engine, client)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await produce(
                aredis,
                "acme",
                [pc1.entry(0, DutyPayload(on_duty=True)), pc2.entry(0, DutyPayload(on_duty=True))],
            )
            await wait_until(lambda: worker.stats.acked == 2, what="both entries acked")
            assert not task.done()
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)
    finally:
        await client.aclose()
    assert by_agent(engine, "pc-2") == [("pc-2", "duty", "on", 0, None, None, user)]
    errors = [
        r
        for r in caplog.records
        if r.getMessage() == "could not build; skipped until the agent's next events"
    ]
    expected = (
        "ValueError: year 0 is out of range" if sqlite else "sqlalchemy.exc.DataError: (psycopg.DataError)"
    )
    assert [r.error.startswith(expected) for r in errors] == [True], [r.error for r in errors]  # type: ignore[attr-defined]
    assert (worker.handler.stats.failed, worker.handler.stats.agents_built, worker.stats.dead_lettered) == (
        1,
        1,
        0,
    )


# ------------------------------------------------------------------ pure rules


def test_event_of_row_accepts_good_rows_and_names_what_is_wrong() -> None:
    """A good row (naive time as UTC, seq 2**63-1) is an Ev; each bad field is named with what arrived."""
    naive = datetime(2026, 11, 2, 9, 0)
    assert event_of_row("e1", MAX_SEQ, naive, "state", {"state": "away"}) == Ev(
        "e1", MAX_SEQ, naive.replace(tzinfo=UTC), "state", {"state": "away"}
    )
    cases = {
        "seq": (
            ("e1", MAX_SEQ + 1, naive, "state", {"state": "away"}),
            "seq: expected an integer from 1 to ",
        ),
        "float seq": (("e1", 9.2e18, naive, "gap", {}), "seq: expected an integer from 1 to "),
        "old": (("e1", 1, datetime(1999, 12, 31), "gap", {}), "ts: expected a time from 2000-01-01"),
        "text time": (
            ("e1", 1, "0001-12-31 23:00:00+00 BC", "gap", {}),
            "ts: expected a time from 2000-01-01",
        ),
        "payload": (("e1", 1, naive, "gap", [1]), "payload: expected a JSON object, got [1]"),
        "duty": (("e1", 1, naive, "duty", {"on_duty": "yes"}), "payload.on_duty: expected true or false"),
        "task": (
            ("e1", 1, naive, "task", {"task": "x" * 201}),
            "payload.task: expected none or a name of 1 to 200",
        ),
        "evidence": (
            ("e1", 1, naive, "incident", {"kind": "peeking", "phase": "end", "evidence": [1]}),
            "payload.evidence: expected a list of text, got [1]",
        ),
        "id": ((7, 1, naive, "gap", {}), "id: expected text, got 7"),
    }
    for name, (row, start) in cases.items():
        found = event_of_row(*row)
        assert isinstance(found, str) and found.startswith(start), (name, found)


@given(
    st.one_of(st.text(max_size=5), st.integers(), st.none()),
    st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.none(), st.booleans()),
    st.one_of(st.datetimes(), st.datetimes(timezones=st.just(UTC)), st.text(max_size=10), st.none()),
    st.one_of(st.sampled_from(["duty", "state", "task", "incident", "gap"]), st.integers()),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    ),
)
def test_event_of_row_never_raises(row_id: Any, seq: Any, ts: Any, kind: Any, payload: Any) -> None:
    """Whatever a row holds, the check answers an Ev in the time range or a reason; it never raises."""
    found = event_of_row(row_id, seq, ts, kind, payload)
    if isinstance(found, Ev):
        assert found.ts.tzinfo is UTC and datetime(2000, 1, 1, tzinfo=UTC) <= found.ts
    else:
        assert isinstance(found, str) and found


def test_seconds_before_stays_in_the_calendar() -> None:
    """Subtracting a merge window near year 1, or a huge one, gives the earliest datetime, not an error."""
    assert seconds_before(datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC), 60) == datetime.min.replace(tzinfo=UTC)
    assert seconds_before(at(0), 1e15) == datetime.min.replace(tzinfo=UTC)
    assert seconds_before(at(1), 60) == at(0)
