"""Retention period per tenant and legal holds: the pure rules, the store, the retention job
honouring them, the erasure refusing held data, and the console's API and page (audited)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import ServerSettings
from storage import accounts, policies
from storage.activity import EventRecord, Incident, Interval
from storage.audit_models import AuditEntry
from storage.evidence_models import FaceTemplate
from storage.evidence_store import open_store
from storage.keyring import ensure_master_key
from storage.models import User
from storage.personal_data import PersonalDataError, check_not_held, find_subject
from tests.test_retention import _face_tenant
from tests.web_world import World, make_world
from web.pages_policies import retention_field
from workers.retention import RetentionPolicy, check_tenant_days, cutoffs, tenant_days
from workers.retention_store import run_once

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# ---------------------------------------------------------------- pure rules


@given(
    st.one_of(st.none(), st.integers(-10, 50_000)),
    st.integers(1, 1000),
    st.integers(1, 400),
    st.integers(0, 400),
)
def test_a_tenant_period_is_its_own_or_the_service_one_within_the_bounds(
    stored: int | None, default: int, low: int, extra: int
) -> None:
    """tenant_days: the stored period (else the default), never outside low..high."""
    high = low + extra
    days = tenant_days(stored, default, low, high)
    assert low <= days <= high
    wanted = default if stored is None else stored
    if low <= wanted <= high:
        assert days == wanted


@given(st.integers(-100, 100_000))
def test_check_tenant_days_refuses_exactly_what_is_out_of_bounds(days: int) -> None:
    """check_tenant_days: days within 7..3650 come back; others are a ValueError naming the range."""
    if 7 <= days <= 3650:
        assert check_tenant_days(days, 7, 3650) == days
    else:
        with pytest.raises(ValueError, match="expected a whole number of days from 7 to 3650"):
            check_tenant_days(days, 7, 3650)


def test_cutoffs_give_each_tenant_its_own_moment() -> None:
    """A tenant with its own period gets its cut-off (bounded); one without the service's."""
    policy = RetentionPolicy(retention_days=90, min_days=7, max_days=365)
    cuts = cutoffs(NOW, policy, {"short": 10, "tiny": 1, "huge": 9999, "same": 90})
    assert cuts.default == NOW - 90 * DAY
    assert dict(cuts.tenants) == {"huge": NOW - 365 * DAY, "short": NOW - 10 * DAY, "tiny": NOW - 7 * DAY}
    assert cuts.latest() == NOW - 7 * DAY


@given(st.text(max_size=12))
def test_the_period_field_of_the_form_takes_digits_or_nothing(raw: str) -> None:
    """retention_field: empty -> None (the service's), digits -> the number, anything else refused."""
    clean = raw.strip()
    if not clean:
        assert retention_field(raw) is None
    elif clean.isdigit() and clean.isascii() and len(clean) <= 6:
        assert retention_field(raw) == int(clean)
    else:
        with pytest.raises(ValueError, match="retention_days: expected a whole number of days"):
            retention_field(raw)


# ---------------------------------------------------------------- the retention job


def _event(eid: str, tenant: str, agent: str, ts: datetime) -> EventRecord:
    return EventRecord(id=eid, tenant_id=tenant, agent_id=agent, seq=1, ts=ts, type="state", payload={},
                       session_id="s", received_at=ts, stored_at=ts)  # fmt: skip


def _interval(tenant: str, agent: str, user: int | None, end: datetime) -> Interval:
    return Interval(tenant_id=tenant, agent_id=agent, user_id=user, kind="presence", value="present",
                    started_at=end - DAY, ended_at=end, start_event_id="e", closed_by="event")  # fmt: skip


def _incident(tenant: str, agent: str, user: int | None, end: datetime) -> Incident:
    return Incident(tenant_id=tenant, agent_id=agent, user_id=user, kind="peeking", started_at=end - DAY,
                    ended_at=end, evidence=[], legal_hold=False, created_at=end, updated_at=end)  # fmt: skip


def _add(engine: Engine, *rows: Any) -> None:
    with Session(engine) as s:
        s.add_all(rows)
        s.commit()


def _left(engine: Engine, column: Any) -> list[Any]:
    with Session(engine) as s:
        return sorted(s.execute(select(column)).scalars())


@pytest.fixture
def three(engine: Engine, tmp_path: Path) -> dict[str, int]:
    """Tenants acme (service period), short (its own 10 days), held (legal hold); a user with an agent each,
    and acme's second user kept under a user hold."""
    ensure_master_key(tmp_path)
    ids: dict[str, int] = {}
    for tenant in ("acme", "short", "held"):
        accounts.create_tenant(engine, tenant, tenant.title())
        ids[tenant] = accounts.create_user(engine, tenant, "u", "U")
        accounts.create_agent(engine, tenant, f"pc-{tenant}", "u")
    ids["kept"] = accounts.create_user(engine, "acme", "kept", "Kept")
    accounts.create_agent(engine, "acme", "pc-kept", "kept")
    policies.set_retention(engine, "short", 10, 7, 3650, actor="test", source="test")
    policies.set_tenant_hold(engine, "held", True, actor="test", source="test")
    policies.set_user_hold(engine, "acme", ids["kept"], True, actor="test", source="test")
    return ids


