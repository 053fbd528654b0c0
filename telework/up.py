"""``telework up``: every server process of one machine under one supervisor.

Pure parts (tested without I/O): :func:`plan_children` builds each child's command line and
environment; :func:`split_agents` says which children wait for the servers. :func:`run_up`
does the I/O as the list of steps in :func:`_run_up`; what a step starts and must undo (the
data folder's lock, the embedded Redis, its published URL, the children) goes on one
:class:`contextlib.ExitStack`, so the stop runs in the reverse order of the start. Children are
started, watched, restarted when they die and stopped by :mod:`telework.supervisor`; what the
terminal shows and the log file gets is :mod:`telework.console`; the steps before the children
(log file, embedded Redis, database) are :mod:`telework.up_steps`, the demo's :mod:`telework.up_demo`.

One `up` per data folder (:func:`telework.data_folder.lock_data_folder`). `up` and its children
run with umask 077, and what an older release left open in the data folder is made private
(:func:`telework.data_folder.make_private`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from core.config import ConfigError
from core.private import PRIVATE_UMASK
from core.process import stop_on_signals
from core.settings import DATABASE_FILE, REDIS_URL_FILE, ServerSettings
from telework import console
from telework.console import Banner, banner_lines, progress_line, say
from telework.data_folder import LOCK_FILE, lock_data_folder, make_private, prepare_data_folder
from telework.demo_sign_ins import ensure_sign_ins, sign_in_lines
from telework.supervisor import AGENT_CHILDREN, ChildSpec, ExitDecision, Supervisor
from telework.up_demo import CAMERA_AGENT_DIR, DemoAgents, set_up_demo, start_demo_punch
from telework.up_steps import engine_for, open_log, prepare_database, start_or_use_redis, tenant_ids
from telework.up_tls import agent_env, dev_ca_beside, readiness_context

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
    dashboard_tenant: str | None = "demo"  # the tenant the live page shows; None: no live page
    web_host: str = "127.0.0.1"
    web_port: int = 8702
    tls: bool = False  # TELEWORK_TLS_CERT/_KEY: gateway and console on HTTPS/WSS (telework/up_tls.py)
    agent_ca_file: Path | None = None  # the CA `up`'s own agents trust (dev-cert's, beside the cert)

    @property
    def gateway_ws_url(self) -> str:
        return self.gateway_http_url.replace("http", "ws", 1) + "/v1/agent"  # wss:// under TLS

    @property
    def gateway_http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{_connect_host(self.gateway_host)}:{self.gateway_port}"

    @property
    def dashboard_url(self) -> str:
        """The live board: part of the web console, behind its sign-in."""
        return self.web_url + "/dashboards/live"

    @property
    def web_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{_connect_host(self.web_host)}:{self.web_port}"


@dataclass(frozen=True)
class UpPlan:
    """What the `up` command line asked for."""

    demo: bool
    agents: int
    workers: int
    python: str  # the interpreter the children run on
    events_per_s: float = 1.0
    ready_timeout_s: float = 90.0
    verbose: bool = False  # the full log on the terminal too


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


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
        "TELEWORK_WEB_HOST": resolved.web_host,
        "TELEWORK_WEB_PORT": str(resolved.web_port),
        "TELEWORK_WEB_BASE_URL": resolved.web_url,
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [python, "-m", "telework"]
    trust = agent_env(resolved.agent_ca_file)  # the CA `up`'s own agents trust under TLS
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
    specs.append(ChildSpec("web", [*cmd, "web"], dict(shared)))
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
                {"TELEWORK_GATEWAY_URL": resolved.gateway_ws_url, "PYTHONUNBUFFERED": "1", **trust},
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
                    "TELEWORK_AGENT_DATA_DIR": str(resolved.data_dir / CAMERA_AGENT_DIR),
                    "PYTHONUNBUFFERED": "1",
                    **trust,
                },
            )
        )
    return specs


def split_agents(specs: list[ChildSpec]) -> tuple[list[ChildSpec], list[ChildSpec]]:
    """Pure: (servers, agents) in start order; the agents start once the servers are ready."""
    servers = [s for s in specs if s.name not in AGENT_CHILDREN]
    agents = [s for s in specs if s.name in AGENT_CHILDREN]
    return servers, agents


def choose_tenant(requested: str | None, demo: bool, existing: Sequence[str]) -> str | None:
    """Pure: the tenant the live page shows: TELEWORK_DASHBOARD_TENANT when set (it must exist),
    else with --demo the demo's, else the first existing one; None when there is none."""
    if requested is not None:
        if requested not in existing:
            names = ", ".join(sorted(existing)) or "none yet"
            raise ConfigError(
                "TELEWORK_DASHBOARD_TENANT", f"no tenant {requested!r} to show (the tenants: {names})"
            )
        return requested
    if demo:
        from telework.demo import DEMO_TENANT

        return DEMO_TENANT
    return min(existing) if existing else None


