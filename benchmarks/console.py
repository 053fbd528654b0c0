"""Console benchmark: 50 signed-in clients listing and opening users, devices and schedules.

Fills a fresh PostgreSQL database with one tenant of U users in G groups (an administrator
per 200 users, a manager per group, the rest workers in the groups), a device per worker, a
Mon-Fri schedule per worker and I incidents; starts ``telework web`` as its own process (the
production argon2id parameters); then C clients sign in at once (each as a different
administrator or manager: their scopes differ) and, for S seconds, each in a loop lists a page
of users, opens one, lists devices, opens one, and reads a user's schedule, as a person clicking
through the console would (no think time by default: the worst case; ``--think-ms`` adds a
pause between clicks).

    python benchmarks/console.py --database-url postgresql+psycopg://root@127.0.0.1:5432/test \
        --redis-url redis://127.0.0.1:6379/12

Prints a table, then ``RESULT {json}`` with ``clients``, ``requests``, ``p50_ms``, ``p99_ms``
(every request but the sign-ins), ``errors`` (answers other than 200, and failed requests) and
``sign_in_p99_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from pathlib import Path
from typing import Any

import httpx
import redis
from bench_common import print_result, start_telework
from sqlalchemy import insert

from core.settings import ServerSettings
from storage.accounts import create_tenant
from storage.activity import Incident
from storage.db import create_database, drop_database, make_engine, upgrade
from storage.models import AgentDevice, Group, Membership, User
from storage.planning import Schedule
from storage.web_models import WebCredential
from web.passwords import make_hasher, params_of

log = logging.getLogger("benchmarks.console")
TENANT = "bench"
PASSWORD = "bench password 1234"
KINDS = ("peeking", "impersonation", "camera_blocked")


def seed(url: str, users: int, groups: int, incidents: int) -> dict[str, list[Any]]:
    """The tenant, its people, devices, schedules and incidents; returns the sign-in logins."""
    engine = make_engine(url)
    upgrade(engine)
    create_tenant(engine, TENANT, "Bench", "Asia/Tokyo")
    now = datetime.now(UTC)
    password_hash = make_hasher(params_of(ServerSettings())).hash(PASSWORD)
    admins = max(1, users // 200)
    rows: list[dict[str, Any]] = []
    for n in range(users):
        role = "admin" if n < admins else "manager" if n < admins + groups else "worker"
        rows.append(
            {"id": n + 1, "tenant_id": TENANT, "login": f"u{n:05d}", "name": f"User {n:05d}",
             "role": role, "enabled": True, "language": "en", "created_at": now}
        )  # fmt: skip
    rng = random.Random(7)
    with engine.begin() as conn:
        conn.execute(insert(User), rows)
        conn.execute(
            insert(WebCredential),
            [{"user_id": r["id"], "tenant_id": TENANT, "password_hash": password_hash, "version": 1,
              "updated_at": now} for r in rows],
        )  # fmt: skip
        conn.execute(
            insert(Group), [{"id": g + 1, "tenant_id": TENANT, "name": f"Group {g:02d}", "created_at": now}
                            for g in range(groups)]
        )  # fmt: skip
        members: list[dict[str, Any]] = []
        for r in rows[admins : admins + groups]:
            members.append({"group_id": r["id"] - admins, "user_id": r["id"], "role": "manager"})
        workers = [r for r in rows if r["role"] == "worker"]
        for i, r in enumerate(workers):
            members.append({"group_id": i % groups + 1, "user_id": r["id"], "role": "member"})
        conn.execute(insert(Membership), [{**m, "tenant_id": TENANT, "created_at": now} for m in members])
        conn.execute(
            insert(AgentDevice),
            [{"id": f"pc-{r['id']}", "tenant_id": TENANT, "user_id": r["id"], "name": f"PC {r['id']}",
              "token_hash": uuid.uuid4().hex + uuid.uuid4().hex, "created_at": now} for r in workers],
        )  # fmt: skip
        conn.execute(
            insert(Schedule),
            [{"tenant_id": TENANT, "user_id": r["id"], "weekday": d, "start_time": wall(9),
              "end_time": wall(18), "created_at": now} for r in workers for d in range(5)],
        )  # fmt: skip
        for start in range(0, incidents, 20_000):
            batch = []
            for _ in range(start, min(incidents, start + 20_000)):
                r = rng.choice(workers)
                began = now - timedelta(minutes=rng.randint(1, 90 * 24 * 60))
                batch.append(
                    {"tenant_id": TENANT, "agent_id": f"pc-{r['id']}", "user_id": r["id"],
                     "kind": rng.choice(KINDS), "started_at": began, "ended_at": began + timedelta(minutes=2),
                     "evidence": [], "trace": {}, "source_event_ids": [], "review_status": "unreviewed",
                     "legal_hold": False, "created_at": now, "updated_at": now}
                )  # fmt: skip
            conn.execute(insert(Incident), batch)
    engine.dispose()
    signers = [r["login"] for r in rows[: admins + groups]]
    return {"signers": signers}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_web(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get("/signin")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the web console at {base} did not answer within {timeout}s")


Step = Callable[[httpx.AsyncClient, random.Random, dict[str, Any]], Awaitable[httpx.Response]]


async def list_users(client: httpx.AsyncClient, rng: random.Random, seen: dict[str, Any]) -> httpx.Response:
    answer = await client.get("/api/v1/users", params={"limit": 50, "offset": rng.randrange(0, 20)})
    if answer.status_code == 200 and answer.json()["users"]:
        seen["users"] = [u["id"] for u in answer.json()["users"]]
    return answer


async def open_user(client: httpx.AsyncClient, rng: random.Random, seen: dict[str, Any]) -> httpx.Response:
    return await client.get(f"/api/v1/users/{rng.choice(seen.get('users') or [1])}")


async def list_devices(client: httpx.AsyncClient, rng: random.Random, seen: dict[str, Any]) -> httpx.Response:
    answer = await client.get("/api/v1/devices", params={"limit": 50})
    if answer.status_code == 200 and answer.json()["devices"]:
        seen["devices"] = [d["id"] for d in answer.json()["devices"]]
    return answer


async def open_device(client: httpx.AsyncClient, rng: random.Random, seen: dict[str, Any]) -> httpx.Response:
    return await client.get(f"/api/v1/devices/{rng.choice(seen.get('devices') or ['none'])}")


async def user_schedule(
    client: httpx.AsyncClient, rng: random.Random, seen: dict[str, Any]
) -> httpx.Response:
    return await client.get(f"/api/v1/users/{rng.choice(seen.get('users') or [1])}/schedule")


STEPS: tuple[Step, ...] = (list_users, open_user, list_devices, open_device, user_schedule)


async def client_loop(
    base: str, login: str, until: float, seed_: int, out: dict[str, list[Any]], think_s: float = 0.0
) -> None:
    rng = random.Random(seed_)
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        t0 = time.perf_counter()
        try:
            answer = await client.post(
                "/api/v1/session", json={"tenant": TENANT, "login": login, "password": PASSWORD}
            )
        except httpx.HTTPError as exc:
            out["errors"].append(f"sign-in {login}: {exc!r}")
            return
        out["sign_in_ms"].append((time.perf_counter() - t0) * 1000)
        if answer.status_code != 200:
            out["errors"].append(f"sign-in {login}: {answer.status_code} {answer.text[:100]}")
            return
        seen: dict[str, Any] = {}
        while time.monotonic() < until:
            for step in STEPS:
                t0 = time.perf_counter()
                try:
                    answer = await step(client, rng, seen)
                    ok = answer.status_code == 200
                    why = f"{step.__name__}: {answer.status_code} {answer.text[:100]}"
                except httpx.HTTPError as exc:
                    ok, why = False, f"{step.__name__}: {exc!r}"
                out["ms"].append((time.perf_counter() - t0) * 1000)
                out["by_step"].append(step.__name__)
                if not ok:
                    out["errors"].append(why)
                if think_s > 0:  # a person reading the page before the next click (random, mean think_s)
                    await asyncio.sleep(rng.expovariate(1 / think_s))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, url: str, folder: Path) -> dict[str, object]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TELEWORK_DATA_DIR": str(folder),
        "TELEWORK_DATABASE_URL": url,
        "TELEWORK_REDIS_URL": args.redis_url,
        "TELEWORK_WEB_PORT": str(port),
        "TELEWORK_WEB_FAILS_PER_ADDRESS": "100000",
        "TELEWORK_LOG_LEVEL": "WARNING",
    }
    web = start_telework(["web"], env, folder / "web.log")
    try:
        await wait_web(base)
        signers = args.signers
        out: dict[str, list[Any]] = {"ms": [], "sign_in_ms": [], "errors": [], "by_step": []}
        until = time.monotonic() + args.seconds
        await asyncio.gather(
            *(
                client_loop(base, signers[i % len(signers)], until, i, out, args.think_ms / 1000)
                for i in range(args.clients)
            )
        )
    finally:
        web.terminate()
        web.wait(timeout=30)
    for error in sorted(set(out["errors"]))[:10]:
        print("error:", error, file=sys.stderr)
    steps: dict[str, list[float]] = {}
    for name, ms in zip(out["by_step"], out["ms"], strict=True):
        steps.setdefault(name, []).append(ms)
    for name, values in steps.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"{name:<14} n={len(values):>6}  p50={p50:7.1f} ms  p99={p99:7.1f} ms")
    return {
        "clients": args.clients,
        "think_ms": args.think_ms,
        "requests": len(out["ms"]),
        "requests_per_s": round(len(out["ms"]) / args.seconds, 1),
        "p50_ms": round(statistics.median(out["ms"]) if out["ms"] else 0.0, 1),
        "p99_ms": round(percentile(out["ms"], 0.99), 1),
        "errors": len(out["errors"]),
        "sign_in_p99_ms": round(percentile(out["sign_in_ms"], 0.99), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url", required=True, help="a PostgreSQL server URL (a database is made on it)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="mean pause between a client's requests (default 0: flat out)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    name = f"tw_bench_console_{uuid.uuid4().hex[:8]}"
    url = create_database(args.database_url, name)
    redis.Redis.from_url(args.redis_url).flushdb()
    try:
        t0 = time.perf_counter()
        args.signers = seed(url, args.users, args.groups, args.incidents)["signers"]
        took = time.perf_counter() - t0
        print(f"seeded {args.users} users, {args.groups} groups, {args.incidents} incidents in {took:.1f} s")
        with tempfile.TemporaryDirectory() as folder:
            result = asyncio.run(run(args, url, Path(folder)))
    finally:
        drop_database(args.database_url, name)
        redis.Redis.from_url(args.redis_url).flushdb()
    print_result(result)


if __name__ == "__main__":
    main()