def test_retention_uses_each_tenants_period_and_keeps_what_is_held(
    engine: Engine, tmp_path: Path, three: dict[str, int]
) -> None:
    """30-day-old data goes only in the 10-day tenant; 100-day-old data goes except the held tenant's
    and the held user's (events by agent, intervals and incidents by user or agent)."""
    old, older = NOW - 30 * DAY, NOW - 100 * DAY
    rows: list[Any] = []
    owners = (("acme", "pc-acme", three["acme"]), ("short", "pc-short", three["short"]),
              ("held", "pc-held", three["held"]), ("acme", "pc-kept", three["kept"]))  # fmt: skip
    for tenant, agent, user in owners:
        for label, moment in (("old", old), ("older", older)):
            rows.append(_event(f"{agent}-{label}", tenant, agent, moment))
            rows.append(_interval(tenant, agent, user, moment))
            rows.append(_incident(tenant, agent, None, moment))
    _add(engine, *rows)
    store = open_store(ServerSettings(data_dir=tmp_path), engine)
    report = run_once(engine, store, NOW, RetentionPolicy(retention_days=90, min_days=7, max_days=3650))
    assert _left(engine, col(EventRecord.id)) == [
        "pc-acme-old", "pc-held-old", "pc-held-older", "pc-kept-old", "pc-kept-older",
    ]  # fmt: skip
    assert _left(engine, col(Interval.agent_id)) == ["pc-acme", "pc-held", "pc-held", "pc-kept", "pc-kept"]
    assert _left(engine, col(Incident.agent_id)) == ["pc-acme", "pc-held", "pc-held", "pc-kept", "pc-kept"]
    assert (report.events, report.intervals, report.incidents) == (3, 3, 3)
    assert report.cutoff == NOW - 90 * DAY


def test_a_held_terminated_tenant_keeps_its_faces_until_the_hold_is_released(
    engine: Engine, tmp_path: Path
) -> None:
    """Terminated 40 days ago but under legal hold: nothing of it is erased; released, the next run
    erases its face templates, images and evidence."""
    ensure_master_key(tmp_path)
    store = open_store(ServerSettings(data_dir=tmp_path), engine)
    image = _face_tenant(engine, store, "gone", NOW - 40 * DAY)
    policies.set_tenant_hold(engine, "gone", True, actor="test", source="test")
    held = run_once(engine, store, NOW)
    assert (held.face_templates, held.face_images, held.evidence, held.erased_tenants) == (0, 0, 0, ())
    assert store.exists("gone", image)
    policies.set_tenant_hold(engine, "gone", False, actor="test", source="test")
    released = run_once(engine, store, NOW)
    assert (released.face_templates, released.face_images, released.evidence) == (2, 1, 1)
    assert released.erased_tenants == ("gone",)
    assert not store.exists("gone", image)


def test_a_held_users_faces_stay_when_their_terminated_tenant_is_erased(
    engine: Engine, tmp_path: Path
) -> None:
    """A user hold in a terminated tenant: the tenant's erasure leaves that user's templates and image."""
    ensure_master_key(tmp_path)
    store = open_store(ServerSettings(data_dir=tmp_path), engine)
    image = _face_tenant(engine, store, "gone", NOW - 40 * DAY)
    with Session(engine) as s:
        uid = s.execute(select(col(User.id)).where(col(User.tenant_id) == "gone")).scalar_one()
    policies.set_user_hold(engine, "gone", uid, True, actor="test", source="test")
    report = run_once(engine, store, NOW)
    assert (report.face_templates, report.face_images) == (0, 0)
    assert _left(engine, col(FaceTemplate.user_id)) == [uid, uid]
    assert store.exists("gone", image)


def test_erasure_is_refused_while_the_tenant_or_the_user_is_held(
    engine: Engine, three: dict[str, int]
) -> None:
    """check_not_held names the hold: the tenant's, the user's; released, the erasure may go on."""
    with engine.connect() as conn:
        with pytest.raises(PersonalDataError, match="the data of tenant 'held' is under legal hold"):
            check_not_held(conn, find_subject(engine, "held", "u"))
        with pytest.raises(PersonalDataError, match="the data of user 'kept' is under legal hold"):
            check_not_held(conn, find_subject(engine, "acme", "kept"))
        check_not_held(conn, find_subject(engine, "acme", "u"))
    policies.set_user_hold(engine, "acme", three["kept"], False, actor="test", source="test")
    with engine.connect() as conn:
        check_not_held(conn, find_subject(engine, "acme", "kept"))


