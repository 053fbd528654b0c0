"""``telework up``: every server process of one machine under one supervisor.

Pure parts (tested without I/O): :func:`plan_children` builds each child's command line and
environment; :func:`split_agents` says which children wait for the servers. :func:`run_up`
does the I/O as the list of steps in :func:`_run_up`; what a step starts and must undo (the
data folder's lock, the embedded Redis, its published URL, the children) goes on one
:class:`contextlib.ExitStack`, so the stop runs in the reverse order of the start. Children are
started, watched, restarted when they die and stopped by :mod:`telework.supervisor`.

One `up` per data folder (:func:`telework.data_folder.lock_data_folder`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from core.process import redis_url_file, stop_on_signals
from core.settings import ServerSettings
from telework.data_folder import lock_data_folder, prepare_data_folder
from telework.supervisor import AGENT_CHILDREN, ChildSpec, ExitDecision, Supervisor

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    """What `up` decided before starting children: the URLs and ports they all share."""

    redis_url: str
    database_url: str
    data_dir: Path
    gateway_host: str
    gateway_port: int
    dashboard_host: str
    dashboard_port: int

    @property
    def gateway_ws_url(self) -> str:
        return f"ws://{_connect_host(self.gateway_host)}:{self.gateway_port}/v1/agent"

    @property
    def gateway_http_url(self) -> str:
        return f"http://{_connect_host(self.gateway_host)}:{self.gateway_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{_connect_host(self.dashboard_host)}:{self.dashboard_port}/"


@dataclass(frozen=True)
class UpPlan:
    """What the `up` command line asked for."""

    demo: bool
    agents: int
    workers: int
    python: str  # the interpreter the children run on
    events_per_s: float = 1.0
    ready_timeout_s: float = 90.0


@dataclass(frozen=True)
class DemoAgents:
    """The demo's agents: the simulated ones (their tokens file) and the one on the face pipeline."""

    tokens_file: Path | None = None
    camera_token: str | None = None


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def demo_scene_available() -> bool:
    """The demo's camera scene needs the sample faces shipped in the insightface package."""
    import importlib.util

    return importlib.util.find_spec("insightface") is not None


def worker_name(hostname: str, index: int) -> str:
    return f"{hostname}-worker-{index}"


