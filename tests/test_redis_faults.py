"""Redis restarts: the server processes' clients reconnect, the settings listener subscribes again.

Each test that kills Redis starts its own redis-server (tests/fault_kit.py), never the shared one.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from websockets.asyncio.client import connect

from realtime.app import redis_client
from realtime.embedded_redis import free_port
from realtime.protocol import Ack, AgentSettings, SettingsPush, Welcome, encode
from realtime.protocol.agent_settings import SettingsLayers
from realtime.redis_client import (
    CONNECT_TIMEOUT_S,
    HEALTH_CHECK_S,
    READ_TIMEOUT_S,
    RETRIES,
    client_options,
    retry_policy,
    server_redis,
)
from realtime.tenant_settings import LISTEN_WAKE_S, SettingsListener, publish_settings, resubscribe_delay
from telework.up import http_ok
from tests.fault_kit import (
    DeadLinkProxy,
    KillableRedis,
    end,
    killable_redis,
    migrated_sqlite,
    next_frame_of,
    provision,
    say_hello,
    server_env,
    spawn,
    state_events,
    stored_events,
)
from tests.waiting import wait_until

# ------------------------------------------------------------------ pure


def test_client_options_retry_reconnect_and_time_out() -> None:
    """Every server client retries connection errors and timeouts, health-checks, and times out reads."""
    options = client_options("redis://127.0.0.1:6379/0")
    assert sorted(options) == [
        "health_check_interval",
        "retry",
        "retry_on_error",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "socket_timeout",
    ]
    assert options["retry_on_error"] == [RedisConnectionError, RedisTimeoutError]
    assert options["retry"] == retry_policy()
    assert options["retry"].get_retries() == RETRIES == 3
    assert (options["health_check_interval"], options["socket_timeout"]) == (HEALTH_CHECK_S, READ_TIMEOUT_S)
    assert (options["socket_connect_timeout"], options["socket_keepalive"]) == (CONNECT_TIMEOUT_S, True)


def test_client_options_leave_room_for_a_blocking_read_and_skip_tcp_on_unix_sockets() -> None:
    """A worker's XREADGROUP BLOCK adds to the read timeout; a unix socket gets no TCP options."""
    assert client_options("redis://h:6379/0", block_s=2.5)["socket_timeout"] == READ_TIMEOUT_S + 2.5
    assert sorted(client_options("unix:///run/redis.sock")) == [
        "health_check_interval",
        "retry",
        "retry_on_error",
        "socket_timeout",
    ]
    with pytest.raises(ValueError, match=r"^block_s: expected >= 0 seconds, got -1$"):
        client_options("redis://h/0", block_s=-1)


def test_resubscribe_delay_doubles_to_its_cap() -> None:
    """The listener waits 0.25 s after a first failure, doubling to 2 s."""
    assert [resubscribe_delay(n) for n in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert resubscribe_delay(10_000) == 2.0
    with pytest.raises(ValueError, match=r"^failures: expected >= 1, got 0$"):
        resubscribe_delay(0)


# ------------------------------------------------------------------ clients over a restart


async def test_pooled_connections_survive_a_redis_restart(tmp_path: Path) -> None:
    """After a SIGKILL and restart of Redis, every pooled connection of the gateway's and a worker's
    client works again at its first command; while Redis is down a command fails within seconds."""
    with killable_redis(tmp_path / "redis") as redis:
        gateway_client = redis_client(redis.url)
        worker_client = server_redis(redis.url, decode_responses=False, block_s=0.1)
        try:
            for client in (gateway_client, worker_client):
                await asyncio.gather(*(client.set(f"k{i}", i) for i in range(20)))  # 20 pooled connections
            redis.kill()
            started = time.monotonic()
            with pytest.raises(RedisConnectionError):
                await gateway_client.get("k1")
            assert time.monotonic() - started < 5
            redis.start()
            for client in (gateway_client, worker_client):
                results = await asyncio.gather(
                    *(client.get(f"k{i}") for i in range(20)), return_exceptions=True
                )
                assert [r for r in results if isinstance(r, BaseException)] == []
            assert await gateway_client.get("k7") == "7"  # the append-only file kept the data
            async with gateway_client.pipeline(transaction=False) as pipe:
                pipe.xadd("s", {"e": "1"})
                assert len(await pipe.execute()) == 1
        finally:
            await gateway_client.aclose()
            await worker_client.aclose()


async def test_settings_listener_subscribes_again_after_a_restart(tmp_path: Path) -> None:
    """A Redis restart under a subscribed listener: it subscribes again, says so once (for the
    gateway to push what it may have missed), and the next change arrives."""
    pushed: list[str] = []
    caught_up: list[bool] = []

    async def push(tenant: str, _layers: SettingsLayers | None) -> int:
        pushed.append(tenant)
        return 1

    async def catch_up() -> None:
        caught_up.append(True)

    with killable_redis(tmp_path / "redis") as redis:
        client = server_redis(redis.url)
        listener = SettingsListener(client, push, on_resubscribed=catch_up)
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.subscribed.wait(), 5)
            assert caught_up == []  # the first subscription is no catching up
            redis.kill()
            redis.start()

            async def delivered() -> bool:
                await publish_settings(client, "acme", AgentSettings(away_after_s=42.0))
                return "acme" in pushed

            await wait_until(delivered, 10, interval=0.2, what="a change delivered after the restart")
            assert listener.subscribed.is_set()
            assert caught_up == [True]
        finally:
            listener.stop()
            await asyncio.wait([task], timeout=5)
            await client.aclose()
    assert task.done()


