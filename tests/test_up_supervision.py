"""`telework up` keeps its children running: a child that dies is restarted with capped backoff; a
child stopping on a configuration error before it was ready brings `up` down, as before."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from core.settings import sqlite_url
from realtime import keys
from realtime.embedded_redis import free_port, stop_orphan
from realtime.protocol import Ack, Welcome, encode
from realtime.redis_client import server_redis
from telework.supervisor import (
    STABLE_AFTER_S,
    ChildHistory,
    ChildSpec,
    ExitDecision,
    Supervisor,
    on_child_exit,
    restart_delay,
)
from telework.up import http_ok
from tests.fault_kit import ROOT, next_frame_of, provision, say_hello, server_env, state_events, stored_events
from tests.waiting import wait_until, wait_until_sync

# ------------------------------------------------------------------ pure decisions


def test_restart_delay_doubles_from_1_s_to_30_s() -> None:
    """1 s before the first restart in a row, doubling, never more than 30 s."""
    assert [restart_delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert restart_delay(1000) == 30.0
    with pytest.raises(ValueError, match=r"^streak: expected >= 1, got 0$"):
        restart_delay(0)


def test_a_child_that_dies_is_restarted_after_a_growing_delay() -> None:
    """A first death: restart in 1 s (restart 1); the third in a row waits 4 s; counts are kept."""
    first = on_child_exit("gateway", -9, False, None, ran_s=3.0)
    assert first == ExitDecision(
        False,
        None,
        logging.WARNING,
        "gateway died (killed by signal 9); restarting in 1 s (restart 1)",
        1.0,
        ChildHistory(restarts=1, streak=1, ever_ready=False),
    )
    third = on_child_exit("worker-1", 3, False, ChildHistory(2, 2, True), ran_s=5.0)
    assert (third.shutdown, third.restart_in_s, third.history) == (False, 4.0, ChildHistory(3, 3, True))
    assert third.message == "worker-1 died (exit code 3); restarting in 4 s (restart 3)"


def test_a_child_that_ran_a_minute_starts_its_backoff_over() -> None:
    """After STABLE_AFTER_S of running, the next restart waits 1 s again (the total still counts)."""
    decision = on_child_exit("builder", 1, False, ChildHistory(7, 6, False), ran_s=STABLE_AFTER_S)
    assert (decision.restart_in_s, decision.history) == (1.0, ChildHistory(8, 1, True))
    assert decision.message == "builder died (exit code 1); restarting in 1 s (restart 8)"


def test_exit_2_before_ready_stops_everything_and_after_ready_restarts() -> None:
    """Exit code 2 of a server before it was ever ready is a configuration error (up exits 2); once
    it was ready (or ran a minute), exit 2 is one more death and it is restarted; an agent child's
    exit 2 always is."""
    config_error = on_child_exit("gateway", 2, False, None, ran_s=1.5)
    assert config_error == ExitDecision(
        True,
        2,
        logging.ERROR,
        "gateway exited with code 2 before it was ready: a configuration error (its message is above); "
        "stopping everything",
    )
    after_ready = on_child_exit("gateway", 2, False, ChildHistory(ever_ready=True), ran_s=1.5)
    assert (after_ready.shutdown, after_ready.restart_in_s) == (False, 1.0)
    after_a_minute = on_child_exit("gateway", 2, False, None, ran_s=STABLE_AFTER_S + 1)
    assert (after_a_minute.shutdown, after_a_minute.restart_in_s) == (False, 1.0)
    for agent in ("agents", "camera-agent"):  # refused by the gateway (an erased user): not the servers'
        refused = on_child_exit(agent, 2, False, None, ran_s=1.5)
        assert (refused.shutdown, refused.exit_code, refused.restart_in_s) == (False, None, 1.0)


def test_an_exit_during_a_stop_is_expected_and_a_clean_exit_otherwise_is_a_death() -> None:
    """While stopping, exits are logged at INFO and nothing restarts; exit 0 otherwise is restarted."""
    assert on_child_exit("worker-1", -15, True, ChildHistory(1, 1, True), ran_s=0.1) == ExitDecision(
        False, None, logging.INFO, "worker-1 stopped (killed by signal 15)"
    )
    assert on_child_exit("dashboard", 0, False).restart_in_s == 1.0


# ------------------------------------------------------------------ the supervisor, real children

# Exits 3 the first time (it leaves a mark), then runs until stopped.
DIES_ONCE = (
    "import pathlib, sys, time\n"
    "mark = pathlib.Path(sys.argv[1])\n"
    "if not mark.exists():\n"
    "    mark.touch()\n"
    "    sys.exit(3)\n"
    "time.sleep(120)\n"
)


def test_supervisor_restarts_a_dead_child_and_says_so(tmp_path: Path) -> None:
    """A child that dies is started again after 1 s with a new pid; the line is said and counted."""
    said: list[str] = []
    spec = ChildSpec("flaky", [sys.executable, "-c", DIES_ONCE, str(tmp_path / "mark")])
    supervisor = Supervisor([spec], {}, grace_s=5.0, say=said.append)
    supervisor.start(spec)
    first = supervisor.procs["flaky"].pid
    try:
        started = time.monotonic()

        def restarted() -> bool:
            assert supervisor.poll() is None
            proc = supervisor.procs.get("flaky")
            return proc is not None and proc.pid != first

        wait_until_sync(restarted, 20, 0.05, "flaky restarted")
        assert time.monotonic() - started >= 1.0
        assert said == ["flaky died (exit code 3); restarting in 1 s (restart 1)"]
        assert supervisor.restart_counts() == {"flaky": 1}
        assert supervisor.procs["flaky"].poll() is None
    finally:
        supervisor.stop_all()
    assert supervisor.procs == {}


def test_supervisor_stops_on_a_configuration_error_before_ready(tmp_path: Path) -> None:
    """A child exiting 2 at once: poll returns the decision that brings `up` down; nothing restarts."""
    spec = ChildSpec("gateway", [sys.executable, "-c", "import sys; sys.exit(2)"])
    supervisor = Supervisor([spec], {}, grace_s=5.0)
    supervisor.start(spec)
    decision = wait_until_sync(supervisor.poll, 20, 0.05, "the exit seen")
    assert decision is not None
    assert (decision.shutdown, decision.exit_code, supervisor.due, supervisor.procs) == (True, 2, {}, {})


# ------------------------------------------------------------------ a real `up`


async def persisted_all(redis: aioredis.Redis, tenant: str) -> bool:
    """The `persist` group has read and acked every entry of the tenant's stream."""
    stream = keys.events_stream(tenant)
    newest = await redis.xrevrange(stream, count=1)
    assert newest, f"expected entries in {stream}"
    last_id = newest[0][0]
    groups = {g["name"]: g for g in await redis.xinfo_groups(stream)}
    persist = groups.get(keys.PERSIST_GROUP)
    if persist is None:
        return False  # the new worker has not created its group yet
    return bool(persist["last-delivered-id"] == last_id and persist["pending"] == 0)


