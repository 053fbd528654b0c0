"""A real `telework up`: a quiet console (banner, one line per process, then warnings and errors
only; no traceback in a minute of the demo), the full log in the data folder, every file in the
data folder private, the embedded Redis closed to whoever lacks its password, and no live page of
a tenant that does not exist."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from realtime.embedded_redis import resp_command
from tests.waiting import wait_until_sync

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVERS = ["gateway", "worker-1", "builder", "rollup", "retention"]
LOUD = re.compile(r"([a-z0-9-]+: )?ts=\S+ level=(warning|error) ")  # a warning or an error, nothing else


class Up:
    """A `telework up` child process whose stdout lines are collected as they come."""

    def __init__(self, data: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEWORK_")}
        env.update(
            TELEWORK_DATA_DIR=str(data),
            TELEWORK_GATEWAY_PORT="0",
            TELEWORK_DASHBOARD_PORT="0",
            TELEWORK_WEB_PORT="0",
            TELEWORK_AGENT_PAGE_PORT="0",
        )
        self.env = env
        self.stderr_path = data.parent / "stderr.txt"
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(BIN / "telework"), "up", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err
            )
        self.out: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.out.append(raw.decode().rstrip("\n"))

    def wait_banner(self) -> None:
        wait_until_sync(
            lambda: "Press Ctrl-C to stop." in self.out or self.proc.poll() is not None,
            120,
            what="the banner",
        )
        assert self.proc.poll() is None, self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.reader.join(10)
        return code


@contextmanager
def running_up(data: Path, *args: str) -> Iterator[Up]:
    up = Up(data, *args)
    try:
        yield up
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
            up.proc.wait()
        up.reader.join(10)
        if up.proc.stdout is not None:
            up.proc.stdout.close()


def modes(data: Path) -> dict[str, int]:
    """Every file and folder under ``data`` (relative path -> permission bits), links refused."""
    found = {".": stat.S_IMODE(data.stat().st_mode)}
    for folder, dirs, files in os.walk(data):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            assert not stat.S_ISLNK(info.st_mode), f"{path} is a link"
            found[str(path.relative_to(data))] = stat.S_IMODE(info.st_mode)
    return found


def assert_private(data: Path) -> None:
    """Folders 0700, files 0600: nothing readable by another local user."""
    wrong = {
        name: oct(bits)
        for name, bits in modes(data).items()
        if bits != (0o700 if (data / name).is_dir() else 0o600)
    }
    assert wrong == {}


def assert_redis_closed(data: Path) -> None:
    """The published URL carries the password and works; without it the embedded Redis says NOAUTH."""
    url = (data / "redis.url").read_text().strip()
    parts = urlsplit(url)
    assert (parts.hostname, parts.username, len(parts.password or "")) == ("127.0.0.1", "", 43)
    with socket.create_connection(("127.0.0.1", parts.port or 0), timeout=5) as s:
        s.sendall(resp_command("XADD", "tw:{demo}:events", "*", "forged", "1"))
        assert s.recv(100) == b"-NOAUTH Authentication required.\r\n"
    client = redis.Redis.from_url(url)
    assert client.ping() is True
    client.close()


def admin(up: Up, *args: str) -> subprocess.CompletedProcess[str]:
    """A `telework admin` command on the running `up`'s data folder, nothing else configured."""
    return subprocess.run(
        [str(BIN / "telework"), "admin", *args],
        env=up.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_a_minute_of_the_demo_is_quiet_private_and_without_a_traceback(tmp_path: Path) -> None:
    """`up --demo` on free ports for a minute: stdout is one line per process and the banner; stderr
    holds warnings and errors only, no traceback and no connection line; the log file has every
    child's lines; every file in the data folder is 0600 (folders 0700); Redis wants its password."""
    data = tmp_path / "data"
    with running_up(data, "--demo", "--agents", "2", "--workers", "1") as up:
        up.wait_banner()
        with pytest.raises(subprocess.TimeoutExpired):
            up.proc.wait(60)  # a minute of the demo, still running
        assert_private(data)
        assert_redis_closed(data)
        assert up.stop() == 0
    err = up.stderr()
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if not LOUD.match(line)] == []
    assert "[accepted]" not in err and "connection open" not in err
    started = [line.split()[0] for line in up.out if line.endswith(")") and "started (pid" in line]
    assert started == [*SERVERS, "web", "agents", "camera-agent"]
    banner = up.out[up.out.index("telework is up.") :]
    assert re.fullmatch(
        r"  dashboard: http://127\.0\.0\.1:\d+/dashboards/live  \(live board of tenant demo: sign in\)",
        banner[1],
    )
    assert re.fullmatch(r"  console:   http://127\.0\.0\.1:\d+/  \(web console: sign in\)", banner[2])
    roles = [
        re.fullmatch(r"  sign in:   tenant demo, login (\w+), password \S+  \((\w+)\)", x)
        for x in banner[3:6]
    ]
    assert [m.groups() if m else None for m in roles] == [
        ("admin", "administrator"),
        ("manager", "manager"),
        ("user01", "worker"),
    ]
    assert banner[7:9] == [
        f"  data:      {data}",
        f"  log:       {data}/logs/telework.log  (--verbose shows it here too)",
    ]
    (page,) = [
        line for line in up.out if line.startswith("  demo-pc-01's local page (camera preview, punches): ")
    ]
    assert re.fullmatch(r".*: http://127\.0\.0\.1:\d+/\?token=[\w-]+", page)
    log = (data / "logs" / "telework.log").read_text()
    for child in [*SERVERS, "web", "agents", "camera-agent"]:
        assert f" proc={child}\n" in log
    assert_private(data)


@pytest.mark.slow
def test_up_without_a_tenant_shows_no_live_page_and_tightens_an_older_folder(tmp_path: Path) -> None:
    """A data folder left open (0755, a 0644 URL file and log) by an older release: `up` makes it
    private; with no tenant it starts no live page and says how to create a tenant."""
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    data.chmod(0o755)
    (data / "logs").chmod(0o755)
    for name in ("redis.url", "logs/telework.log"):
        (data / name).write_text("left by an older release\n")
        (data / name).chmod(0o644)
    with running_up(data, "--workers", "1") as up:
        up.wait_banner()
        assert_private(data)
        assert_redis_closed(data)
        # An admin command finds the embedded Redis through redis.url, password included.
        assert admin(up, "tenant", "create", "acme", "--name", "Acme").returncode == 0
        published = admin(up, "task", "create", "--tenant", "acme", "Coding")
        assert (published.returncode, published.stderr) == (0, "")
        assert up.stop() == 0
    started = [line.split()[0] for line in up.out if "started (pid" in line]
    assert started == [*SERVERS, "web"]
    banner = up.out[up.out.index("telework is up.") :]
    assert banner[1:4] == [
        "  dashboard: none yet: there is no tenant. Create one with",
        "             telework admin tenant create ID --name NAME",
        "             then restart `telework up` (or try `telework up --demo`)",
    ]
    assert "Traceback" not in up.stderr()
    assert not (data / "redis.url").exists()
