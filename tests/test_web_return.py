"""After sign-in, back to the page that asked for it: only paths of this site, never another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from tests.web_world import PASSWORD, World, make_world
from web.pages import MAX_NEXT, safe_next


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def test_safe_next_keeps_local_paths_and_refuses_everything_else() -> None:
    """Local paths with their query are kept; other origins, backslashes, controls, loops are None."""
    assert safe_next("/dashboards/live") == "/dashboards/live"
    assert safe_next("/users?q=wa") == "/users?q=wa"
    refused = ["", "users", "//evil.test/x", "/\\evil.test", "https://evil.test/", "/a\r\nb", "/signin",
               "/signin?next=/users", "/" + "a" * MAX_NEXT, None]  # fmt: skip
    assert [safe_next(v) for v in refused] == [None] * len(refused)


@given(st.text(max_size=60))
def test_a_kept_return_address_is_always_a_path_of_this_site(value: str) -> None:
    """Whatever is given, a kept value starts with one slash and holds no backslash or control."""
    kept = safe_next(value)
    if kept is not None:
        assert kept == value and kept.startswith("/") and not kept.startswith("//")
        assert "\\" not in kept and all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in kept)


async def test_a_page_asked_for_before_sign_in_is_where_the_sign_in_goes(world: World) -> None:
    """GET /devices unsigned -> /signin?next=/devices; signing in with that form lands on /devices."""
    client = world.client()
    first = await client.get("/devices")
    assert (first.status_code, first.headers["location"]) == (303, "/signin?next=%2Fdevices")
    page = await client.get(first.headers["location"])
    assert '<input type="hidden" name="next" value="/devices">' in page.text
    pre = page.text.split('name="pre" value="')[1].split('"')[0]
    form = {"tenant": "acme", "login": "alice", "password": PASSWORD, "pre": pre, "next": "/devices"}
    signed = await client.post("/signin", data=form)
    assert (signed.status_code, signed.headers["location"]) == (303, "/devices")


async def test_a_foreign_return_address_is_dropped_and_the_sign_in_goes_to_the_users(world: World) -> None:
    """next=//evil.test is neither put in the form nor followed: the sign-in lands on /users."""
    client = world.client()
    page = await client.get("/signin", params={"next": "//evil.test/x"})
    assert 'name="next"' not in page.text
    pre = page.text.split('name="pre" value="')[1].split('"')[0]
    form = {"tenant": "acme", "login": "alice", "password": PASSWORD, "pre": pre, "next": "//evil.test/x"}
    signed = await client.post("/signin", data=form)
    assert (signed.status_code, signed.headers["location"]) == (303, "/users")
