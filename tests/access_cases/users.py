"""The access matrix of the users and groups changes (pages and API): see ``tests/access_matrix.py``.

A changed user is a fresh worker of acme's group ``sales`` (mika sees them, so 403; wataru and
wendy see only themselves, so 404); a group is a fresh one managed by mika with wataru as a
member (mika sees it, so 403 for changes; the workers see no group, so 404). Creating is open
to every administrator, each in their own tenant (beta's bob creates in beta: 201).
"""

from __future__ import annotations

import httpx

from tests.access_matrix import Call, Case, everyone, expect
from tests.users_world import FRESH, fresh_group, fresh_name, fresh_user
from tests.web_world import World

API = "/api/v1"
MADE = "made"  # what callers create here (beta's bob in beta), never counted as a leak


def shows_fresh(call: Call, answer: httpx.Response) -> bool:
    """The answer names a user or group of acme made here."""
    return FRESH in answer.text


async def new_user_json(world: World) -> Call:
    return Call(json={"login": fresh_name("new", MADE), "name": "New Person", "role": "worker"})


async def new_user_form(world: World) -> Call:
    return Call(
        data={"login": fresh_name("new", MADE), "name": "New Person", "role": "worker", "language": "en"}
    )


async def on_user(world: World) -> Call:
    return Call(path={"user_id": await fresh_user(world)})


async def rename_user_json(world: World) -> Call:
    return Call(path={"user_id": await fresh_user(world)}, json={"name": "Renamed", "enabled": False})


async def edit_user_form(world: World) -> Call:
    user_id = await fresh_user(world)
    return Call(path={"user_id": user_id}, data={"name": "Renamed", "role": "worker", "language": "en"})


async def disable_form(world: World) -> Call:
    return Call(path={"user_id": await fresh_user(world)}, data={"enabled": "0"})


async def new_group_json(world: World) -> Call:
    return Call(json={"name": fresh_name("newgroup", MADE)})


async def new_group_form(world: World) -> Call:
    return Call(data={"name": fresh_name("newgroup", MADE)})


async def on_group(world: World) -> Call:
    return Call(path={"group_id": await fresh_group(world)})


async def listed_group(world: World) -> Call:
    await fresh_group(world)
    return Call()


async def rename_group_json(world: World) -> Call:
    return Call(path={"group_id": await fresh_group(world)}, json={"name": fresh_name("renamed")})


async def rename_group_form(world: World) -> Call:
    return Call(path={"group_id": await fresh_group(world)}, data={"name": fresh_name("renamed")})


async def add_member(world: World) -> Call:
    return Call(path={"group_id": await fresh_group(world, members=()), "user_id": world.ids["wataru"]})


async def add_member_form(world: World) -> Call:
    return Call(
        path={"group_id": await fresh_group(world, members=())}, data={"user": str(world.ids["wataru"])}
    )


async def on_member(world: World) -> Call:
    return Call(path={"group_id": await fresh_group(world), "user_id": world.ids["wataru"]})


async def manager_to_add(world: World) -> Call:
    """A group of mika's and a fresh manager among its members (mika sees both), not yet its manager."""
    group = await fresh_group(world, members=())
    return Call(path={"group_id": group, "user_id": await fresh_user(world, group, role="manager")})


async def add_manager(world: World) -> Call:
    return await manager_to_add(world)


async def add_manager_form(world: World) -> Call:
    call = await manager_to_add(world)
    return Call(path={"group_id": call.path["group_id"]}, data={"user": str(call.path["user_id"])})


async def on_manager(world: World) -> Call:
    return Call(path={"group_id": await fresh_group(world), "user_id": world.ids["mika"]})


CREATE = expect(admin=201, manager=403, own=403, other=403, beta=(201, 403, 403))
# A fresh sales worker: the administrator acts, mika sees them (403), the workers and beta do not (404).
ACT_USER = expect(admin=200, manager=403, own=404, other=404)
# A fresh group managed by mika: the administrator acts, mika sees it (403), the workers do not (404).
ACT_GROUP = expect(admin=200, manager=403, own=404, other=404)
DONE_GROUP = expect(admin=204, manager=403, own=404, other=404)
SEE_GROUP = expect(admin=200, manager=200, own=404, other=404)
PAGE_GROUP = expect(admin=303, manager=403, own=404, other=404, anon=303)

CASES = [
    Case("POST", API + "/users", CREATE, new_user_json),
    Case("PATCH", API + "/users/{user_id}", ACT_USER, rename_user_json, leaks=shows_fresh),
    Case("POST", API + "/users/{user_id}/setup-link", {**ACT_USER, "alice": 201}, on_user, leaks=shows_fresh),
    Case("GET", API + "/groups", everyone(200, anon=401), listed_group, leaks=shows_fresh),
    Case("POST", API + "/groups", CREATE, new_group_json),
    Case("GET", API + "/groups/{group_id}", SEE_GROUP, on_group, leaks=shows_fresh),
    Case("PATCH", API + "/groups/{group_id}", ACT_GROUP, rename_group_json, leaks=shows_fresh),
    Case("DELETE", API + "/groups/{group_id}", DONE_GROUP, on_group),
    Case("PUT", API + "/groups/{group_id}/members/{user_id}", DONE_GROUP, add_member),
    Case("DELETE", API + "/groups/{group_id}/members/{user_id}", DONE_GROUP, on_member),
    Case("PUT", API + "/groups/{group_id}/managers/{user_id}", DONE_GROUP, add_manager),
    Case("DELETE", API + "/groups/{group_id}/managers/{user_id}", DONE_GROUP, on_manager),
    Case("POST", "/users", {**CREATE, "anon": 303}, new_user_form),
    Case(
        "POST", "/users/{user_id}", {**ACT_USER, "alice": 303, "anon": 303}, edit_user_form, leaks=shows_fresh
    ),
    Case("POST", "/users/{user_id}/enabled", {**ACT_USER, "alice": 303, "anon": 303}, disable_form),
    Case("POST", "/users/{user_id}/setup-link", {**ACT_USER, "anon": 303}, on_user, leaks=shows_fresh),
    Case("GET", "/groups", everyone(200, anon=303), listed_group, leaks=shows_fresh),
    Case("POST", "/groups", {**CREATE, "alice": 303, "bob": 303, "anon": 303}, new_group_form),
    Case("GET", "/groups/{group_id}", {**SEE_GROUP, "anon": 303}, on_group, leaks=shows_fresh),
    Case("POST", "/groups/{group_id}", PAGE_GROUP, rename_group_form, leaks=shows_fresh),
    Case("POST", "/groups/{group_id}/delete", PAGE_GROUP, on_group),
    Case("POST", "/groups/{group_id}/members", PAGE_GROUP, add_member_form),
    Case("POST", "/groups/{group_id}/managers", PAGE_GROUP, add_manager_form),
    Case("POST", "/groups/{group_id}/members/{user_id}/remove", PAGE_GROUP, on_member),
    Case("POST", "/groups/{group_id}/managers/{user_id}/remove", PAGE_GROUP, on_manager),
]
