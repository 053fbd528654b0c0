"""`up` watches its embedded Redis like its other children: one that dies is started again on its
port and AOF, and `up` says so."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from realtime.embedded_redis import EmbeddedRedis
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
    finally:
        server.stop()
