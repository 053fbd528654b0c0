"""The access matrix of agent settings, tasks and data policies (see ``tests/access_matrix.py``).

Settings: the tenant level is the administrator's (others 403; beta's administrator reads his
own tenant's); a group is seen by the administrator and its manager (mika, ``sales``); a user by
whoever sees them (wataru: alice, mika, himself). Only administrators change (403 for those
who see it). Tasks: everyone of the tenant lists them, administrators change them; another
tenant's task is 404. Policies: administrators only; a user's hold on wataru is 404 to whoever
does not see him.
"""

from __future__ import annotations

import itertools

import httpx
from sqlalchemy import select
from sqlmodel import Session, col

from storage.models import Group
from storage.tasks import create_task, find_task, tenant_tasks
from tests.access_matrix import Call, Case, everyone, expect
from tests.web_world import World

API = "/api/v1"
FRESH = itertools.count(1)
ADMIN_ONLY = expect(admin=200, manager=403, own=403, other=403, beta=(200, 403, 403))
ADMIN_ONLY_PAGE = expect(admin=200, manager=403, own=403, other=403, beta=(200, 403, 403), anon=303)
ADMIN_POST_PAGE = expect(admin=303, manager=403, own=403, other=403, beta=(303, 403, 403), anon=303)


def sales_id(world: World) -> int:
    with Session(world.engine) as s:
        gid = s.execute(
            select(col(Group.id)).where(col(Group.tenant_id) == "acme", col(Group.name) == "sales")
        ).scalar_one()
    return int(gid)


def fresh_task(world: World) -> tuple[int, str]:
    """A new task of acme, offered: (id, name)."""
    name = f"matrix task {next(FRESH)}"
    create_task(world.engine, "acme", name)
    found = next(t for t in tenant_tasks(world.engine, "acme") if t.name == name)
    assert find_task(world.engine, "acme", found.id) is not None
    return found.id, name


async def on_sales(world: World) -> Call:
    return Call(path={"group_id": sales_id(world)})


async def on_sales_change(world: World) -> Call:
    return Call(path={"group_id": sales_id(world)}, json={"values": {"away_after_s": 45}})


async def on_sales_form(world: World) -> Call:
    return Call(path={"group_id": sales_id(world)}, data={"away_after_s": "45"})


async def on_wataru(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]})


async def on_wataru_change(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]}, json={"values": {"threshold_level": 4}})


async def on_wataru_form(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]}, data={"threshold_level": "4"})


async def on_wataru_hold(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]}, data={"legal_hold": "on"})


async def tenant_change(world: World) -> Call:
    return Call(json={"values": {"away_after_s": 45}})


async def tenant_form(world: World) -> Call:
    return Call(data={"away_after_s": "45"})


async def task_listed(world: World) -> Call:
    _, name = fresh_task(world)
    return Call(query={"name": name})


def shows_task(call: Call, answer: httpx.Response) -> bool:
    return call.query["name"] in answer.text


async def new_task(world: World) -> Call:
    return Call(json={"name": f"matrix new {next(FRESH)}"})


async def new_task_form(world: World) -> Call:
    return Call(data={"name": f"matrix new {next(FRESH)}"})


async def task_change(world: World) -> Call:
    task_id, _ = fresh_task(world)
    return Call(path={"task_id": task_id}, json={"active": False})


async def task_form(world: World) -> Call:
    task_id, _ = fresh_task(world)
    return Call(path={"task_id": task_id}, data={"active": "0"})


async def policy_change(world: World) -> Call:
    return Call(json={"legal_hold": False, "retention_days": 30})


async def policy_form(world: World) -> Call:
    return Call(data={"retention_days": "30", "legal_hold": "off"})


SEES_WATARU = expect(admin=200, manager=200, own=200, other=404)
SALES = expect(admin=200, manager=200, own=404, other=404)
CHANGES_WATARU = expect(admin=200, manager=403, own=403, other=404)

CASES: list[Case] = [
    Case("GET", f"{API}/settings/fields", everyone(200, anon=401)),
    Case("GET", f"{API}/settings/history", ADMIN_ONLY),
    Case("GET", f"{API}/settings/tenant", ADMIN_ONLY),
    Case("PATCH", f"{API}/settings/tenant", ADMIN_ONLY, tenant_change),
    Case("GET", f"{API}/settings/groups/{{group_id}}", SALES, on_sales),
    Case("PATCH", f"{API}/settings/groups/{{group_id}}", expect(admin=200, manager=403, own=404, other=404),
         on_sales_change),
    Case("GET", f"{API}/settings/users/{{user_id}}", SEES_WATARU, on_wataru),
    Case("PATCH", f"{API}/settings/users/{{user_id}}", CHANGES_WATARU, on_wataru_change),
    Case("GET", f"{API}/tasks", everyone(200, anon=401), task_listed, shows_task),
    Case("POST", f"{API}/tasks", expect(admin=201, manager=403, own=403, other=403, beta=(201, 403, 403)),
         new_task),
    Case("PATCH", f"{API}/tasks/{{task_id}}", expect(admin=200, manager=403, own=403, other=403),
         task_change),
    Case("GET", f"{API}/policies", ADMIN_ONLY),
    Case("PATCH", f"{API}/policies", ADMIN_ONLY, policy_change),
    Case("PUT", f"{API}/policies/holds/{{user_id}}", CHANGES_WATARU, on_wataru),
    Case("DELETE", f"{API}/policies/holds/{{user_id}}", CHANGES_WATARU, on_wataru),
    Case("GET", "/settings", everyone(200, anon=303)),
    Case("POST", "/settings", ADMIN_POST_PAGE, tenant_form),
    Case("GET", "/settings/groups/{group_id}", expect(admin=200, manager=200, own=404, other=404, anon=303),
         on_sales),
    Case("POST", "/settings/groups/{group_id}",
         expect(admin=303, manager=403, own=404, other=404, anon=303), on_sales_form),
    Case("GET", "/settings/users/{user_id}", expect(admin=200, manager=200, own=200, other=404, anon=303),
         on_wataru),
    Case("POST", "/settings/users/{user_id}",
         expect(admin=303, manager=403, own=403, other=404, anon=303), on_wataru_form),
    Case("GET", "/tasks", everyone(200, anon=303), task_listed, shows_task),
    Case("POST", "/tasks", ADMIN_POST_PAGE, new_task_form),
    Case("POST", "/tasks/{task_id}", expect(admin=303, manager=403, own=403, other=403, anon=303), task_form),
    Case("GET", "/policies", ADMIN_ONLY_PAGE),
    Case("POST", "/policies", ADMIN_POST_PAGE, policy_form),
    Case("POST", "/policies/holds/{user_id}",
         expect(admin=303, manager=403, own=403, other=404, anon=303), on_wataru_hold),
]  # fmt: skip
