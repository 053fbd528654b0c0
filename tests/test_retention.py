"""Retention: exactly what is due is deleted, in batches; legal holds and terminated tenants."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import ServerSettings
from storage import accounts
from storage.activity import EventRecord, Incident, Interval
from storage.audit_models import AuditEntry
from storage.crypto import sha256_hex
from storage.evidence_models import EvidenceObject, FaceTemplate
from storage.evidence_store import EvidenceStore, open_store, save_evidence
from storage.keyring import ensure_master_key
from storage.models import Tenant
from tests.waiting import wait_until_sync
from workers.retention import RetentionPolicy, data_cutoff, dead_letter_cutoff, face_erase_due
from workers.retention_store import run_loop, run_once

NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=90)
SEC = timedelta(seconds=1)


@pytest.fixture
def store(engine: Engine, tmp_path: Path) -> EvidenceStore:
    ensure_master_key(tmp_path)
    accounts.create_tenant(engine, "acme", "Acme")
    accounts.create_user(engine, "acme", "aiko", "Aiko")
    return open_store(ServerSettings(data_dir=tmp_path), engine)


def _add(engine: Engine, *rows: Any) -> list[int]:
    with Session(engine) as s:
        for row in rows:
            s.add(row)
        s.commit()
        return [getattr(r, "id", 0) for r in rows]


def _event(eid: str, ts: datetime, tenant: str = "acme") -> EventRecord:
    return EventRecord(
        id=eid,
        tenant_id=tenant,
        agent_id="pc-1",
        seq=1,
        ts=ts,
        type="state",
        payload={},
        session_id="s",
        received_at=ts,
        stored_at=ts,
    )


def _interval(start: datetime, end: datetime | None) -> Interval:
    return Interval(
        tenant_id="acme",
        agent_id="pc-1",
        kind="presence",
        value="present",
        started_at=start,
        ended_at=end,
        start_event_id="e",
        closed_by="event" if end else None,
    )


def _incident(end: datetime, hold: bool = False, evidence: list[str] | None = None) -> Incident:
    return Incident(
        tenant_id="acme",
        agent_id="pc-1",
        kind="peeking",
        started_at=end - timedelta(minutes=5),
        ended_at=end,
        evidence=evidence or [],
        legal_hold=hold,
        created_at=end,
        updated_at=end,
    )


def _ids(engine: Engine, column: Any) -> list[Any]:
    with Session(engine) as s:
        return sorted(s.execute(select(column)).scalars())


def _evidence(
    engine: Engine, store: EvidenceStore, name: str, taken: datetime, incident: int | None = None
) -> str:
    data = name.encode() * 50
    save_evidence(engine, store, "acme", data, kind="camera", taken_at=taken, incident_id=incident)
    return sha256_hex(data)


def test_cutoffs_are_pure() -> None:
    """The data cut-off is now minus the retention days; faces are due terminated_erase_days after."""
    policy = RetentionPolicy(retention_days=90, terminated_erase_days=30)
    assert data_cutoff(NOW, policy) == datetime(2026, 8, 27, 3, 0, tzinfo=UTC)
    terminated = NOW - timedelta(days=30)
    assert face_erase_due(terminated, NOW, policy)
    assert not face_erase_due(terminated + SEC, NOW, policy)
    assert not face_erase_due(None, NOW, policy)
    with pytest.raises(ValueError, match="expected an aware timestamp"):
        data_cutoff(NOW.replace(tzinfo=None), policy)


def test_dead_letter_cutoff_is_the_lower_of_its_keep_and_retention() -> None:
    """Dead letters: 30 days by default, never longer than retention_days; settings reach the policy."""
    assert dead_letter_cutoff(NOW, RetentionPolicy()) == NOW - timedelta(days=30)
    assert dead_letter_cutoff(NOW, RetentionPolicy(retention_days=7)) == NOW - timedelta(days=7)
    policy = RetentionPolicy.from_settings(ServerSettings(dead_letter_keep_days=45))
    assert (policy.dead_letter_keep_days, dead_letter_cutoff(NOW, policy)) == (45, NOW - timedelta(days=45))
    with pytest.raises(ValueError, match=r"dead_letter_keep_days >= 1, got 90, 30, 1000, 0"):
        RetentionPolicy(dead_letter_keep_days=0)


def test_deletes_exactly_what_is_due(engine: Engine, store: EvidenceStore) -> None:
    """Rows just older than the cut-off go; rows at or after it, open ones and held incidents stay;
    the pass that removed them is one audit entry with its counts."""
    _add(engine, _event("old", CUTOFF - SEC), _event("edge", CUTOFF), _event("new", CUTOFF + SEC))
    _, iv_new, iv_open = _add(
        engine,
        _interval(CUTOFF - 60 * SEC, CUTOFF - SEC),
        _interval(CUTOFF - SEC, CUTOFF + SEC),
        _interval(CUTOFF - timedelta(days=5), None),
    )
    shared = _evidence(engine, store, "shared", CUTOFF - timedelta(days=9))
    inc_old, inc_held, inc_new, inc_old2 = _add(
        engine,
        _incident(CUTOFF - SEC),
        _incident(CUTOFF - timedelta(days=10), hold=True, evidence=[shared]),
        _incident(CUTOFF + SEC),
        _incident(CUTOFF - SEC, evidence=[shared]),
    )
    ev_inc_old = _evidence(engine, store, "inc-old", CUTOFF - 300 * SEC, inc_old)
    ev_held = _evidence(engine, store, "held", CUTOFF - timedelta(days=10), inc_held)
    with Session(engine) as s:
        row = s.execute(select(EvidenceObject).where(col(EvidenceObject.sha256) == shared)).scalar_one()
        row.incident_id = inc_old2
        s.add(row)
        s.commit()
    ev_periodic_old = _evidence(engine, store, "periodic-old", CUTOFF - SEC)
    ev_periodic_new = _evidence(engine, store, "periodic-new", CUTOFF + SEC)

    report = run_once(engine, store, NOW)

    assert report.summary() == {
        "cutoff": CUTOFF.isoformat(),
        "events": 1,
        "intervals": 1,
        "incidents": 2,
        "evidence": 2,
        "held_incidents": 1,
        "face_templates": 0,
        "face_images": 0,
        "erased_tenants": [],
        "stopped": False,
        "problems": 0,
    }
    assert _ids(engine, col(EventRecord.id)) == ["edge", "new"]
    assert _ids(engine, col(Interval.id)) == sorted([iv_new, iv_open])
    assert _ids(engine, col(Incident.id)) == sorted([inc_held, inc_new])
    kept = {ev_held, shared, ev_periodic_new}
    assert set(_ids(engine, col(EvidenceObject.sha256))) == kept
    for sha in (ev_inc_old, ev_held, shared, ev_periodic_old, ev_periodic_new):
        assert store.exists("acme", sha) == (sha in kept), sha
    assert run_once(engine, store, NOW).summary()["events"] == 0
    assert run_once(engine, store, NOW).evidence == 0
    with Session(engine) as s:
        entries = s.execute(select(AuditEntry).where(col(AuditEntry.action) == "retention.purge")).scalars()
        (entry,) = list(entries)  # the pass that removed something, not the two that removed nothing
    assert (entry.actor, entry.target, entry.tenant_id) == ("system", "retention", None)
    assert entry.detail == {"source": "system", "removed": report.summary()}


def test_batches_and_progress(engine: Engine, store: EvidenceStore, caplog: pytest.LogCaptureFixture) -> None:
    """25 due events with batches of 10 are deleted in 3 transactions, each logged."""
    _add(engine, *[_event(f"e{i:02d}", CUTOFF - timedelta(hours=i + 1)) for i in range(25)])
    _add(engine, _event("keep", CUTOFF + SEC))
    caplog.set_level(logging.INFO, logger="storage.purge")
    report = run_once(engine, store, NOW, RetentionPolicy(batch=10))
    assert report.events == 25
    progress = [r for r in caplog.records if r.getMessage() == "purge progress" and r.table == "event"]  # type: ignore[attr-defined]
    assert [r.deleted for r in progress] == [10, 20, 25]  # type: ignore[attr-defined]
    assert _ids(engine, col(EventRecord.id)) == ["keep"]


def _face_tenant(engine: Engine, store: EvidenceStore, tenant: str, terminated: datetime | None) -> str:
    accounts.create_tenant(engine, tenant, tenant.title())
    uid = accounts.create_user(engine, tenant, "u", "U")
    with Session(engine) as s:
        row = s.get(Tenant, tenant)
        assert row is not None
        row.terminated_at = terminated
        s.add(row)
        s.commit()
    image = f"{tenant} face".encode() * 40
    stored = store.put(tenant, image)
    key_id, _ = store.keyring.active(tenant)
    _add(
        engine,
        *[
            FaceTemplate(
                tenant_id=tenant,
                user_id=uid,
                blob=store.keyring.seal(tenant, b"vector", b"t"),
                key_id=key_id,
                engine="dlib",
                model_version="1",
                image_sha256=stored.sha256 if i == 0 else None,
                image_key=stored.storage_key if i == 0 else None,
                created_at=NOW - timedelta(days=200),
            )
            for i in range(2)
        ],
    )
    save_evidence(engine, store, tenant, f"{tenant} still".encode() * 40, kind="camera", taken_at=NOW - SEC)
    return stored.sha256


def test_terminated_tenant_faces_erased_after_30_days(engine: Engine, store: EvidenceStore) -> None:
    """Face templates, registered images and evidence of a terminated tenant go 30 days on, not before."""
    terminated = NOW - timedelta(days=30)
    gone_image = _face_tenant(engine, store, "gone", terminated)
    live_image = _face_tenant(engine, store, "live", None)

    early = run_once(engine, store, NOW - SEC)
    assert (early.face_templates, early.face_images, early.erased_tenants) == (0, 0, ())
    assert len(_ids(engine, col(FaceTemplate.id))) == 4

    report = run_once(engine, store, NOW)
    assert (report.face_templates, report.face_images, report.evidence, report.erased_tenants) == (
        2,
        1,
        1,
        ("gone",),
    )
    assert set(_ids(engine, col(FaceTemplate.tenant_id))) == {"live"}
    assert set(_ids(engine, col(EvidenceObject.tenant_id))) == {"live"}
    assert not store.exists("gone", gone_image)
    assert store.exists("live", live_image)


def test_held_evidence_of_terminated_tenant_stays(engine: Engine, store: EvidenceStore) -> None:
    """Evidence of an incident under legal hold survives the terminated tenant's face erasure."""
    _face_tenant(engine, store, "gone", NOW - timedelta(days=40))
    (inc,) = _add(
        engine,
        Incident(
            tenant_id="gone",
            agent_id="pc-9",
            kind="impersonation",
            started_at=NOW - timedelta(days=2),
            ended_at=NOW - timedelta(days=1),
            legal_hold=True,
            created_at=NOW,
            updated_at=NOW,
        ),
    )
    data = b"held still" * 40
    save_evidence(
        engine, store, "gone", data, kind="camera", taken_at=NOW - timedelta(days=2), incident_id=inc
    )
    report = run_once(engine, store, NOW)
    assert (report.face_templates, report.evidence) == (2, 1)
    assert _ids(engine, col(EvidenceObject.sha256)) == [sha256_hex(data)]
    assert store.get("gone", sha256_hex(data)) == data


def test_stop_between_batches(engine: Engine, store: EvidenceStore) -> None:
    """A stop request before the run leaves everything in place and says so."""
    _add(engine, _event("old", CUTOFF - SEC))
    stop = threading.Event()
    stop.set()
    report = run_once(engine, store, NOW, stop=stop)
    assert (report.stopped, report.events) == (True, 0)
    assert _ids(engine, col(EventRecord.id)) == ["old"]


def test_loop_runs_and_stops(engine: Engine, store: EvidenceStore) -> None:
    """The daily loop runs a pass at once and returns promptly when asked to stop."""
    _add(engine, _event("old", CUTOFF - SEC))
    stop = threading.Event()
    thread = threading.Thread(
        target=run_loop, args=(engine, store, RetentionPolicy(), 86_400.0, stop, lambda: NOW)
    )
    thread.start()
    wait_until_sync(lambda: _ids(engine, col(EventRecord.id)) == [], 10, what="first retention pass")
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
