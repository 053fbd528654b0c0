"""Roles x tenants: whom each caller sees, and another tenant's ids.

The route-by-route matrix is ``tests/test_web_matrix.py`` (cases in ``tests/access_cases/``); its
CSRF sweep is there too. Here: the user lists show each caller exactly the people their role
lets them see, and another tenant's ids answer like ids nobody has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.web_world import PASSWORD, PEOPLE, World, make_world

CALLERS = ("alice", "mika", "wataru", "bob", "ben", "bill")
TARGETS = ("alice", "mika", "wataru", "wendy")  # acme's users
# Whom each caller may see: an administrator the tenant, a manager themselves and their group's
# members, a worker themselves.
VISIBLE = {
    "alice": {"alice", "mika", "wataru", "wendy"},
    "mika": {"mika", "wataru"},
    "wataru": {"wataru"},
    "bob": {"bob", "ben", "bill"},
    "ben": {"ben", "bill"},
    "bill": {"bill"},
}


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    # limits high enough for the matrix's deliberate wrong passwords
    async with make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=100, web_fails_per_address=1000
    ) as w:
        yield w


async def test_the_user_list_and_page_show_each_caller_exactly_whom_their_role_may_see(world: World) -> None:
    """GET /api/v1/users and /users, for each role of both tenants: exactly the visible people."""
    everyone = {login for _, login, _, _ in PEOPLE}
    for caller in CALLERS:
        client, _ = await world.signed_in(caller)
        api = await client.get("/api/v1/users")
        page = await client.get("/users")
        assert {u["login"] for u in api.json()["users"]} == VISIBLE[caller], caller
        assert {login for login in everyone if f">{login}</a>" in page.text} == VISIBLE[caller], caller
        for target in TARGETS:
            answer = await client.get(f"/api/v1/users/{world.ids[target]}")
            assert answer.status_code == (200 if target in VISIBLE[caller] else 404), (caller, target)


async def test_another_tenants_user_ids_read_like_ids_that_do_not_exist(world: World) -> None:
    """beta's administrator asking for acme's ids gets the same 404 body as for an id nobody has."""
    client, _ = await world.signed_in("bob")
    missing = await client.get("/api/v1/users/999999")
    for target in TARGETS:
        answer = await client.get(f"/api/v1/users/{world.ids[target]}")
        assert (answer.status_code, answer.json()) == (missing.status_code, missing.json()) == (
            404, {"error": "not_found", "message": "Not found."},
        )  # fmt: skip
    search = await client.get("/api/v1/users", params={"q": "i"})
    assert {u["login"] for u in search.json()["users"]} == {"bill"}  # not acme's alice, mika, wataru


async def test_search_matches_login_or_name_in_any_case_and_takes_wildcards_literally(world: World) -> None:
    """q=WA finds wataru (login) for alice; q=% and q=_ find nobody (no login or name has them)."""
    client, _ = await world.signed_in("alice")

    async def found(q: str) -> list[str]:
        answer = await client.get("/api/v1/users", params={"q": q})
        assert answer.status_code == 200
        return [u["login"] for u in answer.json()["users"]]

    assert await found("WA") == ["wataru"]
    assert await found("en") == ["wendy"]
    assert (await found("%"), await found("_"), await found("\\")) == ([], [], [])
    assert await found("") == ["alice", "mika", "wataru", "wendy"]
    assert PASSWORD not in str(await found("i"))
