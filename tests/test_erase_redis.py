"""erase-user reaches Redis: the person's stream entries, dead letters and live states go, and
nothing the erasure deletes comes back as a dead letter."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.ids import SLUG_RE
from realtime import keys
from realtime.erase import RedisErasure, entry_agent, erase_agents, letter_agent, still_online
from realtime.protocol import DeadLetter, LiveRemoved, LiveState, encode, parse_record
from storage import accounts
from storage.audit_models import AuditEntry
from storage.keyring import ensure_master_key
from storage.personal_data import find_subject
from tests.test_cli_data import _call, _parser
from tests.test_worker import count_rows, event_json, events, produce, running, settings_for
from tests.waiting import wait_until
from web import keys as web_keys
from web import session_store
from workers.persist import persist_consumer

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TENANT = "acme"


def letter(fields: dict[str, str]) -> dict[Any, Any]:
    """A dead-letter stream entry for a failed entry with ``fields``."""
    dead = DeadLetter(
        stream=keys.events_stream(TENANT),
        entry_id="1-1",
        reason="r",
        deliveries=1,
        fields=fields,
        failed_at=T,
    )
    return {keys.ENTRY_FIELD: encode(dead)}


def live(agent: str, user: str) -> LiveState:
    return LiveState(
        tenant=TENANT, agent_id=agent, user=user, online=True, state="present", on_duty=True, task="sales",
        since=T, last_seen=T, last_seq=7, session_id="s1",
    )  # fmt: skip


# --------------------------------------------------------------------------- pure


def test_entries_and_letters_name_their_agent() -> None:
    """A stream entry by its JSON; a letter by its failed entry, parsed or (not JSON) by its mention."""
    assert entry_agent({"e": event_json(TENANT, 1, "pc-1")}) == "pc-1"
    assert entry_agent({b"e": event_json(TENANT, 1, "pc-1").encode()}) == "pc-1"
    assert entry_agent({"e": '{"agent_id": "pc-1", "v": '}) == "pc-1"
    assert entry_agent({}) is None
    assert letter_agent(letter({"e": event_json(TENANT, 1, "pc-2")})) == "pc-2"
    assert letter_agent(letter({"e": 'truncated {"tenant":"acme","agent_id":"pc-3","sess'})) == "pc-3"
    assert letter_agent(letter({})) is None


def test_still_online_reads_each_agents_live_state() -> None:
    """Online states are named in order; offline, absent and unreadable ones are not."""
    offline = live("pc-2", "ben").model_copy(update={"online": False})
    held = [encode(live("pc-1", "aiko")), encode(offline), None, "{not json", encode(live("pc-5", "eve"))]
    assert still_online(["pc-1", "pc-2", "pc-3", "pc-4", "pc-5"], held) == ["pc-1", "pc-5"]


@given(st.dictionaries(st.one_of(st.text(), st.binary()), st.one_of(st.text(), st.binary()), max_size=4))
def test_any_fields_parse_without_error(fields: dict[str | bytes, str | bytes]) -> None:
    """Whatever an entry or letter holds, the parsers answer an agent id or None, never raise."""
    for found in (entry_agent(fields), letter_agent(fields)):
        assert found is None or isinstance(found, str)


@given(st.from_regex(SLUG_RE, fullmatch=True))
def test_any_agent_id_is_found_in_its_entry_and_letter(agent: str) -> None:
    """Every valid agent id is read back from its own entry and from a letter about it."""
    text = event_json(TENANT, 1, agent)
    assert entry_agent({"e": text}) == agent
    assert letter_agent(letter({"e": text})) == agent
    assert letter_agent(letter({"e": text[:-3]})) == agent


# --------------------------------------------------------------------------- Redis


async def _world(client: aioredis.Redis) -> tuple[list[str], list[str]]:
    """pc-1 (the person) and pc-2 in the stream, 50 of 60 read by persist worker w1 and not acked;
    letters about pc-1 (one unparsable), pc-2 and nobody; both agents' live states."""
    stream = keys.events_stream(TENANT)
    for name in keys.REQUIRED_GROUPS:
        await client.xgroup_create(stream, name, id="0", mkstream=True)
    first = await produce(client, TENANT, events(TENANT, 30, "pc-1") + events(TENANT, 20, "pc-2"))
    await client.xreadgroup(keys.PERSIST_GROUP, "w1", {stream: ">"}, count=50)
    late = await produce(client, TENANT, events(TENANT, 10, "pc-1"))
    failed: list[dict[str, str]] = [
        {"e": event_json(TENANT, 1, "pc-1")},
        {"e": '{"agent_id": "pc-1", "event": {'},
        {"e": event_json(TENANT, 1, "pc-2")},
        {},
    ]
    for fields in failed:
        await client.xadd(keys.dead_letter_stream(TENANT), letter(fields))
    for agent, user in (("pc-1", "aiko"), ("pc-2", "ben")):
        await client.hset(keys.live_hash(TENANT), agent, encode(live(agent, user)))
    return first, late


