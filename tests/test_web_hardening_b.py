"""The console's hardening of user administration and schedule imports, against real Redis and both
databases: racing demotions keep an administrator, an API token hands out no console credential, a
schedule CSV's dates are bounded, Starlette's refusals speak the API's error format, and names made
of format characters are refused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage import account_rules as rules
from storage.account_rules import AccountError
from storage.accounts import create_tenant, create_user
from storage.audit_trail import AuditAction
from storage.models import User
from storage.planning import RollupDirty
from tests.web_world import FAST, PASSWORD, World, make_world
from web.credentials import set_password
from web.passwords import make_hasher
from web.schedule_csv import FIRST_DAY, LAST_DAY, Row, RowError, parse_row
from web.schedules import mark_dirty

API = "/api/v1"
ADMINS = ("alice", "amy", "anna", "ayumi")  # acme's administrators in the race


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


async def admins_signed_in(world: World) -> list[tuple[int, httpx.AsyncClient, str]]:
    """acme's four administrators (alice and three more), each signed in: (id, client, CSRF token)."""
    password_hash = make_hasher(FAST).hash(PASSWORD)
    for login in ADMINS[1:]:
        world.ids[login] = create_user(world.engine, "acme", login, login.title(), "admin")
        set_password(
            world.engine, "acme", world.ids[login], password_hash, now=world.clock(),
            action=AuditAction.WEB_PASSWORD_SET, actor="system", source="test",
        )  # fmt: skip
    out = []
    for login in ADMINS:
        tenant_login = {"tenant": "acme", "login": login, "password": PASSWORD}
        client = world.client()
        answer = await client.post(f"{API}/session", json=tenant_login)
        assert answer.status_code == 200, answer.text
        out.append((world.ids[login], client, str(answer.json()["csrf_token"])))
    return out


def enabled_admins(engine: Engine) -> int:
    with Session(engine) as s:
        found = s.execute(
            select(func.count())
            .select_from(User)
            .where(col(User.tenant_id) == "acme", col(User.role) == "admin", col(User.enabled).is_(True))
        ).scalar_one()
    return int(found)


@pytest.mark.parametrize(
    ("change", "refusal"), [({"enabled": False}, "disable"), ({"role": "worker"}, "demote")]
)
async def test_racing_admins_cannot_all_step_down(
    world: World, change: dict[str, object], refusal: str
) -> None:
    """Four administrators demoting or disabling themselves at once: three 200, one 409, one remains."""
    admins = await admins_signed_in(world)
    for _round in range(3):  # several rounds: a race that slips through once fails the test
        answers = await asyncio.gather(
            *(
                client.patch(f"{API}/users/{user_id}", json=change, headers={"X-CSRF-Token": csrf})
                for user_id, client, csrf in admins
            )
        )
        assert sorted(a.status_code for a in answers) == [200, 200, 200, 409]
        assert [a.json()["error"] for a in answers if a.status_code == 409] == [f"users_last_admin_{refusal}"]
        assert enabled_admins(world.engine) == 1
        with Session(world.engine) as s:  # the round's changes undone, for the next round
            for user in s.execute(select(User).where(col(User.login).in_(ADMINS))).scalars():
                user.role, user.enabled = "admin", True
                s.add(user)
            s.commit()
        admins = await admins_signed_in_again(world, admins)


async def admins_signed_in_again(
    world: World, admins: list[tuple[int, httpx.AsyncClient, str]]
) -> list[tuple[int, httpx.AsyncClient, str]]:
    """The administrators signed in anew (a disabled user's sessions ended)."""
    out = []
    for (user_id, _, _), login in zip(admins, ADMINS, strict=True):
        client = world.client()
        answer = await client.post(
            f"{API}/session", json={"tenant": "acme", "login": login, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        out.append((user_id, client, str(answer.json()["csrf_token"])))
    return out


async def admin_token(world: World) -> httpx.AsyncClient:
    """A client without cookies sending an API token of alice (acme's administrator)."""
    alice, csrf = await world.signed_in("alice")
    made = await alice.post(f"{API}/me/tokens", json={"name": "export"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    client = world.client("198.51.100.7")
    client.headers["Authorization"] = f"Bearer {made.json()['token']}"
    return client


async def test_an_api_token_hands_out_no_set_up_link(world: World) -> None:
    """With alice's token: creating a user and resetting mika's password (API and page) are 403
    api_token_forbidden, nothing is created and mika still signs in; alice's session may reset."""
    client = await admin_token(world)
    new = {"login": "mallory", "name": "Mallory", "role": "admin", "language": "en"}
    created = await client.post(f"{API}/users", json=new)
    assert (created.status_code, created.json()["error"]) == (403, "api_token_forbidden")
    reset = await client.post(f"{API}/users/{world.ids['mika']}/setup-link")
    assert (reset.status_code, reset.json()["error"]) == (403, "api_token_forbidden")
    page = await client.post(f"/users/{world.ids['mika']}/setup-link")
    assert page.status_code == 403 and "/setup/" not in page.text
    form = await client.post("/users", data={"login": "mallory", "name": "Mallory", "role": "admin"})
    assert form.status_code == 403
    with Session(world.engine) as s:
        assert s.execute(select(User).where(col(User.login) == "mallory")).first() is None
    await world.signed_in("mika")  # the password still works
    alice, csrf = await world.signed_in("alice")
    by_session = await alice.post(
        f"{API}/users/{world.ids['mika']}/setup-link", headers={"X-CSRF-Token": csrf}
    )
    assert by_session.status_code == 201 and by_session.json()["setup_link"].startswith("https://")


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1969-12-31", "2101-01-01"])
async def test_a_csv_date_outside_the_schedules_years_is_a_row_error(world: World, day: str) -> None:
    """An exception dated outside 1970-01-01..2100-12-31: 422 naming the row and the bounds, not 500."""
    alice, csrf = await world.signed_in("alice")
    data = f"kind,user,date\r\nexception,wataru,{day}\r\n".encode()
    answer = await alice.post(
        f"{API}/schedules/import", files={"file": ("s.csv", data, "text/csv")},
        headers={"X-CSRF-Token": csrf},
    )  # fmt: skip
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"row": 2, "column": "date", "expected": "a date from 1970-01-01 to 2100-12-31", "got": day}
    ]


async def test_marking_rollups_never_overflows_on_an_extreme_date(world: World) -> None:
    """mark_dirty from 0001-01-01 east of UTC and from 9999-12-31 west of it: markers, no error."""
    create_tenant(world.engine, "gamma", "Gamma", "America/Los_Angeles")
    with Session(world.engine) as s:
        mark_dirty(s, "acme", [world.ids["wataru"]], date(1, 1, 1), world.clock())  # Asia/Tokyo
        mark_dirty(s, "gamma", [world.ids["wataru"]], date(9999, 12, 31), world.clock())
        s.commit()
    with Session(world.engine) as s:
        marked = s.execute(select(func.count()).select_from(RollupDirty)).scalar_one()
    assert marked == 2


DATES = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))