async def test_listener_stop_ends_it_at_any_moment_of_its_start(redis_url: str) -> None:
    """stop() ends the listener whenever it lands (50 random moments while it subscribes): a cancel
    that redis-py loses cannot keep the gateway from stopping."""
    client = server_redis(redis_url)

    async def push(_tenant: str, _layers: SettingsLayers | None) -> int:
        return 0

    try:
        for _ in range(50):
            listener = SettingsListener(client, push)
            task = asyncio.create_task(listener.run())
            await asyncio.sleep(random.random() * 0.005)
            listener.stop()
            done, _ = await asyncio.wait([task], timeout=LISTEN_WAKE_S + 1)
            assert done == {task}
            assert not listener.subscribed.is_set()
    finally:
        await client.aclose()


# ------------------------------------------------------------------ end to end


@pytest.mark.slow
async def test_gateway_and_worker_carry_on_after_redis_restarts(tmp_path: Path) -> None:
    """Gateway and worker processes reach a redis-server across a link that hides its death (as a
    network does: the old connections look alive until used, then reset). Redis is SIGKILLed and
    restarted on the same port and AOF: an open session's next events are acked, the first new
    session is welcomed (not 1011), every event reaches the database, and within 10 s of the restart
    a settings change is pushed again (the listener subscribed again)."""
    database_url = migrated_sqlite(tmp_path)
    tenant, (token_1, token_2) = provision(database_url, agents=2)
    with killable_redis(tmp_path / "redis") as redis:
        async with DeadLinkProxy(redis.port, redis.password) as link:
            env = server_env(
                TELEWORK_REDIS_URL=link.url,
                TELEWORK_DATABASE_URL=database_url,
                TELEWORK_DATA_DIR=str(tmp_path),
                TELEWORK_GATEWAY_PORT=str(port := free_port()),
                TELEWORK_TENANT_REFRESH_S="0.2",
                TELEWORK_WORKER_NAME="w1",
            )
            gateway = spawn(["gateway"], env, tmp_path / "gateway.log")
            worker = spawn(["worker"], env, tmp_path / "worker.log")
            try:
                await _carry_on(
                    f"ws://127.0.0.1:{port}/v1/agent",
                    port,
                    gateway,
                    redis,
                    database_url,
                    tenant,
                    token_1,
                    token_2,
                )
                assert (gateway.poll(), worker.poll()) == (None, None)
            finally:
                await asyncio.to_thread(end, gateway)
                await asyncio.to_thread(end, worker)


async def _carry_on(
    url: str,
    port: int,
    gateway: subprocess.Popen[bytes],
    redis: KillableRedis,
    database_url: str,
    tenant: str,
    token_1: str,
    token_2: str,
) -> None:
    await wait_until(lambda: gateway.poll() is not None or _healthy(port), 30, 0.1, "gateway up")
    assert gateway.poll() is None
    async with connect(url, proxy=None) as first:
        assert isinstance(await say_hello(first, token_1), Welcome)
        await first.send(encode(state_events(1, 5)))
        assert (await next_frame_of(first, Ack)).seq == 5
        await wait_until(lambda: stored_events(database_url, tenant) == 5, 30, 0.1, "5 events stored")

        await asyncio.to_thread(redis.kill)
        await asyncio.to_thread(redis.start)
        restarted = time.monotonic()

        await first.send(encode(state_events(6, 3)))
        assert (await next_frame_of(first, Ack)).seq == 8
        async with connect(url, proxy=None) as second:
            welcome = await say_hello(second, token_2)
            assert isinstance(welcome, Welcome), f"expected a welcome, got {welcome!r}"
            await second.send(encode(state_events(1, 2)))
            assert (await next_frame_of(second, Ack)).seq == 2

            publisher = server_redis(redis.url)
            try:
                async with asyncio.timeout(10 - (time.monotonic() - restarted)):
                    while True:
                        await publish_settings(publisher, tenant, AgentSettings(away_after_s=42.0))
                        try:
                            push = await asyncio.wait_for(next_frame_of(second, SettingsPush), 0.5)
                        except TimeoutError:
                            continue
                        assert push.settings.away_after_s == 42.0
                        break
            finally:
                await publisher.aclose()
    await wait_until(lambda: stored_events(database_url, tenant) == 10, 30, 0.1, "10 events stored")


def _healthy(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/healthz")
