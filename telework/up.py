"""``telework up``: every server process of one machine under one supervisor.

Pure parts (tested without I/O): :func:`plan_children` builds each child's command
line and environment; :func:`on_child_exit` decides what an exit means.
:func:`run_up` does the I/O: embedded Redis when ``TELEWORK_REDIS_URL`` is unset,
SQLite in the data folder when ``TELEWORK_DATABASE_URL`` is unset, ``db upgrade``,
the demo tenant (``--demo``), the children, readiness, and an orderly stop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.process import redis_url_file, stop_on_signals
from core.settings import ServerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the parent's environment


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


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


AGENT_CHILDREN = ("agents", "camera-agent")  # started once the servers are ready, stopped first


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


def stop_waves(names: list[str]) -> list[list[str]]:
    """Pure: the order of a stop. Agents first (their last events get acked), then gateway and
    dashboard (nothing new enters the streams), workers last (they persist what is left)."""
    rank = {name: 0 for name in AGENT_CHILDREN} | {"gateway": 1, "dashboard": 1}
    waves: dict[int, list[str]] = {}
    for name in names:
        waves.setdefault(rank.get(name, 2), []).append(name)
    return [waves[k] for k in sorted(waves)]


@dataclass(frozen=True)
class ExitDecision:
    shutdown: bool  # bring `up` down
    exit_code: int | None  # the exit code of `up` this exit implies (None: no change)
    level: int  # how loudly to log it
    message: str


def on_child_exit(name: str, returncode: int, stopping: bool) -> ExitDecision:
    """Pure: what a child's exit means. During a stop it is expected; otherwise fatal."""
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    if stopping:
        return ExitDecision(False, None, logging.INFO, f"{name} stopped ({how})")
    return ExitDecision(True, 1, logging.ERROR, f"{name} died unexpectedly ({how}); stopping everything")


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


class Supervisor:
    """Starts children, watches them, and stops them all (SIGTERM, then SIGKILL)."""

    def __init__(self, specs: list[ChildSpec], environ: Mapping[str, str], grace_s: float = 10.0) -> None:
        self.specs = specs
        self.environ = dict(environ)
        self.grace_s = grace_s
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self, spec: ChildSpec) -> None:
        proc = subprocess.Popen(
            spec.argv,
            env={**self.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches `up` only; `up` stops the children in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.procs[spec.name] = proc
        log.info("child started", extra={"child": spec.name, "pid": proc.pid})

    def poll(self) -> ExitDecision | None:
        """The first unexpected exit since the last poll, if any (exited children are forgotten)."""
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[name]
            decision = on_child_exit(name, code, self.stopping)
            log.log(decision.level, decision.message, extra={"child": name, "pid": proc.pid, "code": code})
            if decision.shutdown:
                return decision
        return None

    def stop_all(self) -> None:
        """SIGTERM the children wave by wave (see :func:`stop_waves`); SIGKILL what outlives the grace."""
        self.stopping = True
        for wave in stop_waves([s.name for s in self.specs if s.name in self.procs]):
            procs = {name: self.procs[name] for name in wave}
            for name, proc in procs.items():
                if proc.poll() is None:
                    log.info("stopping child", extra={"child": name, "pid": proc.pid})
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            for name, proc in procs.items():
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning(
                        "child did not stop in time; killing it", extra={"child": name, "pid": proc.pid}
                    )
                    proc.kill()
                    proc.wait()
        self.poll()


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when `up` dies, even by SIGKILL, so no child is orphaned."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


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
    """Run everything until SIGINT/SIGTERM (exit 0) or an unexpected child exit (exit 1)."""

    stop = threading.Event()
    with stop_on_signals(stop.set):
        return _run_up(settings, demo, agents, workers, python, on_ready, events_per_s, ready_timeout_s, stop)


def _run_up(
    settings: ServerSettings,
    demo: bool,
    agents: int,
    workers: int,
    python: str,
    on_ready: Callable[[Resolved], None],
    events_per_s: float,
    ready_timeout_s: float,
    stop: threading.Event,
) -> int:
    from realtime.embedded_redis import EmbeddedRedis
    from storage.db import make_engine, upgrade
    from storage.keyring import ensure_master_key
    from telework.demo import (
        SIMULATED_TOKENS_FILE,
        ensure_demo,
        read_tokens,
        split_camera_agent,
        write_tokens,
    )

    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    url_file = redis_url_file(data_dir)
    redis = None
    supervisor: Supervisor | None = None
    exit_code = 0
    try:
        redis_url = settings.redis_url
        if not redis_url:
            redis = EmbeddedRedis(data_dir / "redis")
            redis_url = redis.start()
            url_file.write_text(redis_url + "\n")
        database_url = settings.database()
        if settings.master_key is None and settings.master_key_file is None:
            ensure_master_key(data_dir)  # embedded mode: a 0600 key file in the data folder
        engine = make_engine(database_url)
        try:
            upgrade(engine)
            tokens_file = ensure_demo(engine, data_dir, agents) if demo else None
            camera_token = None
            if tokens_file is not None and demo_scene_available():
                camera_token, others = split_camera_agent(read_tokens(tokens_file))
                tokens_file = data_dir / SIMULATED_TOKENS_FILE
                write_tokens(tokens_file, others)
        finally:
            engine.dispose()
        gw_port, dash_port = resolve_ports(settings)
        resolved = Resolved(
            redis_url,
            database_url,
            data_dir,
            settings.gateway_host,
            gw_port,
            settings.dashboard_host,
            dash_port,
        )
        specs = plan_children(
            python, resolved, workers, socket.gethostname(), tokens_file, events_per_s, camera_token
        )
        supervisor = Supervisor(specs, os.environ)
        servers = [s for s in specs if s.name not in AGENT_CHILDREN]
        for spec in servers:
            supervisor.start(spec)
        exit_code = _wait_ready(supervisor, resolved, stop, ready_timeout_s)
        if exit_code == 0 and not stop.is_set():
            for spec in specs[len(servers) :]:
                supervisor.start(spec)
            if camera_token is not None:
                folder = resolved.data_dir / "camera-agent"
                threading.Thread(target=demo_punch_in, args=(folder, stop), daemon=True).start()
            on_ready(resolved)
            while not stop.wait(0.2):
                decision = supervisor.poll()
                if decision is not None:
                    exit_code = decision.exit_code or 1
                    break
        log.info("stopping", extra={"reason": "signal" if stop.is_set() else "child exit"})
    finally:
        if supervisor is not None:
            supervisor.stop_all()
        if redis is not None:
            redis.stop()
            url_file.unlink(missing_ok=True)
    return exit_code


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
            log.info("demo camera agent on duty", extra={"message": reply.get("message")})
            return True
        stop.wait(2.0)
    log.warning("demo camera agent could not punch in", extra={"last": reply.get("message")})
    return False


def _wait_ready(supervisor: Supervisor, resolved: Resolved, stop: threading.Event, timeout_s: float) -> int:
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
