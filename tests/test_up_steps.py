"""`telework up` as a list of steps: the pure ones, the undo order of what a step starts, the data
folder's lock, and the embedded Redis a killed `up` left behind."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import redis

import realtime.embedded_redis
from core.config import ConfigError
from core.settings import ServerSettings
from realtime.embedded_redis import PID_FILE, is_embedded_redis, read_pid
from telework.data_folder import LOCK_FILE, DataFolderBusy, lock_data_folder
from telework.supervisor import ChildSpec, ExitDecision
from telework.up import (
    Resolved,
    choose_tenant,
    plan_children,
    private_entries,
    split_agents,
    supervise,
    wait_ready,
)
from telework.up_steps import embedded_master_key, start_or_use_redis
from tests.fault_kit import ROOT, server_env

RESOLVED = Resolved(
    redis_url="redis://127.0.0.1:7000/0",
    database_url="sqlite:////d/telework.db",
    data_dir=Path("/d"),
    gateway_host="127.0.0.1",
    gateway_port=8700,
    dashboard_host="127.0.0.1",
    dashboard_port=8701,
)
DIED = ExitDecision(True, 2, logging.ERROR, "worker-1 exited with code 2 before it was ready: ...")


class Polls:
    """A supervisor stand-in: hands out the given decisions, one per poll, then None."""

    def __init__(self, *decisions: ExitDecision | None) -> None:
        self.decisions = list(decisions)
        self.polls = 0

    def poll(self) -> ExitDecision | None:
        self.polls += 1
        return self.decisions.pop(0) if self.decisions else None


def test_split_agents_starts_servers_first_and_agents_after() -> None:
    """Servers keep their start order; the simulated and camera agents come after them."""
    specs = plan_children("/py", RESOLVED, 1, "h", Path("/d/sim.json"), 1.0, camera_token="twa_x")
    servers, agents = split_agents(specs)
    assert [s.name for s in servers] == [
        "gateway",
        "worker-1",
        "builder",
        "rollup",
        "retention",
        "web",
    ]
    assert [s.name for s in agents] == ["agents", "camera-agent"]


def test_split_agents_without_demo_has_no_agents() -> None:
    """Without --demo every child is a server."""
    specs = [ChildSpec("gateway", ["g"]), ChildSpec("worker-1", ["w"])]
    assert split_agents(specs) == (specs, [])


def test_the_live_page_shows_an_existing_tenant_or_none() -> None:
    """A named tenant must exist; else the demo's with --demo, the first existing one, or none."""
    assert choose_tenant(None, False, ["zeta", "acme"]) == "acme"
    assert choose_tenant(None, False, []) is None
    assert choose_tenant(None, True, []) == "demo"
    assert choose_tenant("zeta", False, ["zeta", "acme"]) == "zeta"
    with pytest.raises(ConfigError) as caught:
        choose_tenant("demo", False, ["zeta", "acme"])
    assert (
        str(caught.value) == "TELEWORK_DASHBOARD_TENANT: no tenant 'demo' to show (the tenants: acme, zeta)"
    )
    with pytest.raises(ConfigError) as caught:
        choose_tenant("x\x1b[2J", False, [])
    assert (
        str(caught.value)
        == "TELEWORK_DASHBOARD_TENANT: no tenant 'x\\x1b[2J' to show (the tenants: none yet)"
    )


def test_the_live_board_is_the_web_consoles_and_no_standalone_page_is_started() -> None:
    """With or without a tenant no `dashboard` child: the live board is the console's, behind its sign-in."""
    for tenant in (None, "acme"):
        resolved = dataclasses.replace(RESOLVED, dashboard_tenant=tenant)
        assert "dashboard" not in [s.name for s in plan_children("/py", resolved, 1, "h")]
        assert resolved.dashboard_url == resolved.web_url + "/dashboards/live"


def test_private_entries_name_what_up_keeps_in_the_data_folder() -> None:
    """The database with its WAL files, the embedded Redis, keys, URL, lock, tokens, logs, evidence."""
    assert private_entries() == [
        *["telework.db", "telework.db-wal", "telework.db-shm", "telework.db-journal"],
        *["redis.url", "up.lock", "master.key", "demo-agents.json", "demo-simulated.json"],
        *["redis", "evidence", "consumers", "logs", "camera-agent"],
    ]