async def _range(client: aioredis.Redis, key: str) -> list[tuple[str, dict[str, str]]]:
    return await client.xrange(key)  # type: ignore[return-value]


async def test_erase_removes_the_agents_entries_letters_and_live_states(aredis: aioredis.Redis) -> None:
    """40 entries (30 pending, 10 never delivered), 2 letters and 1 live state of pc-1 go; pc-2's
    stay; the pending ones are acked, and live pages are told to drop the agent's row."""
    first, _ = await _world(aredis)
    pubsub = aredis.pubsub()
    await pubsub.subscribe(keys.live_channel(TENANT))
    now = datetime.now(UTC)
    erased = await erase_agents(aredis, TENANT, ["pc-1"], now, page=7)
    assert erased == RedisErasure(events=40, dead_letters=2, live_states=1)
    stream = keys.events_stream(TENANT)
    remaining = await _range(aredis, stream)
    assert [entry_id for entry_id, _ in remaining] == first[30:]
    assert {entry_agent(fields) for _, fields in remaining} == {"pc-2"}
    pending = await aredis.xpending_range(stream, keys.PERSIST_GROUP, "-", "+", 100)
    assert [p["message_id"] for p in pending] == first[30:]
    letters = [fields for _, fields in await _range(aredis, keys.dead_letter_stream(TENANT))]
    assert [letter_agent(f) for f in letters] == ["pc-2", None]
    assert list(await aredis.hkeys(keys.live_hash(TENANT))) == ["pc-2"]
    message = await wait_until(lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1))
    assert parse_record(message["data"], LiveRemoved) == LiveRemoved(tenant=TENANT, agent_id="pc-1", at=now)
    await pubsub.aclose()
    assert await erase_agents(aredis, TENANT, ["pc-1"], now) == RedisErasure()


