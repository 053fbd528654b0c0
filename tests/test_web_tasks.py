"""Tasks in the console: listed for everyone of the tenant; created, renamed, deactivated and
reactivated by an administrator, each audited and announced to the gateways; bad names refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from realtime.protocol import TasksPush
from realtime.tenant_settings import SettingsListener
from storage.audit_models import AuditEntry
from storage.tasks import MAX_TASK_NAME
from tests.web_world import World, make_world


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def names(answer: Any) -> list[tuple[str, bool]]:
    return [(t["name"], t["active"]) for t in answer.json()["tasks"]]


async def test_an_administrator_creates_renames_deactivates_and_reactivates_announced(world: World) -> None:
    """Each change is announced on the tenant's tasks channel with the offered list (what the gateway
    pushes to the agents); the list shows offered and stopped tasks; every change audited."""
    heard: asyncio.Queue[TasksPush] = asyncio.Queue()

    async def ignore(tenant: str, layers: object) -> int:
        return 0

    async def tasks(tenant: str, frame: TasksPush) -> int:
        await heard.put(frame)
        return 1

    async def announced(expected: TasksPush) -> None:
        # Redis pub/sub spans its databases: other suites' tenant "acme" may announce too
        async with asyncio.timeout(5):
            while await heard.get() != expected:
                pass

    listener = SettingsListener(world.redis, ignore, tasks)
    running = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.subscribed.wait(), 5)
        alice, csrf = await world.signed_in("alice", "192.0.2.9")
        h = {"X-CSRF-Token": csrf}
        made = await alice.post("/api/v1/tasks", json={"name": "  design  "}, headers=h)
        assert (made.status_code, names(made), made.json()["pushed"]) == (201, [("design", True)], True)
        await announced(TasksPush(tasks=["design"]))
        await alice.post("/api/v1/tasks", json={"name": "review"}, headers=h)
        await announced(TasksPush(tasks=["design", "review"]))
        task_id = made.json()["tasks"][0]["id"]
        renamed = await alice.patch(f"/api/v1/tasks/{task_id}", json={"name": "drafting"}, headers=h)
        assert names(renamed) == [("drafting", True), ("review", True)]
        await announced(TasksPush(tasks=["drafting", "review"]))
        stopped = await alice.patch(f"/api/v1/tasks/{task_id}", json={"active": False}, headers=h)
        assert names(stopped) == [("drafting", False), ("review", True)]
        await announced(TasksPush(tasks=["review"]))
        same = await alice.patch(f"/api/v1/tasks/{task_id}", json={"active": False}, headers=h)
        assert same.json()["pushed"] is None  # nothing changed, nothing announced
        again = await alice.patch(f"/api/v1/tasks/{task_id}", json={"active": True}, headers=h)
        assert names(again) == [("drafting", True), ("review", True)]
        await announced(TasksPush(tasks=["drafting", "review"]))
        wataru, _ = await world.signed_in("wataru")
        assert names(await wataru.get("/api/v1/tasks")) == [("drafting", True), ("review", True)]
    finally:
        listener.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    with Session(world.engine) as s:
        rows = s.execute(
            select(AuditEntry).where(col(AuditEntry.action).like("task.%")).order_by(col(AuditEntry.seq))
        ).scalars()
        entries = [(r.action, r.target, r.detail["source"], r.detail["changes"]) for r in rows]
    assert entries == [
        ("task.create", "task:design", "192.0.2.9", {"active": [None, True]}),
        ("task.create", "task:review", "192.0.2.9", {"active": [None, True]}),
        ("task.rename", "task:design", "192.0.2.9", {"name": ["design", "drafting"]}),
        ("task.remove", "task:drafting", "192.0.2.9", {"active": [True, False]}),
        ("task.create", "task:drafting", "192.0.2.9", {"active": [False, True]}),
    ]


async def test_bad_names_and_taken_names_are_refused_with_the_reason(world: World) -> None:
    """Empty, too long, a control character, a name another task has: 422 naming what is expected."""
    alice, csrf = await world.signed_in("alice")
    h = {"X-CSRF-Token": csrf}
    blank = await alice.post("/api/v1/tasks", json={"name": "   "}, headers=h)
    assert (blank.status_code, blank.json()["message"]) == (
        422, "This value cannot be used: task name: expected 1-200 characters, got an empty name",
    )  # fmt: skip
    long = await alice.post("/api/v1/tasks", json={"name": "x" * (MAX_TASK_NAME + 1)}, headers=h)
    assert long.status_code == 422
    control = await alice.post("/api/v1/tasks", json={"name": "a\x07b"}, headers=h)
    assert control.status_code == 422
    assert "expected no control characters" in control.json()["message"]
    first = await alice.post("/api/v1/tasks", json={"name": "one"}, headers=h)
    await alice.post("/api/v1/tasks", json={"name": "two"}, headers=h)
    taken = await alice.patch(
        f"/api/v1/tasks/{first.json()['tasks'][0]['id']}", json={"name": "two"}, headers=h
    )
    assert (taken.status_code, taken.json()["message"]) == (
        422, "This value cannot be used: task name: tenant 'acme' already has a task 'two'",
    )  # fmt: skip


async def test_the_tasks_page_lists_and_its_forms_change_them(world: World) -> None:
    """The page in English for an English user; the add, rename and stop forms answer 303 and change
    the list; a blank name re-shows the page (422)."""
    alice, csrf = await world.signed_in("alice")
    await alice.patch("/api/v1/me", json={"language": "en"}, headers={"X-CSRF-Token": csrf})
    empty = await alice.get("/tasks")
    assert "The organisation offers no tasks yet." in empty.text
    assert (await alice.post("/tasks", data={"csrf": csrf, "name": "support"})).status_code == 303
    listed = (await alice.get("/api/v1/tasks")).json()["tasks"]
    task_id = listed[0]["id"]
    assert (await alice.post(f"/tasks/{task_id}", data={"csrf": csrf, "name": "helpdesk"})).status_code == 303
    assert (await alice.post(f"/tasks/{task_id}", data={"csrf": csrf, "active": "0"})).status_code == 303
    page = await alice.get("/tasks")
    assert ("helpdesk" in page.text, "Not offered" in page.text, "Offer again" in page.text) == (
        True,
        True,
        True,
    )
    blank = await alice.post("/tasks", data={"csrf": csrf, "name": " "})
    assert blank.status_code == 422
    assert "task name: expected 1-200 characters" in blank.text
