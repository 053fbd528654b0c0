"""The access matrix of the devices routes (pages and API): see ``tests/access_matrix.py``.

Every case prepares a fresh device of acme's worker ``wataru`` (a member of mika's group
``sales``): the administrator may act on it, mika and wataru may see it but not act (403), wendy
and tenant beta cannot see it (404). A new device is issued for wataru, so the same holds.
"""

from __future__ import annotations

import uuid

import httpx
from starlette.concurrency import run_in_threadpool

from storage.accounts import create_agent
from tests.access_matrix import Call, Case, everyone, expect
from tests.web_world import World

API = "/api/v1/devices"


PREFIX = "acme-pc-"  # every device made here; no other tenant's device id starts so


def fresh_id() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:12]}"


async def device(world: World) -> str:
    """A new device of acme's wataru; its id."""
    agent_id = fresh_id()
    await run_in_threadpool(create_agent, world.engine, "acme", agent_id, "wataru")
    return agent_id


async def on_device(world: World) -> Call:
    return Call(path={"device_id": await device(world)})


async def listed(world: World) -> Call:
    await device(world)
    return Call()


async def issue_json(world: World) -> Call:
    return Call(json={"id": fresh_id(), "user_id": world.ids["wataru"]})


async def issue_form(world: World) -> Call:
    return Call(data={"device_id": fresh_id(), "login": "wataru"})


async def reassign_json(world: World) -> Call:
    return Call(path={"device_id": await device(world)}, json={"user_id": world.ids["wendy"]})


async def reassign_form(world: World) -> Call:
    return Call(path={"device_id": await device(world)}, data={"login": "wendy"})


def shows_device(call: Call, answer: httpx.Response) -> bool:
    """The answer names a device of acme made here."""
    return PREFIX in answer.text


ACT = expect(admin=200, manager=403, own=403, other=404)
SEE = expect(admin=200, manager=200, own=200, other=404)
PAGE_ACT = expect(admin=303, manager=403, own=403, other=404, anon=303)

CASES = [
    Case("GET", API, everyone(200, anon=401), listed, leaks=shows_device),
    Case("GET", API + "/{device_id}", SEE, on_device, leaks=shows_device),
    Case("POST", API, expect(admin=201, manager=403, own=403, other=404), issue_json),
    Case("POST", API + "/{device_id}/token", ACT, on_device, leaks=shows_device),
    Case("POST", API + "/{device_id}/revoke", ACT, on_device, leaks=shows_device),
    Case("PUT", API + "/{device_id}/user", ACT, reassign_json, leaks=shows_device),
    Case("GET", "/devices", everyone(200, anon=303), listed, leaks=shows_device),
    Case("GET", "/devices/{device_id}", {**SEE, "anon": 303}, on_device, leaks=shows_device),
    Case("POST", "/devices", expect(admin=200, manager=403, own=403, other=404, anon=303), issue_form),
    Case("POST", "/devices/{device_id}/token", {**ACT, "anon": 303}, on_device, leaks=shows_device),
    Case("POST", "/devices/{device_id}/revoke", PAGE_ACT, on_device, leaks=shows_device),
    Case("POST", "/devices/{device_id}/reassign", PAGE_ACT, reassign_form, leaks=shows_device),
]
