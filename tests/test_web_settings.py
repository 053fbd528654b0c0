"""Agent settings in the console: effective values and their sources per level, changes by an
administrator within the model's bounds (the CLI's), audited, and pushed live to a connected
agent through a real gateway; the page in the user's language."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from realtime.protocol import AgentSettings, SettingsPush, TasksPush
from realtime.protocol.agent_settings import FIELDS, SettingsError, parse_value
from storage.accounts import create_agent
from storage.audit_models import AuditEntry
from storage.models import Group
from tests.servers import serving
from tests.test_gateway import Running, recv, session
from tests.web_world import World, make_world
from web.pages_settings import form_changes, local_time, source_text


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def sales(world: World) -> int:
    with Session(world.engine) as s:
        return int(s.execute(select(col(Group.id)).where(col(Group.name) == "sales")).scalar_one())


def by_field(answer: dict[str, Any]) -> dict[str, tuple[Any, str, Any]]:
    return {r["field"]: (r["value"], r["source"], r["here"]) for r in answer["settings"]}


# ---------------------------------------------------------------- pure


@given(st.sampled_from(FIELDS), st.text(max_size=12))
def test_a_form_field_is_parsed_exactly_as_the_cli_flag(field: str, raw: str) -> None:
    """form_changes: empty unsets what is set here; a value is parse_value's (the CLI's), its error too."""
    current: dict[str, Any] = {field: None}
    if not raw.strip():
        assert form_changes({field: raw}, current) == ({}, [])
        assert form_changes({field: raw}, {field: 7}) == ({}, [field])
        return
    try:
        expected = parse_value(field, raw.strip())
    except SettingsError as exc:
        with pytest.raises(SettingsError) as caught:
            form_changes({field: raw}, current)
        assert str(caught.value) == str(exc)
        return
    assert form_changes({field: raw}, current) == ({field: expected}, [])
    assert form_changes({field: raw}, {field: expected}) == ({}, [])


def test_history_times_are_shown_in_the_principals_zone() -> None:
    """local_time: a UTC moment in Asia/Tokyo; an unknown zone falls back to UTC."""
    moment = datetime(2027, 1, 15, 0, 30, tzinfo=UTC)
    assert local_time(moment, "Asia/Tokyo") == "2027-01-15 09:30"
    assert local_time(moment, "Nowhere/Else") == "2027-01-15 00:30"


def test_sources_read_in_both_languages() -> None:
    """source_text names the service default, the tenant, a group by name and the user."""
    assert source_text("default", "en") == "service default"
    assert source_text("group sales", "en") == "group sales"
    assert source_text("group sales", "ja") == "グループ「sales」"
    assert source_text("user", "ja") == "ユーザー個別"


# ---------------------------------------------------------------- API


async def test_effective_values_and_sources_follow_tenant_group_and_user(world: World) -> None:
    """Tenant, then sales, then wataru's own: each level's answer shows the value, where it comes from,
    and what that level sets; a manager reads the group and wataru, wataru himself."""
    alice, csrf = await world.signed_in("alice")
    headers = {"X-CSRF-Token": csrf}
    wataru = world.ids["wataru"]
    t = await client_patch(alice, "/api/v1/settings/tenant", {"values": {"away_after_s": 45}}, headers)
    assert (t["changed"], by_field(t)["away_after_s"]) == (["away_after_s"], (45, "tenant", 45))
    group = {"values": {"away_after_s": 50, "threshold_level": 4}}
    g = await client_patch(alice, f"/api/v1/settings/groups/{sales(world)}", group, headers)
    assert by_field(g)["away_after_s"] == (50, "group sales", 50)
    u = await client_patch(
        alice, f"/api/v1/settings/users/{wataru}", {"values": {"threshold_level": 2}}, headers
    )
    rows = by_field(u)
    assert rows["away_after_s"] == (50, "group sales", None)
    assert rows["threshold_level"] == (2, "user", 2)
    assert rows["analysis_fps"] == (2, "default", None)
    mika, _ = await world.signed_in("mika")
    assert by_field((await mika.get(f"/api/v1/settings/users/{wataru}")).json()) == rows
    assert (await mika.get(f"/api/v1/settings/groups/{sales(world)}")).status_code == 200
    own, _ = await world.signed_in("wataru")
    assert by_field((await own.get(f"/api/v1/settings/users/{wataru}")).json()) == rows
    wendy = (
        await (await world.signed_in("alice"))[0].get(f"/api/v1/settings/users/{world.ids['wendy']}")
    ).json()
    assert by_field(wendy)["away_after_s"] == (45, "tenant", None)
    unset = await client_patch(
        alice, f"/api/v1/settings/users/{wataru}", {"unset": ["threshold_level"]}, headers
    )
    assert by_field(unset)["threshold_level"] == (4, "group sales", None)


async def client_patch(
    client: Any, path: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    answer = await client.patch(path, json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_a_value_out_of_bounds_is_refused_with_the_clis_message_and_nothing_stored(
    world: World,
) -> None:
    """away_after_s 0, an unknown setting, a boolean, an empty change: 422 saying what is expected."""
    alice, csrf = await world.signed_in("alice")
    headers = {"X-CSRF-Token": csrf}
    low = await alice.patch("/api/v1/settings/tenant", json={"values": {"away_after_s": 0}}, headers=headers)
    assert low.status_code == 422
    assert (
        low.json()["message"]
        == "This value cannot be used: away_after_s: expected a number from 1 to 3600, got 0"
    )
    odd = await alice.patch("/api/v1/settings/tenant", json={"values": {"colour": 1}}, headers=headers)
    assert odd.status_code == 422
    assert "setting: expected one of heartbeat_interval_s" in odd.json()["message"]
    boolean = await alice.patch(
        "/api/v1/settings/tenant", json={"values": {"away_after_s": True}}, headers=headers
    )
    assert boolean.status_code == 422
    empty = await alice.patch("/api/v1/settings/tenant", json={}, headers=headers)
    assert (empty.status_code, empty.json()["error"]) == (422, "bad_value")
    after = (await alice.get("/api/v1/settings/tenant")).json()
    assert all(r["here"] is None for r in after["settings"])


async def test_a_change_is_audited_with_actor_address_target_and_old_new(world: World) -> None:
    """settings.set from the console: actor user:<id>, the client address, the user target, old -> new."""
    alice, csrf = await world.signed_in("alice", "192.0.2.44")
    wataru = world.ids["wataru"]
    path = f"/api/v1/settings/users/{wataru}"
    await client_patch(alice, path, {"values": {"threshold_level": 4}}, {"X-CSRF-Token": csrf})
    await client_patch(alice, path, {"values": {"threshold_level": 5}}, {"X-CSRF-Token": csrf})
    with Session(world.engine) as s:
        rows = list(
            s.execute(
                select(AuditEntry)
                .where(col(AuditEntry.action) == "settings.set")
                .order_by(col(AuditEntry.seq))
            ).scalars()
        )
    actor = f"user:{world.ids['alice']}"
    assert [(r.actor, r.target, r.detail["source"], r.detail["changes"]) for r in rows] == [
        (actor, f"user:{wataru}", "192.0.2.44", {"threshold_level": [None, 4]}),
        (actor, f"user:{wataru}", "192.0.2.44", {"threshold_level": [4, 5]}),
    ]
    recent = (await alice.get("/api/v1/settings/history", params={"limit": 1})).json()["changes"]
    assert [(c["actor"], c["level"], c["target"], c["field"], c["old"], c["new"]) for c in recent] == [
        (actor, "user", "wataru", "threshold_level", 4, 5)
    ]
    page = await alice.get("/settings")
    assert "最近の変更" in page.text
    assert "4 → 5" in page.text


async def test_the_fields_answer_gives_every_setting_with_its_bounds(world: World) -> None:
    """/settings/fields: each setting of the model, its default and its range (as the CLI's help)."""
    wataru, _ = await world.signed_in("wataru")
    fields = {f["field"]: f for f in (await wataru.get("/api/v1/settings/fields")).json()["fields"]}
    assert list(fields) == list(FIELDS)
    assert fields["away_after_s"] == {
        "field": "away_after_s", "description": fields["away_after_s"]["description"], "default": 30.0,
        "allowed": "a number from 1 to 3600", "minimum": 1.0, "maximum": 3600.0, "choices": None,
    }  # fmt: skip
    assert fields["incident_action"]["choices"] == ["log", "lock"]


# ---------------------------------------------------------------- live push


async def received(ws: Any, expected: object) -> None:
    """Frames until ``expected`` (within 5 s): Redis pub/sub spans its databases, so other suites'
    tenant "acme" may announce its own changes to this gateway too."""
    async with asyncio.timeout(5):
        while await recv(ws) != expected:
            pass


async def test_a_console_change_reaches_a_connected_agent_live(world: World, tmp_path: Path) -> None:
    """A real gateway with wataru's agent connected: a user-level change and a task change in the
    console arrive on the agent's session as settings and tasks frames."""
    token = create_agent(world.engine, "acme", "pc-wataru", "wataru")
    settings = world.settings.model_copy(update={"gateway_port": 0})
    async with serving(settings) as (app, port):
        running = Running(app, port, "acme", "pc-wataru", token, str(world.settings.database_url))
        async with session(running) as (ws, welcome):
            assert welcome.settings == AgentSettings()
            await asyncio.wait_for(running.gateway.subscribed.wait(), 5)
            alice, csrf = await world.signed_in("alice")
            headers = {"X-CSRF-Token": csrf}
            body = {"values": {"away_after_s": 90, "incident_action": "lock"}}
            changed = await client_patch(
                alice, f"/api/v1/settings/users/{world.ids['wataru']}", body, headers
            )
            assert changed["pushed"] is True
            await received(ws, SettingsPush(settings=AgentSettings(away_after_s=90, incident_action="lock")))
            created = await alice.post("/api/v1/tasks", json={"name": "design"}, headers=headers)
            assert created.status_code == 201
            await received(ws, TasksPush(tasks=["design"]))


# ---------------------------------------------------------------- pages


async def test_the_settings_page_saves_a_group_form_and_refuses_a_bad_value(world: World) -> None:
    """The group page in Japanese; the form sets one value, empties one (inherit); a bad value re-shows
    the page (422) with the reason and stores nothing."""
    alice, csrf = await world.signed_in("alice")
    path = f"/settings/groups/{sales(world)}"
    page = await alice.get(path)
    assert page.status_code == 200
    assert "グループ「sales」の設定" in page.text
    saved = await alice.post(path, data={"csrf": csrf, "away_after_s": "75", "threshold_level": "4"})
    assert (saved.status_code, saved.headers["location"]) == (303, f"{path}?saved=1")
    cleared = await alice.post(path, data={"csrf": csrf, "away_after_s": "75"})
    assert cleared.status_code == 303
    bad = await alice.post(path, data={"csrf": csrf, "away_after_s": "9999"})
    assert bad.status_code == 422
    assert "away_after_s: expected a number from 1 to 3600, got &#39;9999&#39;" in bad.text
    mika, _ = await world.signed_in("mika")
    answer = (await mika.get(f"/api/v1/settings/groups/{sales(world)}")).json()
    assert {f: v[2] for f, v in by_field(answer).items() if v[2] is not None} == {"away_after_s": 75}
    wataru, _ = await world.signed_in("wataru")
    own = await wataru.get("/settings")
    assert (own.status_code, "75" in own.text, 'name="away_after_s"' in own.text) == (200, True, False)