def test_embedded_master_key_only_when_no_key_is_given(tmp_path: Path) -> None:
    """The key file in the data folder is made only without TELEWORK_MASTER_KEY(_FILE)."""
    key = "A" * 43 + "="
    assert embedded_master_key(ServerSettings(data_dir=tmp_path)) is True
    assert embedded_master_key(ServerSettings(data_dir=tmp_path, master_key=key)) is False
    assert embedded_master_key(ServerSettings(data_dir=tmp_path, master_key_file=tmp_path / "k")) is False


def test_supervise_returns_the_exit_code_of_an_exit_that_brings_up_down() -> None:
    """An exit that brings `up` down (a configuration error) ends supervision with its exit code."""
    polls = Polls(None, DIED)
    assert supervise(polls, threading.Event(), every_s=0.0) == 2
    assert polls.polls == 2


def test_supervise_returns_0_on_a_stop() -> None:
    """A stop asked (a signal) ends supervision with exit code 0 after one last poll."""
    stop = threading.Event()
    stop.set()
    polls = Polls()
    assert supervise(polls, stop) == 0
    assert polls.polls == 1


def test_wait_ready_ends_when_a_server_dies_first() -> None:
    """A server stopping on a configuration error before the others are ready ends the wait with its
    exit code, untouched by HTTP."""
    assert wait_ready(Polls(DIED), RESOLVED, threading.Event(), 90.0) == 2


def test_wait_ready_returns_0_when_stopped() -> None:
    """A stop during the wait returns 0 without polling: the caller then stops what was started."""
    stop = threading.Event()
    stop.set()
    polls = Polls(DIED)
    assert wait_ready(polls, RESOLVED, stop, 90.0) == 0
    assert polls.polls == 0


def test_given_redis_url_is_used_and_nothing_is_published(tmp_path: Path) -> None:
    """With TELEWORK_REDIS_URL no Redis is started and no URL file is written."""
    settings = ServerSettings(data_dir=tmp_path, redis_url="redis://10.0.0.5:6379/1")
    with contextlib.ExitStack() as undo:
        assert start_or_use_redis(settings, tmp_path, undo) == "redis://10.0.0.5:6379/1"
    assert list(tmp_path.iterdir()) == []


def test_embedded_redis_url_is_withdrawn_before_redis_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The published URL file is 0600; undo runs in reverse: it goes first, then the embedded Redis stops."""
    events: list[str] = []
    url_file = tmp_path / "redis.url"

    class FakeRedis:
        def __init__(self, folder: Path) -> None:
            events.append(f"init {folder.name}")
            self.folder, self.port = folder, 7001

        def start(self) -> str:
            events.append("start")
            return "redis://127.0.0.1:7001/0"

        def stop(self) -> None:
            events.append(f"stop (url file exists: {url_file.exists()})")

    monkeypatch.setattr(realtime.embedded_redis, "EmbeddedRedis", FakeRedis)
    with contextlib.ExitStack() as undo:
        url = start_or_use_redis(ServerSettings(data_dir=tmp_path), tmp_path, undo)
        assert url_file.read_text() == "redis://127.0.0.1:7001/0\n"
        assert stat.S_IMODE(url_file.stat().st_mode) == 0o600  # it holds the password
    assert url == "redis://127.0.0.1:7001/0"
    assert events == ["init redis", "start", "stop (url file exists: False)"]


# ------------------------------------------------------------------ the data folder's lock


def test_a_second_up_on_a_data_folder_is_refused_naming_the_folder_and_the_first(tmp_path: Path) -> None:
    """The lock file is 0600 with the holder's pid; a second lock names folder and pid; closing frees it."""
    with contextlib.ExitStack() as first:
        lock_data_folder(tmp_path, first)
        lock = tmp_path / LOCK_FILE
        assert (stat.S_IMODE(lock.stat().st_mode), lock.read_text()) == (0o600, f"{os.getpid()}\n")
        with contextlib.ExitStack() as second, pytest.raises(DataFolderBusy) as caught:
            lock_data_folder(tmp_path, second)
        assert str(caught.value) == (
            f"another `telework up` (pid {os.getpid()}) is running on the data folder {tmp_path}; "
            "stop it first, or give this one another --data-dir"
        )
    with contextlib.ExitStack() as third:
        lock_data_folder(tmp_path, third)