def private_entries() -> list[str]:
    """Pure: what `up` keeps in the data folder, to be readable by its owner only."""
    from storage.keyring import MASTER_KEY_FILENAME
    from telework.demo import SIMULATED_TOKENS_FILE, TOKENS_FILE
    from workers.consumer_names import LOCK_FOLDER

    database = [DATABASE_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    files = [REDIS_URL_FILE, LOCK_FILE, MASTER_KEY_FILENAME, TOKENS_FILE, SIMULATED_TOKENS_FILE]
    return [*database, *files, "redis", "evidence", LOCK_FOLDER, console.LOG_FOLDER, CAMERA_AGENT_DIR]


# ------------------------------------------------------------------------------ I/O


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((_connect_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def resolve_ports(settings: ServerSettings) -> tuple[int, int, int]:
    """Port 0 means any free port; `up` must know the real one to print and to pass on. The
    gateway's, the dashboard's and the web console's."""
    gw = settings.gateway_port or free_port(_connect_host(settings.gateway_host))
    dash = settings.dashboard_port or free_port(_connect_host(settings.dashboard_host))
    web = settings.web_port or free_port(_connect_host(settings.web_host))
    return gw, dash, web


def run_up(
    settings: ServerSettings,
    demo: bool,
    agents: int,
    workers: int,
    python: str,
    on_ready: Callable[[Resolved], None] | None = None,
    events_per_s: float = 1.0,
    ready_timeout_s: float = 90.0,
    verbose: bool = False,
) -> int:
    """Run everything until SIGINT/SIGTERM (exit 0); a child that dies is restarted. Exit 2 when a
    child stops on a configuration error before it was ready, 1 when the servers are not ready in
    time. Once ready, ``on_ready`` is called and the banner printed."""
    plan = UpPlan(demo, agents, workers, python, events_per_s, ready_timeout_s, verbose)
    stop = threading.Event()
    umask = os.umask(PRIVATE_UMASK)  # every file `up` and its children make: owner only
    try:
        with stop_on_signals(stop.set), contextlib.ExitStack() as undo:
            exit_code = _run_up(settings, plan, on_ready, stop, undo)
            log.info("stopping", extra={"reason": "signal" if stop.is_set() else "child exit"})
            return exit_code
    finally:
        os.umask(umask)


def _run_up(
    settings: ServerSettings,
    plan: UpPlan,
    on_ready: Callable[[Resolved], None] | None,
    stop: threading.Event,
    undo: contextlib.ExitStack,
) -> int:
    """The steps of `up`, in order; a step that starts something puts its undoing on ``undo``."""
    data_dir = prepare_data_folder(settings.data_dir)
    lock_data_folder(data_dir, undo)
    make_private(data_dir, private_entries())
    log_file = open_log(data_dir, plan.verbose, undo)
    say(f"telework up: data folder {data_dir}")
    watch: list[Callable[[], None]] = []  # checked as the children are (the embedded Redis)
    redis_url = start_or_use_redis(settings, data_dir, undo, watch)
    database_url = prepare_database(settings, data_dir)
    requested = settings.dashboard_tenant if "dashboard_tenant" in settings.model_fields_set else None
    with engine_for(database_url, settings) as engine:
        demo = set_up_demo(engine, data_dir, plan.agents) if plan.demo else DemoAgents()
        sign_ins = sign_in_lines(ensure_sign_ins(engine, data_dir, settings)) if plan.demo else []
        tenant = choose_tenant(requested, plan.demo, tenant_ids(engine))
    resolved = resolve(settings, data_dir, redis_url, database_url, tenant)
    hostname = socket.gethostname()
    specs = plan_children(
        plan.python, resolved, plan.workers, hostname, demo.tokens_file, plan.events_per_s, demo.camera_token
    )
    servers, agents = split_agents(specs)

    def relay(name: str, pipe: IO[bytes]) -> None:
        console.relay(name, pipe, log_file, plan.verbose)

    supervisor = Supervisor(specs, os.environ, say=say, output=relay)
    undo.callback(supervisor.stop_all)  # agents, then gateway and dashboard, then workers
    start_children(supervisor, servers)
    exit_code = wait_ready(supervisor, resolved, stop, plan.ready_timeout_s)
    if exit_code != 0 or stop.is_set():
        return exit_code
    supervisor.mark_ready()
    start_children(supervisor, agents)
    if on_ready is not None:
        on_ready(resolved)
    dashboard = resolved.dashboard_url if resolved.dashboard_tenant is not None else None
    camera = demo.camera_token is not None
    banner = Banner(
        dashboard,
        resolved.dashboard_tenant,
        resolved.gateway_ws_url,
        data_dir,
        camera,
        resolved.web_url + "/",
        sign_ins,
    )
    say("\n".join(banner_lines(banner)))
    if camera:
        start_demo_punch(resolved.data_dir / CAMERA_AGENT_DIR, stop, say)
    return supervise(supervisor, stop, checks=watch)


def resolve(
    settings: ServerSettings, data_dir: Path, redis_url: str, database_url: str, tenant: str | None
) -> Resolved:
    """What every child shares: the URLs, the data folder, the real ports, the live page's tenant."""
    gw_port, dash_port, web_port = resolve_ports(settings)
    host, dash_host = settings.gateway_host, settings.dashboard_host
    return Resolved(
        redis_url,
        database_url,
        data_dir,
        host,
        gw_port,
        dash_host,
        dash_port,
        tenant,
        settings.web_host,
        web_port,
        settings.tls,
        dev_ca_beside(settings.tls_cert),
    )


def start_children(supervisor: Supervisor, specs: list[ChildSpec]) -> None:
    """Start ``specs`` in order, one progress line each (readiness is waited for separately)."""
    for spec in specs:
        supervisor.start(spec)
        say(progress_line(spec.name, f"started (pid {supervisor.procs[spec.name].pid})"))


class Polled(Protocol):
    """What waiting and supervising need of a :class:`~telework.supervisor.Supervisor`."""

    def poll(self) -> ExitDecision | None: ...


def wait_ready(supervisor: Polled, resolved: Resolved, stop: threading.Event, timeout_s: float) -> int:
    """Wait for the gateway's /healthz and the web console's port (which serves the live board too);
    0 when ready, else an exit code."""
    deadline = time.monotonic() + timeout_s
    healthz = resolved.gateway_http_url + "/healthz"
    probe = readiness_context(resolved.tls)  # our own children, on this machine (telework/up_tls.py)
    while not stop.is_set():
        decision = supervisor.poll()
        if decision is not None:
            return decision.exit_code or 1
        if http_ok(healthz, context=probe) and port_open(resolved.web_host, resolved.web_port):
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