@given(DATES, st.sampled_from(["{:%Y-%m-%d}", "{:%Y/%m/%d}"]))
def test_the_row_parser_bounds_every_date(day: date, shape: str) -> None:
    """Any date as an exception's date or a weekly valid_to: a Row inside the bounds, else one
    RowError naming the column and the bounds."""
    text = shape.format(day).zfill(10)
    exception = parse_row(2, {"kind": "exception", "user": "wataru", "date": text})
    weekly = parse_row(3, {"kind": "weekly", "user": "wataru", "weekday": "mon", "valid_to": text})
    if FIRST_DAY <= day <= LAST_DAY:
        assert isinstance(exception, Row) and exception.day == day
        assert isinstance(weekly, Row) and weekly.valid_to == day
    else:
        expected = "a date from 1970-01-01 to 2100-12-31"
        assert exception == [RowError(2, "date", expected, text)]
        assert weekly == [RowError(3, "valid_to", expected, text)]


@pytest.mark.parametrize("body", [b"[" * 30_000, b'{"name": "\xff\xfe"}'])
async def test_a_body_that_does_not_parse_is_answered_in_the_api_format(world: World, body: bytes) -> None:
    """JSON nested too deep or not UTF-8: 400 {"error": "bad_request", "message"}, no "detail"."""
    alice, csrf = await world.signed_in("alice")
    answer = await alice.patch(
        f"{API}/users/{world.ids['wataru']}", content=body,
        headers={"X-CSRF-Token": csrf, "content-type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad_request", "message": "There was an error parsing the body"}


async def test_broken_multipart_is_answered_in_the_api_format_and_pages_are_unchanged(world: World) -> None:
    """Multipart without its boundary or not matching it: 400 bad_request under /api; an unknown API
    path is 404 not_found; an unknown page keeps Starlette's answer."""
    alice, csrf = await world.signed_in("alice")
    for content_type, message in (
        ("multipart/form-data", "Missing boundary in multipart."),
        ("multipart/form-data; boundary=x", "Invalid multipart data."),
    ):
        answer = await alice.post(
            f"{API}/schedules/import", content=b"garbage",
            headers={"X-CSRF-Token": csrf, "content-type": content_type},
        )  # fmt: skip
        assert (answer.status_code, answer.json()) == (400, {"error": "bad_request", "message": message})
    missing = await alice.get(f"{API}/no-such-thing")
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found", "message": "Not Found"})
    page = await alice.get("/no-such-page")
    assert (page.status_code, page.json()) == (404, {"detail": "Not Found"})


FORMAT = st.characters(categories=["Cf"]).filter(lambda ch: ch not in rules.INVISIBLE)


@given(st.text(alphabet=st.characters(categories=["L", "N"]), max_size=10), FORMAT, st.integers(0, 10))
def test_a_format_character_in_a_name_or_login_is_refused_by_name(text: str, bad: str, at: int) -> None:
    """A zero-width space or any other format (Cf) character anywhere: refused, naming its code point."""
    value = text[:at] + bad + text[at:]
    for check in (lambda v: rules.display_name("name", v), rules.login):
        with pytest.raises(
            AccountError, match=re.escape(f"invisible (format) characters, got U+{ord(bad):04X}")
        ):
            check(value)


async def test_a_login_of_zero_width_spaces_is_refused_by_the_console(world: World) -> None:
    """POST /api/v1/users with login and name U+200B: 422 naming ZERO WIDTH SPACE, nobody created."""
    alice, csrf = await world.signed_in("alice")
    for new in (
        {"login": "\u200b\u200b", "name": "Zed", "role": "worker", "language": "en"},
        {"login": "zed", "name": "\u200b", "role": "worker", "language": "en"},
    ):
        answer = await alice.post(f"{API}/users", json=new, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 422 and "U+200B ZERO WIDTH SPACE" in answer.text, answer.text
    with Session(world.engine) as s:
        assert s.execute(select(func.count()).select_from(User)).scalar_one() == 7