def plan_children(
    python: str,
    resolved: Resolved,
    workers: int,
    hostname: str,
    demo_tokens_file: Path | None = None,
    events_per_s: float = 1.0,
    camera_token: str | None = None,
) -> list[ChildSpec]:
    """Pure: the children of `up`, in start order, each with its argv and extra env."""
    if workers < 1:
        raise ValueError(f"workers: expected >= 1, got {workers}")
    shared = {
        "TELEWORK_REDIS_URL": resolved.redis_url,
        "TELEWORK_DATABASE_URL": resolved.database_url,
        "TELEWORK_DATA_DIR": str(resolved.data_dir),
        "TELEWORK_GATEWAY_HOST": resolved.gateway_host,
        "TELEWORK_GATEWAY_PORT": str(resolved.gateway_port),
        "TELEWORK_DASHBOARD_HOST": resolved.dashboard_host,
        "TELEWORK_DASHBOARD_PORT": str(resolved.dashboard_port),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [python, "-m", "telework"]
    specs = [ChildSpec("gateway", [*cmd, "gateway"], dict(shared))]
    specs += [
        ChildSpec(
            f"worker-{i}", [*cmd, "worker"], {**shared, "TELEWORK_WORKER_NAME": worker_name(hostname, i)}
        )
        for i in range(1, workers + 1)
    ]
    specs.append(ChildSpec("builder", [*cmd, "builder"], dict(shared)))
    specs.append(ChildSpec("rollup", [*cmd, "rollup"], dict(shared)))
    specs.append(ChildSpec("retention", [*cmd, "retention", "run"], dict(shared)))
    specs.append(ChildSpec("dashboard", [*cmd, "dashboard"], dict(shared)))
    if demo_tokens_file is not None:
        specs.append(
            ChildSpec(
                "agents",
                [
                    *cmd,
                    "agent",
                    "--simulate",
                    "--tokens-file",
                    str(demo_tokens_file),
                    "--events-per-s",
                    str(events_per_s),
                ],
                {"TELEWORK_GATEWAY_URL": resolved.gateway_ws_url, "PYTHONUNBUFFERED": "1"},
            )
        )
    if camera_token is not None:
        # One demo agent runs the real face pipeline on a composed camera scene.
        specs.append(
            ChildSpec(
                "camera-agent",
                [*cmd, "agent", "--source", "scene:demo"],
                {
                    "TELEWORK_GATEWAY_URL": resolved.gateway_ws_url,
                    "TELEWORK_AGENT_TOKEN": camera_token,
                    "TELEWORK_AGENT_DATA_DIR": str(resolved.data_dir / "camera-agent"),
                    "PYTHONUNBUFFERED": "1",
                },
            )
        )
    return specs


def split_agents(specs: list[ChildSpec]) -> tuple[list[ChildSpec], list[ChildSpec]]:
    """Pure: (servers, agents) in start order; the agents start once the servers are ready."""
    servers = [s for s in specs if s.name not in AGENT_CHILDREN]
    agents = [s for s in specs if s.name in AGENT_CHILDREN]
    return servers, agents


def embedded_master_key(settings: ServerSettings) -> bool:
    """Pure: no TELEWORK_MASTER_KEY nor TELEWORK_MASTER_KEY_FILE: the key is a file in the data folder."""
    return settings.master_key is None and settings.master_key_file is None


# ------------------------------------------------------------------------------ I/O


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_connect_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def resolve_ports(settings: ServerSettings) -> tuple[int, int]:
    """Port 0 means any free port; `up` must know the real one to print and to pass on."""
    gw = settings.gateway_port or free_port(_connect_host(settings.gateway_host))
    dash = settings.dashboard_port or free_port(_connect_host(settings.dashboard_host))
    return gw, dash


def run_up(
    settings: ServerSettings,
    demo: bool,
    agents: int,
    workers: int,
    python: str,
    on_ready: Callable[[Resolved], None],
    events_per_s: float = 1.0,
    ready_timeout_s: float = 90.0,
) -> int:
    """Run everything until SIGINT/SIGTERM (exit 0); a child that dies is restarted. Exit 2 when a
    child stops on a configuration error before it was ready, 1 when the servers are not ready in time."""
    plan = UpPlan(demo, agents, workers, python, events_per_s, ready_timeout_s)
    stop = threading.Event()
    with stop_on_signals(stop.set), contextlib.ExitStack() as undo:
        exit_code = _run_up(settings, plan, on_ready, stop, undo)
        log.info("stopping", extra={"reason": "signal" if stop.is_set() else "child exit"})
        return exit_code


def _run_up(
    settings: ServerSettings,
    plan: UpPlan,
    on_ready: Callable[[Resolved], None],
    stop: threading.Event,
    undo: contextlib.ExitStack,
) -> int:
    """The steps of `up`, in order; a step that starts something puts its undoing on ``undo``."""
    data_dir = prepare_data_folder(settings.data_dir)
    lock_data_folder(data_dir, undo)
    watch: list[Callable[[], None]] = []  # checked as the children are (the embedded Redis)
    redis_url = start_or_use_redis(settings, data_dir, undo, watch)
    database_url = prepare_database(settings, data_dir)
    demo = set_up_demo(database_url, data_dir, plan.agents) if plan.demo else DemoAgents()
    resolved = resolve(settings, data_dir, redis_url, database_url)
    hostname = socket.gethostname()
    specs = plan_children(
        plan.python, resolved, plan.workers, hostname, demo.tokens_file, plan.events_per_s, demo.camera_token
    )
    servers, agents = split_agents(specs)
    supervisor = Supervisor(specs, os.environ, say=say)
    undo.callback(supervisor.stop_all)  # agents, then gateway and dashboard, then workers
    start_children(supervisor, servers)
    exit_code = wait_ready(supervisor, resolved, stop, plan.ready_timeout_s)
    if exit_code != 0 or stop.is_set():
        return exit_code
    supervisor.mark_ready()
    start_children(supervisor, agents)
    if demo.camera_token is not None:
        start_demo_punch(resolved.data_dir / "camera-agent", stop)
    on_ready(resolved)
    return supervise(supervisor, stop, checks=watch)


def start_or_use_redis(
    settings: ServerSettings,
    data_dir: Path,
    undo: contextlib.ExitStack,
    watch: list[Callable[[], None]] | None = None,
) -> str:
    """TELEWORK_REDIS_URL, else an embedded redis-server in the data folder, its URL published in
    the data folder for the other commands; ``undo`` withdraws the URL, then stops the server."""
    if settings.redis_url:
        return settings.redis_url
    from realtime.embedded_redis import EmbeddedRedis

    redis = EmbeddedRedis(data_dir / "redis")
    url = redis.start()
    undo.callback(redis.stop)
    if watch is not None:
        watch.append(lambda: redis.revive(say))  # restarted on its port and AOF if it dies
    url_file = redis_url_file(data_dir)
    url_file.write_text(url + "\n")
    undo.callback(url_file.unlink, missing_ok=True)
    return url


@contextlib.contextmanager
def _engine(database_url: str) -> Iterator[Engine]:
    """An engine for one set-up step, disposed after it."""
    from storage.db import make_engine

    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def prepare_database(settings: ServerSettings, data_dir: Path) -> str:
    """The database URL (SQLite in the data folder by default), upgraded to the current schema;
    in embedded key mode, the master key file (0600) created in the data folder first."""
    from storage.db import upgrade
    from storage.keyring import ensure_master_key

    database_url = settings.database()
    if embedded_master_key(settings):
        ensure_master_key(data_dir)
    with _engine(database_url) as engine:
        upgrade(engine)
    return database_url


def set_up_demo(database_url: str, data_dir: Path, agents: int) -> DemoAgents:
    """The demo tenant and its agents' tokens; with the demo scene available, demo-pc-01 runs the
    face pipeline and the other agents are simulated from their own tokens file."""
    from telework.demo import (
        SIMULATED_TOKENS_FILE,
        ensure_demo,
        read_tokens,
        split_camera_agent,
        write_tokens,
    )

    with _engine(database_url) as engine:
        tokens_file = ensure_demo(engine, data_dir, agents)
    if not demo_scene_available():
        return DemoAgents(tokens_file)
    camera_token, others = split_camera_agent(read_tokens(tokens_file))
    simulated = data_dir / SIMULATED_TOKENS_FILE
    write_tokens(simulated, others)
    return DemoAgents(simulated, camera_token)


def resolve(settings: ServerSettings, data_dir: Path, redis_url: str, database_url: str) -> Resolved:
    """What every child shares: the URLs, the data folder, the real ports."""
    gw_port, dash_port = resolve_ports(settings)
    host, dash_host = settings.gateway_host, settings.dashboard_host
    return Resolved(redis_url, database_url, data_dir, host, gw_port, dash_host, dash_port)


def start_children(supervisor: Supervisor, specs: list[ChildSpec]) -> None:
    """Start ``specs`` in order (readiness is waited for separately)."""
    for spec in specs:
        supervisor.start(spec)


class Polled(Protocol):
    """What waiting and supervising need of a :class:`~telework.supervisor.Supervisor`."""

    def poll(self) -> ExitDecision | None: ...


def wait_ready(supervisor: Polled, resolved: Resolved, stop: threading.Event, timeout_s: float) -> int:
    """Wait for the gateway's /healthz and the dashboard's port; 0 when ready, else an exit code."""
    deadline = time.monotonic() + timeout_s
    healthz = resolved.gateway_http_url + "/healthz"
    while not stop.is_set():
        decision = supervisor.poll()
        if decision is not None:
            return decision.exit_code or 1
        if http_ok(healthz) and port_open(resolved.dashboard_host, resolved.dashboard_port):
            return 0
        if time.monotonic() > deadline:
            log.error("servers not ready in time", extra={"timeout_s": timeout_s, "healthz": healthz})
            return 1
        stop.wait(0.1)
    return 0


def supervise(
    supervisor: Polled, stop: threading.Event, every_s: float = 0.2, checks: Sequence[Callable[[], None]] = ()
) -> int:
    """Watch the children (the supervisor restarts those that die; each of ``checks`` looks after
    something else, e.g. the embedded Redis) until a stop is asked (0) or an exit brings `up`
    down (its exit code: a configuration error)."""
    while True:
        for check in checks:
            check()
        decision = supervisor.poll()
        if decision is not None:
            return decision.exit_code or 1
        if stop.wait(every_s):
            return 0


def say(line: str) -> None:
    """A line for the person at the terminal (the banner's stream), e.g. a child's restart."""
    print(line, flush=True)


def start_demo_punch(folder: Path, stop: threading.Event) -> None:
    """The demo camera agent's first punch, tried in the background until it works or `up` stops."""
    threading.Thread(target=demo_punch_in, args=(folder, stop), daemon=True, name="demo-punch").start()


def demo_punch_in(folder: Path, stop: threading.Event, timeout_s: float = 120.0) -> bool:
    """The demo's camera agent starts work as its user would: a face-verified punch through its
    control channel, retried until the scene shows the user (or the agent is already on duty)."""
    from agent.control import ControlError, request

    deadline = time.monotonic() + timeout_s
    reply: dict[str, object] = {"message": "stopped before the first try"}
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            status, reply = request(folder, "POST", "/api/punch?lang=en", {"kind": "in"})
        except ControlError:
            status, reply = 0, {"message": "agent not running yet"}
        if status == 200 or reply.get("reason") == "already_on_duty":
            log.info("demo camera agent on duty", extra={"reply": reply.get("message")})
            return True
        stop.wait(2.0)
    log.warning("demo camera agent could not punch in", extra={"last": reply.get("message")})
    return False