async def test_erased_pending_entries_never_become_dead_letters(
    aredis: aioredis.Redis, redis_url: str, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """The worker that had read them restarts: it stores pc-2's 20 and writes no dead letter at all."""
    await _world(aredis)
    await erase_agents(aredis, TENANT, ["pc-1"], datetime.now(UTC))
    letters = await aredis.xlen(keys.dead_letter_stream(TENANT))
    worker = persist_consumer(
        settings_for(redis_url, database_url, tmp_path, claim_idle_ms=100), engine, aredis
    )
    async with running(worker):
        await wait_until(lambda: _stored(engine, 20), timeout=20, what="pc-2's 20 events stored")
        await wait_until(lambda: worker.stats.claimed == 0 and worker.stats.read == 20)
    assert (worker.stats.dead_lettered, await aredis.xlen(keys.dead_letter_stream(TENANT))) == (0, letters)


async def _stored(engine: Engine, n: int) -> bool:
    return await count_rows(engine, TENANT) == n


# --------------------------------------------------------------------------- the command


@pytest.fixture
def cli(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> argparse.ArgumentParser:
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    ensure_master_key(tmp_path)
    accounts.create_tenant(engine, TENANT, "Acme")
    accounts.create_user(engine, TENANT, "aiko", "Aiko")
    accounts.create_agent(engine, TENANT, "pc-1", "aiko")
    return _parser()


def test_erase_user_reaches_redis_and_audits_the_counts(
    cli: argparse.ArgumentParser,
    engine: Engine,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """erase-user prints what it removed per Redis key and records it in `user.erase` by user id;
    their web console sessions end; a live state still online after the wait (no gateway marked it
    offline) is warned about."""
    monkeypatch.setenv("TELEWORK_REDIS_URL", redis_url)
    monkeypatch.setenv("TELEWORK_REVOCATION_CHECK_S", "0.1")

    async def fill() -> str:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await _world(client)
            token, _ = await session_store.begin(
                client, user_id=1, tenant=TENANT, version=1, now=0.0, address="192.0.2.7", absolute_s=3600
            )
            return token
        finally:
            await client.aclose()

    web_token = asyncio.run(fill())
    assert (
        _call(cli, tmp_path, "admin", "erase-user", "--tenant", TENANT, "aiko", "--yes", "--actor", "dpo")
        == 0
    )
    printed = capsys.readouterr()
    out = printed.out.splitlines()
    assert out[0] == "user aiko of tenant acme erased (user:1)"
    assert out[-6:-2] == [
        "  redis tw:{acme}:events: 40 removed",
        "  redis tw:{acme}:dead: 2 removed",
        "  redis tw:{acme}:live: 1 removed",
        "  redis tw:{acme}:web-sessions:1: 1 removed",
    ]

    async def web_session_left() -> bool:
        client = aioredis.Redis.from_url(redis_url)
        try:
            gone = await session_store.load(client, web_token) is None
            return not gone or bool(await client.exists(web_keys.user_sessions_key(TENANT, 1)))
        finally:
            await client.aclose()

    assert asyncio.run(web_session_left()) is False
    assert out[-2] == "  redis: settings cache rewritten"
    assert out[-1] in ("  redis: append-only file rewritten", "  redis: no append-only file")
    assert printed.err.splitlines() == [
        "telework admin: warning: agents pc-1 still looked online after 5.2 s (a gateway that stopped?); "
        "their tokens are revoked"
    ]
    with Session(engine) as s:
        entries = list(s.execute(select(AuditEntry).order_by(col(AuditEntry.seq))).scalars())
    erasure = {e.action: e for e in entries if e.action.startswith("user.erase")}
    assert list(erasure) == ["user.erase.revoke", "user.erase", "user.erase.finish"]
    assert {(e.actor, e.tenant_id, e.target) for e in erasure.values()} == {("dpo", TENANT, "user:1")}
    assert erasure["user.erase"].detail["redis"] == {"events": 40, "dead_letters": 2, "live_states": 1}
    assert erasure["user.erase.finish"].detail["redis"] == {
        "tw:{acme}:events": 40, "tw:{acme}:dead": 2, "tw:{acme}:live": 1, "tw:{acme}:web-sessions:1": 1,
    }  # fmt: skip


def test_erase_user_refuses_before_erasing_when_redis_is_down(
    cli: argparse.ArgumentParser,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A configured Redis that cannot be reached: one line, exit 2, and the user is still there."""
    monkeypatch.setenv("TELEWORK_REDIS_URL", "redis://127.0.0.1:1/0")
    assert _call(cli, tmp_path, "admin", "erase-user", "--tenant", TENANT, "aiko", "--yes") == 2
    err = capsys.readouterr().err
    assert err.startswith("telework admin: error: Redis at redis://127.0.0.1:1/0 cannot be reached (")
    assert err.endswith("nothing was erased, run it again once Redis is up\n")
    assert find_subject(engine, TENANT, "aiko").agents == ("pc-1",)


def test_export_refuses_when_its_redis_is_down(
    cli: argparse.ArgumentParser,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A configured Redis that cannot be reached: one line naming it (password hidden), no zip."""
    monkeypatch.setenv("TELEWORK_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    out = tmp_path / "aiko.zip"
    assert _call(cli, tmp_path, "admin", "export-user", "--tenant", TENANT, "aiko", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("telework admin: error: Redis at redis://:***@127.0.0.1:1/0 cannot be reached (")
    assert err.endswith(
        "export-user includes what Redis holds about the user: nothing was exported, "
        "run it again once Redis is up\n"
    )
    assert not out.exists()
