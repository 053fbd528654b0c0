"""`up` watches its embedded Redis like its other children: one that dies is started again on its
port and AOF, and `up` says so. The embedded Redis is private: a password (kept across revivals),
loopback only, its files 0600."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import psutil
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from realtime.embedded_redis import PASSWORD_FILE, EmbeddedRedis, load_password, resp_command, valid_password
from tests.waiting import wait_until_sync


def test_a_killed_embedded_redis_is_started_again_on_its_port_with_its_data(tmp_path: Path) -> None:
    """SIGKILL the embedded redis-server: revive() says so, starts it on the same port and AOF, and
    what was written before is there; a running server is left alone."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    said: list[str] = []
    try:
        client = redis.Redis.from_url(url)
        client.set("kept", "yes")
        aof = tmp_path / "redis"
        wait_until_sync(
            lambda: any(b"kept" in f.read_bytes() for f in aof.rglob("*.aof*") if f.is_file()),
            10,
            what="the write in the AOF",
        )
        client.close()
        server.revive(said.append)
        assert said == []  # alive: nothing to do
        assert server.process is not None
        old_pid = server.process.pid
        os.kill(old_pid, signal.SIGKILL)
        server.process.wait(10)
        server.revive(said.append)
        assert said == [f"embedded redis died (killed by signal 9); restarting it on port {server.port}"]
        assert server.url == url and server.process is not None and server.process.pid != old_pid
        client = redis.Redis.from_url(url)
        assert client.get("kept") == b"yes"
        client.close()
        assert unauthenticated(server.port, resp_command("PING")) == b"-NOAUTH Authentication required.\r\n"
    finally:
        server.stop()


def unauthenticated(port: int, command: bytes) -> bytes:
    """What the embedded Redis answers a connection that did not authenticate."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(command)
        return s.recv(200)


def test_the_embedded_redis_refuses_whoever_has_not_the_password(tmp_path: Path) -> None:
    """Without the password PING and a forged XADD are refused (NOAUTH); a wrong password too; the
    URL's password works; it listens on loopback only; its files are 0600 in a 0700 folder, and
    the password is on no command line."""
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        assert url == f"redis://:{server.password}@127.0.0.1:{server.port}/0"
        noauth = b"-NOAUTH Authentication required.\r\n"
        assert unauthenticated(server.port, resp_command("PING")) == noauth
        forged = resp_command("XADD", "tw:{demo}:events", "*", "agent", "demo-pc-01")
        assert unauthenticated(server.port, forged) == noauth
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, password="x" * 43).ping()
        client = redis.Redis.from_url(url)
        assert client.ping() is True
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.close()
        assert server.process is not None
        assert server.password not in " ".join(psutil.Process(server.process.pid).cmdline())
        folder = tmp_path / "redis"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in folder.iterdir()}
        assert set(modes) >= {"redis.password", "redis.conf", "redis.pid", "redis.log", "telework.aof"}
        assert set(modes.values()) == {0o600}
    finally:
        server.stop()


def test_the_password_is_generated_once_and_a_bad_one_replaced(tmp_path: Path) -> None:
    """The first use writes a 43-character password (0600); later uses read it; a file holding no
    usable password (empty, short, with a space or a control character) gets a new one."""
    folder = tmp_path / "redis"
    first = load_password(folder)
    assert valid_password(first) and len(first) == 43
    assert stat.S_IMODE((folder / PASSWORD_FILE).stat().st_mode) == 0o600
    assert load_password(folder) == first
    for bad in ["", "short", "a" * 40 + " b", "a" * 40 + "\x1b", "é" * 40]:
        (folder / PASSWORD_FILE).write_text(bad)
        replaced = load_password(folder)
        assert valid_password(replaced) and replaced not in (first, bad)


@given(st.lists(st.text(max_size=50), min_size=1, max_size=5))
def test_a_command_is_one_array_whatever_its_arguments(args: list[str]) -> None:
    """Each argument is sent with its length, so a line break inside one cannot start another command."""
    raw = resp_command(*args)
    assert raw.startswith(f"*{len(args)}\r\n".encode())
    rest = raw[len(f"*{len(args)}\r\n") :]
    for arg in args:
        data = arg.encode()
        head = f"${len(data)}\r\n".encode()
        assert rest.startswith(head + data + b"\r\n")
        rest = rest[len(head) + len(data) + 2 :]
    assert rest == b""
