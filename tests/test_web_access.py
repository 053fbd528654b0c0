"""Roles x tenants over every route of the console, generated from the app's route table.

Each route of the application must have a case here (a new route fails the first test until it
gets one). Each case is run by every role of tenant acme and of tenant beta, and anonymously,
against every user of acme (for routes taking a user id): exactly the expected status, and for
lists exactly the expected people. Every state-changing route that needs a session refuses a
request without its CSRF token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.engine import Engine
from starlette.routing import Mount, Route

from tests.web_world import PASSWORD, PEOPLE, World, make_world

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CALLERS = ("alice", "mika", "wataru", "bob", "ben", "bill", None)  # None: not signed in
TARGETS = ("alice", "mika", "wataru", "wendy")  # acme's users
TENANT = {login: tenant for tenant, login, _, _ in PEOPLE}
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


@dataclass(frozen=True)
class Case:
    """How to call a route, and what each caller gets."""

    public: bool = False  # needs no session
    api: bool = True  # refusals as JSON 401 (else a page: 303 to /signin)
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    signed_in: int = 200  # what a signed-in caller gets (for a route without a user id)
    fresh: bool = False  # ends the session: run on a session of its own
    lists: bool = False  # answers the visible users: check exactly whom
    form_csrf: bool = True  # a form case carries the session's CSRF token
    extra: dict[str, int] = field(default_factory=dict)


def signed_status(case: Case) -> Callable[[str, str | None], int]:
    def status(caller: str, target: str | None) -> int:
        if target is None:
            return case.signed_in
        return 200 if target in VISIBLE[caller] else 404

    return status


CASES: dict[tuple[str, str], Case] = {
    ("POST", "/api/v1/session"): Case(public=True, json={"tenant": "acme", "login": "no", "password": "x"},
                                      signed_in=401),
    ("DELETE", "/api/v1/session"): Case(signed_in=204, fresh=True),
    ("DELETE", "/api/v1/sessions"): Case(fresh=True),
    ("GET", "/api/v1/me"): Case(),
    ("PATCH", "/api/v1/me"): Case(json={"language": "ja"}),
    ("PUT", "/api/v1/me/password"): Case(json={"current": "not it", "new": "a new long password"},
                                         signed_in=422),
    ("GET", "/api/v1/users"): Case(lists=True),
    ("GET", "/api/v1/users/{user_id}"): Case(),
    ("GET", "/api/v1/openapi.json"): Case(public=True),
    ("GET", "/"): Case(api=False, signed_in=303),
    ("GET", "/signin"): Case(public=True, api=False),
    ("POST", "/signin"): Case(public=True, api=False, form={"tenant": "acme", "login": "x", "password": "y"},
                              signed_in=403),
    ("POST", "/signout"): Case(api=False, form={}, signed_in=303, fresh=True),
    ("POST", "/signout-everywhere"): Case(api=False, form={}, signed_in=303, fresh=True),
    ("GET", "/setup"): Case(public=True, api=False),
    ("POST", "/setup"): Case(public=True, api=False, form={"code": "x", "password": "y"}, signed_in=403),
    ("GET", "/users"): Case(api=False, lists=True),
    ("GET", "/users/{user_id}"): Case(api=False),
    ("GET", "/profile"): Case(api=False),
    ("POST", "/profile"): Case(api=False, form={"name": "Same Name", "language": "ja"}, signed_in=303),
    ("POST", "/profile/password"): Case(api=False, form={"current": "not it", "new": "a new long password"},
                                        signed_in=422),
    ("GET", "/static/{path}"): Case(public=True, api=False),
}  # fmt: skip


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the application serves (HEAD aside), included routers too."""
    found: set[tuple[str, str]] = set()
    pending: list[Any] = list(app.routes)
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute | Route):
            found.update((m, route.path) for m in (route.methods or set()) - {"HEAD"})
        elif isinstance(route, Mount):
            found.add(("GET", route.path + "/{path}"))
        elif hasattr(route, "original_router"):  # FastAPI's record of an included router
            assert route.include_context.prefix == "", "routers carry their own prefix"
            pending.extend(route.original_router.routes)
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")
    return found


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    # limits high enough for the matrix's deliberate wrong passwords
    async with make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=100, web_fails_per_address=1000
    ) as w:
        yield w


