"""A small world for the web console tests: two tenants, each with an administrator, a manager of one
group, a worker in that group (and, in acme, a worker outside it); passwords set; a console app on
real Redis and a real database, with a clock the test moves; httpx clients signed in as anyone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.settings import ServerSettings
from realtime.redis_client import server_redis
from storage.accounts import create_tenant, create_user
from storage.audit_trail import AuditAction
from storage.models import Group, Membership, utcnow
from web.app import create_app
from web.credentials import set_password
from web.passwords import Argon2Params, make_hasher

T0 = 1_800_000_000.0  # the clock's start (2027-01-15)
PASSWORD = "correct horse battery"
FAST = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)
BASE = "https://console.test"  # https: the Secure __Host- cookie is sent back

# (tenant, login, role, group managed or joined)
PEOPLE = (
    ("acme", "alice", "admin", None),
    ("acme", "mika", "manager", "sales"),
    ("acme", "wataru", "worker", "sales"),
    ("acme", "wendy", "worker", "ops"),
    ("beta", "bob", "admin", None),
    ("beta", "ben", "manager", "field"),
    ("beta", "bill", "worker", "field"),
)


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings_for(tmp_path: Path, database_url: str, redis_url: str, **overrides: object) -> ServerSettings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "database_url": database_url,
        "redis_url": redis_url,
        "web_secure_cookie": True,
        "web_base_url": BASE,
        "web_argon2_time_cost": FAST.time_cost,
        "web_argon2_memory_kib": FAST.memory_kib,
        "web_argon2_parallelism": FAST.parallelism,
        "web_session_idle_s": 600,
        "web_session_absolute_s": 3600,
        "web_fails_per_account": 3,
        "web_fails_per_address": 8,
        "web_fail_window_s": 600,
    }
    values.update(overrides)
    return ServerSettings.model_validate(values)


def populate(engine: Engine, clock: Clock, params: Argon2Params = FAST) -> dict[str, int]:
    """The people of :data:`PEOPLE` with password :data:`PASSWORD`; returns login -> user id."""
    hasher = make_hasher(params)
    password_hash = hasher.hash(PASSWORD)
    create_tenant(engine, "acme", "Acme", "Asia/Tokyo")
    create_tenant(engine, "beta", "Beta", "UTC")
    ids: dict[str, int] = {}
    groups: dict[str, int] = {}
    for tenant, login, role, group in PEOPLE:
        ids[login] = create_user(engine, tenant, login, login.title(), role)
        set_password(
            engine, tenant, ids[login], password_hash, now=clock(), action=AuditAction.WEB_PASSWORD_SET,
            actor="system", source="test",
        )  # fmt: skip
        if group is None:
            continue
        with Session(engine) as s:
            if group not in groups:
                row = Group(tenant_id=tenant, name=group, created_at=utcnow())
                s.add(row)
                s.flush()
                assert row.id is not None
                groups[group] = row.id
            membership = "manager" if role == "manager" else "member"
            s.add(
                Membership(
                    group_id=groups[group], user_id=ids[login], role=membership, tenant_id=tenant,
                    created_at=utcnow(),
                )
            )  # fmt: skip
            s.commit()
    return ids


@dataclass
class World:
    settings: ServerSettings
    engine: Engine
    redis: aioredis.Redis
    clock: Clock
    app: FastAPI
    ids: dict[str, int]
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, address: str = "192.0.2.10") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        client = httpx.AsyncClient(transport=transport, base_url=BASE, follow_redirects=False)
        self.clients.append(client)
        return client

    async def signed_in(self, login: str, address: str = "192.0.2.10") -> tuple[httpx.AsyncClient, str]:
        """A client signed in as ``login`` through the API, and its CSRF token."""
        tenant = next(t for t, name, _, _ in PEOPLE if name == login)
        client = self.client(address)
        answer = await client.post(
            "/api/v1/session", json={"tenant": tenant, "login": login, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        return client, str(answer.json()["csrf_token"])

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


@contextlib.asynccontextmanager
async def make_world(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, **overrides: object
) -> AsyncIterator[World]:
    clock = Clock()
    settings = settings_for(tmp_path, database_url, redis_url, **overrides)
    ids = populate(engine, clock)
    redis = server_redis(redis_url)
    world = World(settings, engine, redis, clock, create_app(settings, engine, redis, clock=clock), ids)
    try:
        yield world
    finally:
        await world.close()
        await redis.aclose()
