"""Frames pushed to open sessions (realtime/pushes.py): settings and task lists, and the catch-up
after the subscription came back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from realtime.protocol import SettingsPush, TasksPush, WireModel
from realtime.pushes import Pusher
from realtime.tenant_settings import SettingsCache
from realtime.tenant_tasks import TaskOffers


@dataclass
class Identity:
    user_id: int | None = None


@dataclass
class Session:
    """What a push needs of an open session: its identity and a send."""

    identity: Identity = field(default_factory=Identity)
    sent: list[WireModel] = field(default_factory=list)

    async def send(self, frame: WireModel) -> None:
        self.sent.append(frame)


async def test_catch_up_pushes_settings_and_the_task_list_read_afresh(aredis: aioredis.Redis) -> None:
    """After a lost subscription every open tenant gets its settings and its task list again, the
    list read from the database even while the cached one has not expired (a change was missed)."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    database = {tenant: ["Design"], "idle": ["Other"]}
    reads: list[str] = []

    def lookup(name: str) -> list[str]:
        reads.append(name)
        return list(database[name])

    offers = TaskOffers(lookup, ttl_s=3600.0)
    assert await offers.get(tenant) == ["Design"]
    database[tenant] = ["Design", "Review"]  # changed while the announcement could not arrive
    open_session, other = Session(), Session()
    sessions = {tenant: [open_session, other], "idle": []}
    pusher = Pusher(lambda: sessions, SettingsCache(aredis, None), offers)  # type: ignore[arg-type, return-value]

    await pusher.push_current()

    for session in (open_session, other):
        settings, tasks = session.sent
        assert isinstance(settings, SettingsPush)
        assert tasks == TasksPush(tasks=["Design", "Review"])
    assert reads == [tenant, tenant]  # the tenant without sessions is not read


async def test_announced_tasks_are_remembered_and_pushed_to_the_tenant_only(aredis: aioredis.Redis) -> None:
    """A task list announcement reaches every session of its tenant, none of another, and is the
    list the next welcome carries."""
    offers = TaskOffers(lambda name: [], ttl_s=3600.0)
    mine, theirs = Session(), Session()
    sessions = {"acme": [mine], "other": [theirs]}
    pusher = Pusher(lambda: sessions, SettingsCache(aredis, None), offers)  # type: ignore[arg-type, return-value]

    assert await pusher.push_tasks("acme", TasksPush(tasks=["Write"])) == 1

    assert (mine.sent, theirs.sent) == ([TasksPush(tasks=["Write"])], [])
    assert await offers.get("acme") == ["Write"]