class Sessions:
    """One signed-in client per caller, made again when a case ended it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.kept: dict[str, tuple[httpx.AsyncClient, str]] = {}

    async def get(self, caller: str, fresh: bool) -> tuple[httpx.AsyncClient, str]:
        if fresh or caller not in self.kept:
            self.kept[caller] = await self.world.signed_in(caller)
        signed = self.kept[caller]
        if fresh:
            del self.kept[caller]
        return signed


async def call(
    world: World, client: httpx.AsyncClient, method: str, path: str, case: Case, csrf: str | None
) -> httpx.Response:
    if path == "/static/{path}":
        path = "/static/console.css"
    headers = {"X-CSRF-Token": csrf} if csrf and (case.json is not None or method == "DELETE") else {}
    if case.form is not None:
        form = dict(case.form)
        if csrf and case.form_csrf:
            form["csrf"] = csrf
        return await client.request(method, path, data=form)
    return await client.request(method, path, json=case.json, headers=headers)


def listed(answer: httpx.Response, case: Case) -> set[str]:
    everyone = {login for _, login, _, _ in PEOPLE}
    if case.api:
        return {u["login"] for u in answer.json()["users"]}
    return {login for login in everyone if f">{login}</a>" in answer.text}


def test_every_route_of_the_app_has_a_case(world: World) -> None:
    """The app's route table and the cases are the same set: a new route cannot be left out."""
    assert route_table(world.app) == set(CASES)


async def test_each_role_of_each_tenant_gets_exactly_the_allowed_answer_on_every_route(world: World) -> None:
    """Every route x every caller (3 roles of 2 tenants, anonymous) x acme's users: the exact status."""
    sessions = Sessions(world)
    anonymous = world.client()
    seen: list[tuple[str, str, str | None, str | None, int]] = []
    for (method, template), case in sorted(CASES.items()):
        targets: tuple[str | None, ...] = TARGETS if "{user_id}" in template else (None,)
        for caller in CALLERS:
            for target in targets:
                path = template if target is None else template.replace("{user_id}", str(world.ids[target]))
                if caller is None:
                    client, csrf = anonymous, None
                    expected = 200 if case.public and case.signed_in != 401 else (401 if case.api else 303)
                    if case.public and case.signed_in in (401, 403):
                        expected = case.signed_in
                else:
                    client, csrf = await sessions.get(caller, case.fresh)
                    expected = signed_status(case)(caller, target)
                answer = await call(world, client, method, path, case, csrf)
                seen.append((method, template, caller, target, answer.status_code))
                assert answer.status_code == expected, (method, path, caller, target, answer.text[:300])
                if caller is None and not case.public and not case.api:
                    assert answer.headers["location"] == "/signin"
                if case.lists and caller is not None:
                    assert listed(answer, case) == VISIBLE[caller], (template, caller)
    assert len(seen) == sum(len(CALLERS) * (len(TARGETS) if "{user_id}" in t else 1) for _, t in CASES)


async def test_every_state_changing_route_refuses_a_request_without_its_csrf_token(world: World) -> None:
    """POST/PUT/PATCH/DELETE of every route needing a session, by every caller, without the token: 403."""
    sessions = Sessions(world)
    unsafe = [(m, p, c) for (m, p), c in sorted(CASES.items()) if m in UNSAFE and not c.public]
    assert len(unsafe) == 8
    for method, path, case in unsafe:
        for caller in CALLERS[:-1]:
            client, _ = await sessions.get(caller, False)
            answer = await call(world, client, method, path, case, None)
            assert answer.status_code == 403, (method, path, caller)
            assert (await client.get("/api/v1/me")).status_code == 200  # the session was not ended


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