def test_policy_changes_are_audited_once_and_bounded(engine: Engine, three: dict[str, int]) -> None:
    """Setting what is already so records nothing; a period out of bounds is refused naming the range."""
    assert not policies.set_retention(engine, "short", 10, 7, 3650, actor="a", source="s")
    assert not policies.set_tenant_hold(engine, "held", True, actor="a", source="s")
    with pytest.raises(policies.PolicyError, match="from 7 to 3650, got 6"):
        policies.set_retention(engine, "short", 6, 7, 3650, actor="a", source="s")
    assert policies.set_retention(engine, "short", None, 7, 3650, actor="a", source="s")
    with Session(engine) as s:
        entries = s.execute(
            select(col(AuditEntry.action), col(AuditEntry.target))
            .where(col(AuditEntry.action).like("policy.%"))
            .order_by(col(AuditEntry.seq))
        ).all()  # fmt: skip
    assert [tuple(e) for e in entries] == [
        ("policy.retention", "tenant:short"), ("policy.tenant_hold", "tenant:held"),
        ("policy.user_hold", f"user:{three['kept']}"), ("policy.retention", "tenant:short"),
    ]  # fmt: skip
    assert policies.tenant_policy(engine, "short").retention_days is None


# ---------------------------------------------------------------- the console


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(tmp_path, database_url, engine, redis_url) as w:
        yield w


def _audit(world: World, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    with Session(world.engine) as s:
        rows = s.execute(
            select(AuditEntry).where(col(AuditEntry.action) == action).order_by(col(AuditEntry.seq))
        ).scalars()
        return [(r.actor, r.target, dict(r.detail)) for r in rows]


async def test_an_administrator_sets_the_period_and_holds_through_the_api(world: World) -> None:
    """PATCH sets the period (bounded, 422 naming the range) and the tenant hold; PUT/DELETE a user's hold;
    each audited with actor, address, target and old -> new."""
    client, csrf = await world.signed_in("alice", "192.0.2.7")
    headers = {"X-CSRF-Token": csrf}
    start = await client.get("/api/v1/policies")
    assert start.json() == {"retention_days": None, "effective_days": 90, "service_days": 90, "min_days": 7,
                            "max_days": 3650, "legal_hold": False, "held_users": []}  # fmt: skip
    refused = await client.patch("/api/v1/policies", json={"retention_days": 5}, headers=headers)
    assert refused.status_code == 422
    assert "expected a whole number of days from 7 to 3650, got 5" in refused.json()["message"]
    done = await client.patch(
        "/api/v1/policies", json={"retention_days": 30, "legal_hold": True}, headers=headers
    )
    assert (done.json()["retention_days"], done.json()["effective_days"], done.json()["legal_hold"]) == (
        30,
        30,
        True,
    )
    wataru = world.ids["wataru"]
    held = await client.put(f"/api/v1/policies/holds/{wataru}", headers=headers)
    assert held.json() == {"user_id": wataru, "legal_hold": True, "changed": True}
    again = await client.put(f"/api/v1/policies/holds/{wataru}", headers=headers)
    assert again.json()["changed"] is False
    listed = await client.get("/api/v1/policies")
    assert listed.json()["held_users"] == [{"id": wataru, "login": "wataru"}]
    released = await client.delete(f"/api/v1/policies/holds/{wataru}", headers=headers)
    assert released.json() == {"user_id": wataru, "legal_hold": False, "changed": True}
    back = await client.patch("/api/v1/policies", json={"retention_days": None}, headers=headers)
    assert back.json()["retention_days"] is None
    actor = f"user:{world.ids['alice']}"
    retention = _audit(world, "policy.retention")
    assert [(a, t, d["source"], d["changes"]) for a, t, d in retention] == [
        (actor, "tenant:acme", "192.0.2.7", {"retention_days": [None, 30]}),
        (actor, "tenant:acme", "192.0.2.7", {"retention_days": [30, None]}),
    ]
    holds = _audit(world, "policy.user_hold")
    assert [(t, d["changes"]) for _, t, d in holds] == [
        (f"user:{wataru}", {"legal_hold": [False, True]}),
        (f"user:{wataru}", {"legal_hold": [True, False]}),
    ]
    assert [d["changes"] for _, _, d in _audit(world, "policy.tenant_hold")] == [
        {"legal_hold": [False, True]}
    ]


async def test_the_policies_page_shows_and_saves_in_the_users_language(world: World) -> None:
    """The page is in Japanese for alice (default); the form saves (303), a bad period re-shows it (422)."""
    client, csrf = await world.signed_in("alice")
    page = await client.get("/policies")
    assert page.status_code == 200
    assert "保存期間とリーガルホールド" in page.text
    saved = await client.post("/policies", data={"csrf": csrf, "retention_days": "45", "legal_hold": "on"})
    assert (saved.status_code, saved.headers["location"]) == (303, "/policies?saved=1")
    view = policies.tenant_policy(world.engine, "acme")
    assert (view.retention_days, view.legal_hold) == (45, True)
    bad = await client.post("/policies", data={"csrf": csrf, "retention_days": "abc", "legal_hold": "on"})
    assert bad.status_code == 422
    assert "retention_days: expected a whole number of days" in bad.text
    hold = await client.post(f"/policies/holds/{world.ids['wendy']}", data={"csrf": csrf, "legal_hold": "on"})
    assert hold.status_code == 303
    assert policies.tenant_policy(world.engine, "acme").held_users == (world.ids["wendy"],)