def up_children(up: psutil.Process, command: str) -> list[int]:
    """Pids of the children of `up` running ``telework COMMAND``."""
    found = []
    for child in up.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline()[-1:] == [command]:
                found.append(child.pid)
        except psutil.Error:  # gone, or a zombie `up` has not reaped yet
            continue
    return found


@pytest.mark.slow
async def test_up_replaces_a_killed_worker_and_keeps_persisting(tmp_path: Path) -> None:
    """A running `up`: its worker SIGKILLed is replaced (new pid) after 1 s, the terminal is told,
    and events sent after it are read by the new worker and stored; SIGTERM then stops `up` (exit 0)."""
    data = tmp_path / "data"
    gateway_port, dashboard_port = free_port(), free_port()
    env = server_env(
        TELEWORK_DATA_DIR=str(data),
        TELEWORK_GATEWAY_PORT=str(gateway_port),
        TELEWORK_DASHBOARD_PORT=str(dashboard_port),
        TELEWORK_TENANT_REFRESH_S="0.2",
    )
    log = tmp_path / "up.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "telework", "up", "--workers", "1"],
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    try:
        up = psutil.Process(proc.pid)
        healthz = f"http://127.0.0.1:{gateway_port}/healthz"
        await wait_until(lambda: http_ok(healthz) or proc.returncode is not None, 90, 0.1, "gateway up")
        assert proc.returncode is None, log.read_text()
        database_url = sqlite_url(data)
        tenant, (token,) = provision(database_url)
        async with connect(f"ws://127.0.0.1:{gateway_port}/v1/agent", proxy=None) as ws:
            assert isinstance(await say_hello(ws, token), Welcome)
            await ws.send(encode(state_events(1, 5)))
            assert (await next_frame_of(ws, Ack)).seq == 5
            await wait_until(lambda: stored_events(database_url, tenant) == 5, 30, 0.1, "5 events stored")

            (worker,) = await wait_until(lambda: up_children(up, "worker"), 10, 0.1, "the worker")
            psutil.Process(worker).send_signal(signal.SIGKILL)
            replaced = await wait_until(
                lambda: [p for p in up_children(up, "worker") if p != worker], 15, 0.1, "a new worker"
            )
            assert len(replaced) == 1 and proc.returncode is None

            await ws.send(encode(state_events(6, 5)))
            assert (await next_frame_of(ws, Ack)).seq == 10
            await wait_until(lambda: stored_events(database_url, tenant) == 10, 30, 0.1, "10 events stored")
            redis = server_redis((data / "redis.url").read_text().strip())
            try:
                await wait_until(
                    lambda: persisted_all(redis, tenant), 30, 0.1, "the new worker read everything"
                )
            finally:
                await redis.aclose()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text()
        assert proc.stdout is not None
        said = (await proc.stdout.read()).decode().splitlines()
        assert "worker-1 died (killed by signal 9); restarting in 1 s (restart 1)" in said
        assert "worker-1 died (killed by signal 9); restarting in 1 s (restart 1)" in log.read_text()
    finally:
        if proc.returncode is None:
            leftovers = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            for child in leftovers:  # the embedded Redis too: it holds our stdout pipe open
                child.kill()
            await proc.wait()
        stop_orphan(data / "redis")  # an embedded Redis left by a failure above
