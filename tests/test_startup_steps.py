"""Start-up as steps: the agent's (sessions, outcome), the gateway's background tasks and listening
socket, the gateway process stopping in every phase of its start-up, the worker's entry."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.client import AgentSession
from agent.run import outcome, refused, running, source_ended, task_names, wait_at_most, wait_first
from agent.session_parts import SessionOptions
from core.config import ConfigError
from realtime.app import background
from realtime.serving import STARTUP_STOP_S, STOPPED_DURING_STARTUP, ListenFailed, listen_socket
from telework.up import free_port, http_ok
from tests.fault_kit import end, migrated_sqlite, server_env, spawn
from tests.waiting import wait_until_sync
from workers.__main__ import main as worker_main

# ------------------------------------------------------------------ agent: pure steps


def test_refused_only_when_every_session_was_refused() -> None:
    """The first refusal is reported only when no session is left running."""
    assert refused(["gateway closed the session with 1008: bad token", "x"]) == (
        "gateway closed the session with 1008: bad token"
    )
    assert refused(["gateway closed the session with 1008: bad token", None]) is None
    assert refused([]) is None


def test_task_names_splits_and_trims() -> None:
    """TELEWORK_AGENT_TASKS is comma-separated; blanks are dropped; none at all is None."""
    assert task_names(" design, review ,,") == ["design", "review"]
    assert task_names(" , ") is None
    assert task_names("") is None


def test_source_ended_only_when_the_monitor_stopped_by_itself() -> None:
    """Deliver-then-stop applies to a source running out, not to a stop or a refused session."""
    assert source_ended(True, False, None) is True
    assert source_ended(True, True, None) is False
    assert source_ended(True, False, "refused") is False
    assert source_ended(False, False, None) is False


def test_outcome_raises_the_monitor_failure_before_a_refusal() -> None:
    """0 when all went well; the monitor's own error wins over the gateway's refusal."""
    assert outcome(None, None) == 0
    with pytest.raises(ValueError, match=r"^camera gone$"):
        outcome(ValueError("camera gone"), "refused")
    with pytest.raises(ConfigError) as info:
        outcome(None, "gateway closed the session with 1008: revoked")
    assert info.value.key == "TELEWORK_AGENT_TOKEN"
    assert str(info.value) == (
        "TELEWORK_AGENT_TOKEN: the gateway refused the session: gateway closed the session with 1008: revoked"
    )


# ------------------------------------------------------------------ agent: sessions


def _unreachable() -> str:
    return f"ws://127.0.0.1:{free_port()}/v1/agent"  # nothing listens: the session backs off and retries


async def test_running_stops_every_session_on_the_way_out() -> None:
    """A stop ends the wait; leaving `running` stops and awaits every session's loop."""
    sessions = [AgentSession(_unreachable(), "t", SessionOptions(), name=n) for n in ("a", "b")]
    stop = asyncio.Event()
    stop.set()
    async with running(*sessions) as runners:
        await wait_first(stop, *runners)
        assert [r.get_name() for r in runners] == ["session-a", "session-b"]
    assert [r.done() and r.exception() is None for r in runners] == [True, True]
    assert [s.fatal for s in sessions] == [None, None]


async def test_a_session_refused_for_good_ends_the_wait() -> None:
    """A session that ends by itself (a bad gateway URL is fatal) ends the wait without a stop."""
    bad = AgentSession("not a url", "t", SessionOptions(), name="bad")
    good = AgentSession(_unreachable(), "t", SessionOptions(), name="good")
    stop = asyncio.Event()
    async with running(bad, good) as (bad_runner, good_runner):
        await wait_first(stop, bad_runner, good_runner)
        assert (bad_runner.done(), good_runner.done(), stop.is_set()) == (True, False, False)
    assert good_runner.done()
    assert refused([bad.fatal, good.fatal]) is None
    assert bad.fatal is not None and bad.fatal.startswith("bad gateway URL: ")


async def test_wait_at_most_gives_up_quietly() -> None:
    """Running out of time is not an error; the awaitable is cancelled."""
    never = asyncio.Event()
    await wait_at_most(0.0, never.wait())
    assert not never.is_set()


# ------------------------------------------------------------------ gateway: background tasks


async def test_background_stops_in_reverse_order_of_start() -> None:
    """Tasks entered on one exit stack stop last-started first: a stop callback, or a cancel."""
    order: list[str] = []
    writer_stop, listening = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        await writer_stop.wait()
        order.append("writer finished")

    async def listener() -> None:
        listening.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            order.append("listener cancelled")
            raise

    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(background("writer", writer(), writer_stop.set))
        await stack.enter_async_context(background("listener", listener()))
        await listening.wait()
    assert order == ["listener cancelled", "writer finished"]


