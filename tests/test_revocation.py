"""Revocation reaches open sessions within 5 s on every gateway; a database outage closes none."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from agent.client import AgentSession
from agent.session_parts import SessionOptions
from realtime.protocol import Heartbeat, encode
from realtime.revocation import RevocationCheck
from storage.accounts import (
    BULK_LOOKUP_MAX,
    create_agent,
    hash_token,
    invalid_tokens,
    lookup_token,
    reissue_token,
    revoke_agent,
)
from storage.db import make_engine
from tests.test_gateway import closed_with, gateway_on, provision, recv, session
from tests.test_gateway import sqlite_db as sqlite_db  # fixture
from tests.test_two_gateways import two_gateways
from tests.waiting import wait_until

FAST = SessionOptions(backoff_base_s=0.05, backoff_cap_s=0.3, open_timeout_s=5)


def test_invalid_tokens_names_revoked_reissued_and_unknown_tokens_in_bulk(
    database_url: str, engine: Engine
) -> None:
    """Of valid, revoked, reissued-away and unknown hashes (past one query's chunk), exactly the
    no-longer-valid ones come back."""
    tenant, agent_id, token = provision(database_url)
    revoked = create_agent(engine, tenant, "pc-revoked")
    old = create_agent(engine, tenant, "pc-reissued")
    new = reissue_token(engine, "pc-reissued")
    revoke_agent(engine, "pc-revoked")
    unknown = {hashlib.sha256(str(i).encode()).hexdigest() for i in range(BULK_LOOKUP_MAX + 1)}
    asked = {hash_token(t) for t in (token, revoked, old, new)} | unknown
    assert invalid_tokens(engine, asked) == {hash_token(revoked), hash_token(old)} | unknown
    assert invalid_tokens(engine, []) == set()
    identity = lookup_token(engine, token)
    assert identity is not None and identity.token_hash == hash_token(token)
    assert agent_id == identity.agent_id


async def test_a_revoked_agent_is_closed_1008_within_5_s_on_both_gateways(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Two agents, one on each gateway, revoked: both closed 1008 'agent token revoked' within 5 s
    (the default check period); a third agent's session stays up."""
    async with two_gateways(database_url, redis_url, tmp_path) as pair:
        engine = make_engine(database_url)
        try:
            other = create_agent(engine, pair.tenant, "pc-other", "alice")
            keeper = create_agent(engine, pair.tenant, "pc-keeper", "alice")
        finally:
            engine.dispose()
        agents = [
            AgentSession(pair.url(pair.a_port), pair.token, FAST, name="on-a"),
            AgentSession(pair.url(pair.b_port), other, FAST, name="on-b"),
            AgentSession(pair.url(pair.b_port), keeper, FAST, name="keeper"),
        ]
        runners = [asyncio.create_task(a.run()) for a in agents]
        try:
            await asyncio.gather(*(asyncio.wait_for(a.connected.wait(), 10) for a in agents))
            engine = make_engine(database_url)
            try:
                revoke_agent(engine, pair.agent_id)
                revoke_agent(engine, "pc-other")
            finally:
                engine.dispose()
            revoked_at = time.monotonic()
            await asyncio.wait_for(asyncio.gather(runners[0], runners[1]), 5)
            elapsed = time.monotonic() - revoked_at
            assert [a.fatal for a in agents] == [
                "gateway closed the session with 1008: agent token revoked",
                "gateway closed the session with 1008: agent token revoked",
                None,
            ]
            assert elapsed < 5
            assert (pair.a.session_count(), pair.b.session_count()) == (0, 1)
            assert agents[2].connects == 1 and agents[2].connected.is_set()
        finally:
            for a in agents:
                a.stop()
            await asyncio.gather(*runners)


def dead_database() -> Engine:
    """An engine on a PostgreSQL port nobody listens on: every query fails to connect."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/none?connect_timeout=2")


async def test_a_database_outage_is_logged_and_retried_and_closes_no_session(
    sqlite_db: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database does not answer the check fails (logged) and retries; the session stays up.
    Back on a working database, the revoked session is closed and its token leaves the auth cache."""
    caplog.set_level(logging.WARNING, logger="realtime.revocation")
    async with (
        gateway_on(sqlite_db, redis_url, tmp_path, revocation_check_s=3600) as running,
        session(running) as (ws, _welcome),
    ):
        gateway = running.gateway
        good = make_engine(sqlite_db)
        dead = dead_database()
        try:
            revoke_agent(good, running.agent_id)
            stop = asyncio.Event()
            failing = RevocationCheck(gateway.registry.all, gateway.auth, partial(invalid_tokens, dead), 0.05)
            task = asyncio.create_task(failing.run(stop))
            await wait_until(lambda: failing.failures >= 2, 20, what="two failed checks")
            stop.set()
            await task
            assert (failing.closed, failing.rounds, gateway.session_count()) == (0, 0, 1)
            warning = next(r for r in caplog.records if r.name == "realtime.revocation")
            assert warning.getMessage() == "revocation check failed; sessions kept, retrying"
            assert warning.error.startswith("OperationalError: ")  # type: ignore[attr-defined]
            await ws.send(encode(Heartbeat(ts=datetime.now(UTC))))
            assert (await recv(ws)).type == "heartbeat"

            assert gateway.auth.cached(running.token) is not None
            working = RevocationCheck(gateway.registry.all, gateway.auth, partial(invalid_tokens, good), 0.05)
            assert await working.run_once() == 1
            assert await closed_with(ws) == (1008, "agent token revoked")
            assert gateway.auth.cached(running.token) is None
            assert gateway.auth.cached_hashes() == set()
        finally:
            good.dispose()
            dead.dispose()
