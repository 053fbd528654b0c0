"""The profile's time zone: one's own IANA zone or the tenant's, through the API and the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.web_world import World, make_world


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


async def test_the_api_sets_an_own_zone_refuses_an_unknown_one_and_empty_is_the_tenants(world: World) -> None:
    """PATCH /me: Europe/Paris is kept, Mars/Base is 422 naming the value, "" goes back to Asia/Tokyo."""
    client, csrf = await world.signed_in("wataru")
    headers = {"X-CSRF-Token": csrf}
    paris = await client.patch("/api/v1/me", json={"time_zone": "Europe/Paris"}, headers=headers)
    assert (paris.status_code, paris.json()["time_zone"]) == (200, "Europe/Paris")
    bad = await client.patch("/api/v1/me", json={"time_zone": "Mars/Base"}, headers=headers)
    assert bad.status_code == 422 and "Mars/Base" in bad.json()["message"]
    assert (await client.get("/api/v1/me")).json()["time_zone"] == "Europe/Paris"
    back = await client.patch("/api/v1/me", json={"time_zone": ""}, headers=headers)
    assert (back.status_code, back.json()["time_zone"]) == (200, "Asia/Tokyo")


async def test_the_profile_page_offers_the_zones_and_saves_the_chosen_one(world: World) -> None:
    """The form lists IANA zones with the tenant's first; posting America/New_York selects it."""
    client, csrf = await world.signed_in("mika")
    page = await client.get("/profile")
    assert '<option value="" selected>' in page.text and '<option value="Europe/Paris">' in page.text
    saved = await client.post(
        "/profile", data={"csrf": csrf, "name": "Mika", "language": "en", "time_zone": "America/New_York"}
    )
    assert (saved.status_code, saved.headers["location"]) == (303, "/profile?saved=1")
    again = await client.get("/profile")
    assert '<option value="America/New_York" selected>' in again.text
    assert (await client.get("/api/v1/me")).json()["time_zone"] == "America/New_York"