async def test_background_raises_the_failure_of_its_task() -> None:
    """A background task that failed is not silent: leaving the step raises its error."""

    async def broken() -> None:
        raise RuntimeError("redis went away")

    with pytest.raises(RuntimeError, match=r"^redis went away$"):
        async with background("broken", broken(), stop=lambda: None):
            pass


# ------------------------------------------------------------------ gateway: listening, stopping


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A port some other program listens on (it never accepts: a peer that never answers)."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(16)
        yield int(holder.getsockname()[1])


def taken_message(port: int) -> str:
    return (
        f"cannot listen on 127.0.0.1:{port}: Address already in use "
        "(set another address with --host/--port or TELEWORK_GATEWAY_HOST/TELEWORK_GATEWAY_PORT)"
    )


def test_listen_socket_listens_before_anything_starts() -> None:
    """The gateway's socket is bound and listening when listen_socket returns: a client connects."""
    with listen_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


def test_listen_socket_on_a_taken_port_is_one_line_naming_the_address() -> None:
    """A port another program listens on: ListenFailed (an operator error) naming the address."""
    with taken_port() as port, pytest.raises(ListenFailed) as caught:
        listen_socket("127.0.0.1", port)
    assert str(caught.value) == taken_message(port)


def test_gateway_with_its_port_taken_exits_2_at_once(tmp_path: Path, redis_url: str) -> None:
    """`telework gateway` on a taken port: exit code 2 within seconds, one line on stderr naming the
    address (it used to start its background tasks, fail to bind, and hang, deaf to SIGTERM)."""
    env = server_env(
        TELEWORK_REDIS_URL=redis_url,
        TELEWORK_DATABASE_URL=migrated_sqlite(tmp_path),
        TELEWORK_DATA_DIR=str(tmp_path),
        TELEWORK_LOG_LEVEL="WARNING",
    )
    with taken_port() as port:
        done = subprocess.run(
            [*GATEWAY, "--port", str(port)], env=env, capture_output=True, text=True, timeout=30, check=False
        )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"telework gateway: error: {taken_message(port)}\n"


GATEWAY = [sys.executable, "-m", "telework", "gateway"]


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["importing", "database not answering", "serving"])
def test_sigterm_ends_the_gateway_in_every_phase_of_start_up(
    tmp_path: Path, redis_url: str, phase: str
) -> None:
    """SIGTERM while the gateway imports, while its start-up waits on a database that never answers,
    or once it serves: the process ends within a few seconds (a stuck start-up used to ignore it)."""
    port = free_port()
    with taken_port() as silent_database:
        database_url = (
            f"postgresql://telework@127.0.0.1:{silent_database}/telework"
            if phase == "database not answering"
            else migrated_sqlite(tmp_path)
        )
        env = server_env(
            TELEWORK_REDIS_URL=redis_url,
            TELEWORK_DATABASE_URL=database_url,
            TELEWORK_DATA_DIR=str(tmp_path),
            TELEWORK_GATEWAY_PORT=str(port),
        )
        log = tmp_path / "gateway.log"
        proc = spawn(["gateway"], env, log)
        try:
            if phase == "database not answering":
                wait_until_sync(lambda: "Waiting for application startup." in log.read_text(), 30, 0.05)
            elif phase == "serving":
                wait_until_sync(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, 0.05)
            assert proc.poll() is None, log.read_text()
            asked = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(STARTUP_STOP_S + 7)
            took = time.monotonic() - asked
        finally:
            end(proc)
    expected = {
        "importing": -signal.SIGTERM,  # Python's default handler: killed by the signal
        "database not answering": STOPPED_DURING_STARTUP,
        "serving": -signal.SIGTERM,  # uvicorn stops cleanly, then raises the signal again
    }
    assert (code, took < STARTUP_STOP_S + 3) == (expected[phase], True), log.read_text()
    if phase == "database not answering":
        assert "stop signal during start-up; start-up did not finish, ending the gateway" in log.read_text()


# ------------------------------------------------------------------ worker entry point


def test_worker_bad_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m workers` with a bad TELEWORK_* value: one line on stderr, exit code 2."""
    monkeypatch.setenv("TELEWORK_WORKER_BATCH", "0")
    assert worker_main() == 2
    assert capsys.readouterr().err == (
        "telework worker: error: TELEWORK_WORKER_BATCH: "
        "Input should be greater than or equal to 1 (got '0')\n"
    )
