"""Every console route x every caller (three roles of two tenants, anonymous): the exact status.

The cases are the ``CASES`` lists of the modules in ``tests/access_cases/`` (see
``tests/access_matrix.py``); the first test makes the application's route table and the cases
the same set, so a route added without a case fails the suite.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

import tests.access_cases
from tests.access_matrix import CALLERS, Call, Case, route_table
from tests.web_world import World, make_world

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
BETA = ("bob", "ben", "bill")


def all_cases() -> list[Case]:
    """The cases of every module of ``tests/access_cases``, in module order."""
    cases: list[Case] = []
    for found in sorted(pkgutil.iter_modules(tests.access_cases.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"tests.access_cases.{found.name}")
        cases.extend(module.CASES)
    return cases


def filled(template: str, call: Call) -> str:
    """Pure: the route's path with the call's parameters put in (every one must be given)."""
    return PARAM.sub(lambda m: str(call.path[m.group(1)]), template)


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=100, web_fails_per_address=1000
    ) as w:
        yield w


async def send(world: World, case: Case, caller: str) -> tuple[Call, httpx.Response]:
    """One request of ``case`` by ``caller`` on a session of its own, on objects prepared for it."""
    call = await case.prepare(world)
    if caller == "anon":
        client, csrf = world.client(), None
    else:
        client, csrf = await world.signed_in(caller)
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    data = None
    if call.data is not None:
        data = {**call.data, **({"csrf": csrf} if csrf else {})}
    answer = await client.request(
        case.method,
        filled(case.path, call),
        params=call.query or None,
        json=call.json,
        data=data,
        files=call.files,
        headers=headers,
    )
    return call, answer


def test_every_route_of_the_app_has_exactly_one_case(world: World) -> None:
    """The route table and the cases are the same set, each route once: a new route cannot be left out."""
    keys = [(c.method, c.path) for c in all_cases()]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == []
    assert {k for k in route_table(world.app) if k[0] != "WEBSOCKET"} == set(keys)
    for case in all_cases():
        assert set(case.expect) == set(CALLERS), (case.method, case.path)


async def test_each_caller_gets_exactly_the_allowed_answer_on_every_route(world: World) -> None:
    """Each case x each caller: the status of the case, and no beta answer shows acme's object."""
    wrong: list[str] = []
    for case in all_cases():
        for caller in CALLERS:
            call, answer = await send(world, case, caller)
            if answer.status_code != case.expect[caller]:
                wrong.append(
                    f"{case.method} {case.path} as {caller}: expected {case.expect[caller]}, "
                    f"got {answer.status_code} {answer.text[:160]!r}"
                )
            elif caller in BETA and answer.is_success and case.leaks and case.leaks(call, answer):
                wrong.append(f"{case.method} {case.path} as {caller}: the answer shows acme's object")
            if caller == "anon" and answer.status_code == 303:
                assert answer.headers["location"].split("?")[0] == "/signin", (case.method, case.path)
    assert wrong == []


async def test_every_state_changing_route_refuses_a_signed_in_request_without_its_csrf_token(
    world: World,
) -> None:
    """POST/PUT/PATCH/DELETE of every route that needs a session, without the token: 403, session kept."""
    # needing a session: anonymous is sent away, and a signed-in caller gets something else
    # (the sign-in and set-up forms answer everyone alike)
    changing = {"POST", "PUT", "PATCH", "DELETE"}
    unsafe = [
        c
        for c in all_cases()
        if c.method in changing and c.expect["anon"] in (401, 303) and len(set(c.expect.values())) > 1
    ]
    assert len(unsafe) >= 40
    client, _ = await world.signed_in("alice")
    wrong: list[str] = []
    for case in unsafe:
        call = await case.prepare(world)
        answer = await client.request(
            case.method, filled(case.path, call), params=call.query or None, json=call.json,
            data=call.data, files=call.files,
        )  # fmt: skip
        if answer.status_code != 403:
            wrong.append(f"{case.method} {case.path}: {answer.status_code} {answer.text[:120]!r}")
    assert wrong == []
    assert (await client.get("/api/v1/me")).status_code == 200  # the session was not ended
