"""`telework up` as a list of steps: the pure ones, and the undo order of what a step starts."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

import pytest

import realtime.embedded_redis
from core.settings import ServerSettings
from telework.supervisor import ChildSpec, ExitDecision
from telework.up import (
    Resolved,
    embedded_master_key,
    plan_children,
    split_agents,
    start_or_use_redis,
    supervise,
    wait_ready,
)

RESOLVED = Resolved(
    redis_url="redis://127.0.0.1:7000/0",
    database_url="sqlite:////d/telework.db",
    data_dir=Path("/d"),
    gateway_host="127.0.0.1",
    gateway_port=8700,
    dashboard_host="127.0.0.1",
    dashboard_port=8701,
)
DIED = ExitDecision(True, 1, logging.ERROR, "worker-1 died unexpectedly (exit code 3); stopping everything")


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
    assert [s.name for s in servers] == ["gateway", "worker-1", "builder", "rollup", "retention", "dashboard"]
    assert [s.name for s in agents] == ["agents", "camera-agent"]


def test_split_agents_without_demo_has_no_agents() -> None:
    """Without --demo every child is a server."""
    specs = [ChildSpec("gateway", ["g"]), ChildSpec("worker-1", ["w"])]
    assert split_agents(specs) == (specs, [])


def test_embedded_master_key_only_when_no_key_is_given(tmp_path: Path) -> None:
    """The key file in the data folder is made only without TELEWORK_MASTER_KEY(_FILE)."""
    key = "A" * 43 + "="
    assert embedded_master_key(ServerSettings(data_dir=tmp_path)) is True
    assert embedded_master_key(ServerSettings(data_dir=tmp_path, master_key=key)) is False
    assert embedded_master_key(ServerSettings(data_dir=tmp_path, master_key_file=tmp_path / "k")) is False


def test_supervise_returns_the_exit_code_of_an_unexpected_exit() -> None:
    """A child dying ends supervision with exit code 1 at the poll that saw it."""
    polls = Polls(None, DIED)
    assert supervise(polls, threading.Event(), every_s=0.0) == 1
    assert polls.polls == 2


def test_supervise_returns_0_on_a_stop() -> None:
    """A stop asked (a signal) ends supervision with exit code 0 after one last poll."""
    stop = threading.Event()
    stop.set()
    polls = Polls()
    assert supervise(polls, stop) == 0
    assert polls.polls == 1


def test_wait_ready_ends_when_a_server_dies_first() -> None:
    """A server dying before the others are ready ends the wait with its exit code, untouched by HTTP."""
    assert wait_ready(Polls(DIED), RESOLVED, threading.Event(), 90.0) == 1


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
    """Undo runs in reverse: the published URL file goes first, then the embedded Redis stops."""
    events: list[str] = []
    url_file = tmp_path / "redis.url"

    class FakeRedis:
        def __init__(self, folder: Path) -> None:
            events.append(f"init {folder.name}")

        def start(self) -> str:
            events.append("start")
            return "redis://127.0.0.1:7001/0"

        def stop(self) -> None:
            events.append(f"stop (url file exists: {url_file.exists()})")

    monkeypatch.setattr(realtime.embedded_redis, "EmbeddedRedis", FakeRedis)
    with contextlib.ExitStack() as undo:
        url = start_or_use_redis(ServerSettings(data_dir=tmp_path), tmp_path, undo)
        assert url_file.read_text() == "redis://127.0.0.1:7001/0\n"
    assert url == "redis://127.0.0.1:7001/0"
    assert events == ["init redis", "start", "stop (url file exists: False)"]