# ------------------------------------------------------------------ an orphaned embedded Redis


def test_embedded_redis_is_known_by_its_dir_or_its_working_folder(tmp_path: Path) -> None:
    """A redis-server whose --dir (or, with its title rewritten, working folder) is ours; nothing else."""
    folder = tmp_path / "redis"
    ours = ["/x/bin/redis-server", "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "yes"]
    assert is_embedded_redis(ours, "/", folder) is True
    assert is_embedded_redis(["/x/bin/redis-server 127.0.0.1:7001", "", ""], str(folder), folder) is True
    assert is_embedded_redis(["/x/bin/redis-server", "--dir", str(tmp_path / "other")], "/", folder) is False
    assert is_embedded_redis(["/usr/bin/python3", "--dir", str(folder)], str(folder), folder) is False
    assert is_embedded_redis([], str(folder), folder) is False


def test_read_pid_takes_only_a_positive_number(tmp_path: Path) -> None:
    """A pid file holding a pid gives it; a missing, empty or garbled one gives None."""
    path = tmp_path / PID_FILE
    assert read_pid(path) is None
    for text, pid in [("4242\n", 4242), ("", None), ("42x\n", None), ("0\n", None), ("-5\n", None)]:
        path.write_text(text)
        assert read_pid(path) == pid


# Runs the first steps of `up` (the data folder's lock, the embedded Redis) until SIGTERM.
UP_REDIS_STEPS = """
import contextlib, sys, threading
from pathlib import Path
from core.process import stop_on_signals
from core.settings import ServerSettings
from telework.data_folder import lock_data_folder, prepare_data_folder
from telework.up_steps import start_or_use_redis

stop = threading.Event()
with stop_on_signals(stop.set), contextlib.ExitStack() as undo:
    data = prepare_data_folder(Path(sys.argv[1]))
    lock_data_folder(data, undo)
    print(start_or_use_redis(ServerSettings(data_dir=data), data, undo), flush=True)
    stop.wait()
"""


def redis_servers_on(folder: Path) -> list[int]:
    """Pids of the live redis-server processes working on ``folder``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        if info["status"] != psutil.STATUS_ZOMBIE and is_embedded_redis(
            info["cmdline"] or [], info["cwd"], folder
        ):
            found.append(proc.pid)
    return found


@pytest.mark.slow
def test_a_killed_up_leaves_no_second_redis_on_its_append_only_file(tmp_path: Path) -> None:
    """While an `up` holds the data folder a second `up` is refused (exit 2, folder and pid named);
    SIGKILLed, it leaves its redis-server running: the next start stops it, and exactly one
    redis-server runs on the folder, with the data written before."""
    data = tmp_path / "data"
    env = server_env()

    def start_steps() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", UP_REDIS_STEPS, str(data)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, "")  # the progress line, then the URL
        return proc, next(line for line in lines if line.startswith("redis://")).strip()

    first, url = start_steps()
    second: subprocess.Popen[str] | None = None
    try:
        client = redis.Redis.from_url(url)
        client.set("written-before", "kept")
        client.close()
        refused = subprocess.run(
            [sys.executable, "-m", "telework", "up", "--data-dir", str(data)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (refused.returncode, refused.stdout) == (2, "")
        assert refused.stderr == (
            f"telework up: error: another `telework up` (pid {first.pid}) is running on the data folder "
            f"{data}; stop it first, or give this one another --data-dir\n"
        )
        orphan = read_pid(data / "redis" / PID_FILE)
        assert orphan is not None and redis_servers_on(data / "redis") == [orphan]

        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert redis_servers_on(data / "redis") == [orphan]  # left running by the killed `up`

        second, url = start_steps()
        (running,) = redis_servers_on(data / "redis")
        assert running != orphan and read_pid(data / "redis" / PID_FILE) == running
        assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
        client = redis.Redis.from_url(url)
        assert client.get("written-before") == b"kept"
        client.close()

        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        assert redis_servers_on(data / "redis") == []
        assert not (data / "redis" / PID_FILE).exists()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()
        for pid in redis_servers_on(data / "redis"):
            psutil.Process(pid).kill()
