"""The users and groups pages: an administrator's forms (create, edit, disable, reset, groups and their
people), in the user's language; a manager's read-only view; the set-up page prefilled by ``?code=``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from tests.users_world import group_id
from tests.web_world import BASE, World, make_world
from web.api import MAX_ID
from web.deps import Problem
from web.pages_groups import form_id
from web.pages_users import zone_or_tenant


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


async def post(client: httpx.AsyncClient, csrf: str, path: str, **form: str) -> httpx.Response:
    return await client.post(path, data={**form, "csrf": csrf})


async def test_an_administrator_creates_a_user_on_the_page_and_sees_the_link_once(world: World) -> None:
    """POST /users answers 201 with the user's page and the link; the list shows them; in Japanese."""
    alice, csrf = await world.signed_in("alice")
    listing = await alice.get("/users")
    assert 'action="/users" class="card"' in listing.text and "新しいユーザー" in listing.text
    made = await post(alice, csrf, "/users", login="hana", name="Hana", role="manager", language="en")
    assert made.status_code == 201
    assert "ユーザーを作成しました。" in made.text  # alice's language, not hana's
    assert re.search(r"<code>" + re.escape(BASE) + r"/setup#[A-Za-z0-9_-]{43}</code>", made.text)
    assert ">hana</a>" in (await alice.get("/users")).text
    taken = await post(alice, csrf, "/users", login="hana", name="Hana Again")
    assert taken.status_code == 409 and "このログインIDはすでに" in taken.text


async def test_the_edit_disable_and_reset_forms_change_the_user(world: World) -> None:
    """Edit -> 303 and saved; disable -> 303 and shown disabled; reset -> the page with a new link."""
    alice, csrf = await world.signed_in("alice")
    wendy = world.ids["wendy"]
    page = f"/users/{wendy}"
    edited = await post(alice, csrf, page, name="Wendy Ono", role="worker", language="en", time_zone="UTC")
    assert (edited.status_code, edited.headers["location"]) == (303, f"{page}?saved=1")
    shown = await alice.get(f"{page}?saved=1")
    assert (
        "<h1>Wendy Ono</h1>" in shown.text and "<dd>UTC</dd>" in shown.text and "保存しました。" in shown.text
    )
    off = await post(alice, csrf, f"{page}/enabled", enabled="0")
    assert off.status_code == 303
    assert "<dd>無効</dd>" in (await alice.get(page)).text
    bad = await post(alice, csrf, f"{page}/enabled", enabled="maybe")
    assert bad.status_code == 422 and "enabled: expected 0 or 1" in bad.text
    reset = await post(alice, csrf, f"{page}/setup-link")
    assert reset.status_code == 200 and "パスワードをリセットし" in reset.text
    assert re.search(r"/setup#[A-Za-z0-9_-]{43}</code>", reset.text)


async def test_the_last_administrator_is_refused_on_the_page_with_the_reason(world: World) -> None:
    """alice disabling herself: 409 and the reason in her language."""
    alice, csrf = await world.signed_in("alice")
    refused = await post(alice, csrf, f"/users/{world.ids['alice']}/enabled", enabled="0")
    assert refused.status_code == 409 and "組織で最後の有効な管理者です。" in refused.text


async def test_a_manager_sees_her_group_and_its_people_without_any_form(world: World) -> None:
    """mika: the groups page lists sales; wataru's page names it; no change form anywhere."""
    mika, _ = await world.signed_in("mika")
    sales = group_id(world, "acme", "sales")
    groups = await mika.get("/groups")
    assert (
        f'<a href="/groups/{sales}">sales</a>' in groups.text
        and '<form method="post" action="/groups"' not in groups.text
    )
    group = await mika.get(f"/groups/{sales}")
    assert ">wataru</a>" in group.text and ">mika</a>" in group.text and "/remove" not in group.text
    user = await mika.get(f"/users/{world.ids['wataru']}")
    assert f'<a href="/groups/{sales}">sales</a> (メンバー)' in user.text
    assert "/enabled" not in user.text and "/setup-link" not in user.text
    assert (await mika.get(f"/groups/{group_id(world, 'acme', 'ops')}")).status_code == 404


async def test_an_administrator_manages_a_group_with_the_forms(world: World) -> None:
    """Create -> the group's page; add a member and a manager; remove them; rename; delete."""
    alice, csrf = await world.signed_in("alice")
    made = await post(alice, csrf, "/groups", name="design")
    assert made.status_code == 303
    page = made.headers["location"]
    gid = int(page.rsplit("/", 1)[1])
    assert (await post(alice, csrf, f"{page}/members", user=str(world.ids["wendy"]))).status_code == 303
    assert (await post(alice, csrf, f"{page}/managers", user=str(world.ids["mika"]))).status_code == 303
    shown = (await alice.get(page)).text
    assert f'action="/groups/{gid}/members/{world.ids["wendy"]}/remove"' in shown
    assert f'action="/groups/{gid}/managers/{world.ids["mika"]}/remove"' in shown
    not_a_manager = await post(alice, csrf, f"{page}/managers", user=str(world.ids["wendy"]))
    assert not_a_manager.status_code == 422
    wrong = await post(alice, csrf, f"{page}/members", user="wendy")
    assert wrong.status_code == 422 and "user: expected a user id" in wrong.text
    removed = await post(alice, csrf, f"{page}/members/{world.ids['wendy']}/remove")
    assert removed.status_code == 303 and ">wendy</a>" not in (await alice.get(page)).text
    assert (await post(alice, csrf, page, name="Design")).status_code == 303
    assert "<h1>Design</h1>" in (await alice.get(page)).text
    gone = await post(alice, csrf, f"{page}/delete")
    assert gone.headers["location"] == "/groups?deleted=1"
    assert (await alice.get(page)).status_code == 404


async def test_the_setup_page_takes_a_code_from_the_address(world: World) -> None:
    """/setup?code=X prefills the field (a link whose '#' was lost); the script still reads '#'."""
    page = await world.client().get("/setup", params={"code": "abc_DEF-123"})
    assert page.status_code == 200
    assert 'id="setup-code" value="abc_DEF-123"' in page.text
    assert (await world.client().get("/setup", params={"code": "x" * 129})).status_code == 422


@given(st.text(max_size=30))
def test_form_id_accepts_exactly_decimal_ids_in_range(value: str) -> None:
    """A decimal id 1..MAX_ID is returned as an int; anything else is a 422 naming what was expected."""
    try:
        got = form_id(value)
    except Problem as exc:
        assert exc.status == 422 and "expected a user id" in str(exc.facts["reason"])
        assert not (value.isdecimal() and value.isascii() and 1 <= int(value) <= MAX_ID)
    else:
        assert got == int(value) and 1 <= got <= MAX_ID


def test_a_blank_time_zone_of_a_form_is_the_tenants() -> None:
    """'' and spaces -> None (the tenant's); a name is kept, stripped."""
    assert (zone_or_tenant(""), zone_or_tenant("  "), zone_or_tenant(" UTC ")) == (None, None, "UTC")
