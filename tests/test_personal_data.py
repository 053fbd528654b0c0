"""A person's data request: export everything about a user, then erase it."""

from __future__ import annotations

import json
import stat
import zipfile
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.settings import ServerSettings
from storage import accounts, hash_chain_store
from storage.activity import EventRecord, Incident, Interval
from storage.audit_models import AuditEntry
from storage.crypto import sha256_hex
from storage.evidence_models import EvidenceObject, FaceTemplate
from storage.evidence_store import EvidenceStore, open_store, save_evidence
from storage.keyring import ensure_master_key
from storage.models import AgentDevice, Group, Membership, User
from storage.personal_data import PersonalDataError, erase_user, export_user
from storage.planning import Schedule

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
STILL, SCREEN, FACE = b"still" * 300, b"screen" * 300, b"face" * 300


@pytest.fixture
def store(engine: Engine, tmp_path: Path) -> EvidenceStore:
    ensure_master_key(tmp_path)
    return open_store(ServerSettings(data_dir=tmp_path), engine)


def _add(engine: Engine, *rows: Any) -> list[Any]:
    with Session(engine) as s:
        for row in rows:
            s.add(row)
        s.commit()
        return [getattr(r, "id", None) for r in rows]


def _event(eid: str, agent: str) -> EventRecord:
    return EventRecord(
        id=eid,
        tenant_id="acme",
        agent_id=agent,
        seq=1,
        ts=T,
        type="state",
        payload={"state": "present"},
        session_id="s",
        received_at=T,
        stored_at=T,
    )


def _world(engine: Engine, store: EvidenceStore, hold: bool = False) -> dict[str, Any]:
    """aiko (worker on pc-1, with every kind of data) and ben (manager on pc-2, who reviewed her incident)."""
    accounts.create_tenant(engine, "acme", "Acme")
    aiko = accounts.create_user(engine, "acme", "aiko", "Aiko Sato")
    ben = accounts.create_user(engine, "acme", "ben", "Ben", role="manager")
    accounts.create_agent(engine, "acme", "pc-1", "aiko")
    accounts.create_agent(engine, "acme", "pc-2", "ben")
    (group,) = _add(engine, Group(tenant_id="acme", name="sales", created_at=T))
    _add(
        engine,
        Membership(group_id=group, user_id=aiko, tenant_id="acme", created_at=T),
        Membership(group_id=group, user_id=ben, role="manager", tenant_id="acme", created_at=T),
        Schedule(
            tenant_id="acme", user_id=aiko, weekday=0, start_time=time(9), end_time=time(18), created_at=T
        ),
        _event("e-aiko", "pc-1"),
        _event("e-ben", "pc-2"),
        Interval(
            tenant_id="acme",
            agent_id="pc-1",
            user_id=aiko,
            kind="duty",
            value="on",
            started_at=T,
            start_event_id="e-aiko",
        ),
        Interval(
            tenant_id="acme",
            agent_id="pc-2",
            user_id=ben,
            kind="duty",
            value="on",
            started_at=T,
            start_event_id="e-ben",
        ),
    )
    (incident,) = _add(
        engine,
        Incident(
            tenant_id="acme",
            agent_id="pc-1",
            user_id=aiko,
            kind="peeking",
            started_at=T,
            ended_at=T,
            evidence=[sha256_hex(STILL)],
            review_status="confirmed",
            reviewer_id=ben,
            legal_hold=hold,
            created_at=T,
            updated_at=T,
        ),
    )
    save_evidence(
        engine, store, "acme", STILL, kind="camera", taken_at=T, agent_id="pc-1", incident_id=incident
    )
    save_evidence(engine, store, "acme", SCREEN, kind="screen", taken_at=T, agent_id="pc-1", user_id=aiko)
    ben_still = b"ben" * 300
    save_evidence(engine, store, "acme", ben_still, kind="camera", taken_at=T, agent_id="pc-2", user_id=ben)
    face = store.put("acme", FACE)
    key_id, _ = store.keyring.active("acme")
    _add(
        engine,
        FaceTemplate(
            tenant_id="acme",
            user_id=aiko,
            blob=store.keyring.seal("acme", b"vec", b"t"),
            key_id=key_id,
            engine="dlib",
            model_version="1",
            image_sha256=face.sha256,
            image_key=face.storage_key,
            created_at=T,
        ),
    )
    hash_chain_store.record(
        engine, actor="aiko", action="evidence.view", target="evidence:x", tenant_id="acme", at=T
    )
    return {"aiko": aiko, "ben": ben, "incident": incident, "ben_still": ben_still}


def test_export_user_bundle(engine: Engine, store: EvidenceStore, tmp_path: Path) -> None:
    """The zip holds every row about aiko (no secrets), her decrypted images, and the export is audited."""
    w = _world(engine, store)
    out = export_user(engine, store, "acme", "aiko", tmp_path / "out" / "aiko.zip", actor="admin")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as zf:
        doc = json.loads(zf.read("person.json"))
        files = {name: zf.read(name) for name in zf.namelist() if name != "person.json"}
    assert (doc["format"], doc["tenant"], doc["user"]["login"], doc["user"]["name"]) == (
        "telework-export/1",
        "acme",
        "aiko",
        "Aiko Sato",
    )
    counts = {name: len(rows) for name, rows in doc["tables"].items()}
    assert counts == {
        "agent_device": 1,
        "event": 1,
        "interval": 1,
        "incident": 1,
        "evidence_object": 2,
        "face_template": 1,
        "membership": 1,
        "schedule": 1,
        "daily_rollup": 0,
        "task_rollup": 0,
        "rollup_dirty": 0,
        "user_agent_settings": 0,
        "agent_settings_change": 0,
        "audit_log": 1,
    }
    assert files == {
        f"evidence/{sha256_hex(STILL)}.jpg": STILL,
        f"evidence/{sha256_hex(SCREEN)}.jpg": SCREEN,
        f"face_images/{sha256_hex(FACE)}.jpg": FACE,
    }
    text = json.dumps(doc)
    for secret in ("password_hash", "token_hash", '"blob"', "e-ben"):
        assert secret not in text
    assert doc["problems"] == []
    with Session(engine) as s:
        last = s.execute(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)).scalar_one()
    assert (last.action, last.target, last.actor) == ("user.export", f"user:{w['aiko']}", "admin")


def test_erase_user(engine: Engine, store: EvidenceStore) -> None:
    """Erasure removes aiko's rows and images everywhere, keeps ben's, and is audited by id only."""
    w = _world(engine, store)
    counts = erase_user(engine, store, "acme", "aiko", actor="admin")
    assert counts == {
        "face_images": 1,
        "face_template": 1,
        "evidence_object": 2,
        "incident": 1,
        "interval": 1,
        "event": 1,
        "membership": 1,
        "schedule": 1,
        "daily_rollup": 0,
        "task_rollup": 0,
        "rollup_dirty": 0,
        "user_agent_settings": 0,
        "agent_settings_change": 0,
        "agent_device_unlinked": 1,
        "tw_user": 1,
    }
    with Session(engine) as s:
        assert list(s.execute(select(col(User.login))).scalars()) == ["ben"]
        assert list(s.execute(select(col(EventRecord.id))).scalars()) == ["e-ben"]
        assert list(s.execute(select(col(Interval.user_id))).scalars()) == [w["ben"]]
        assert list(s.execute(select(col(Incident.id))).scalars()) == []
        assert list(s.execute(select(col(FaceTemplate.id))).scalars()) == []
        assert list(s.execute(select(col(EvidenceObject.sha256))).scalars()) == [sha256_hex(w["ben_still"])]
        assert dict(s.execute(select(col(AgentDevice.id), col(AgentDevice.user_id))).all()) == {
            "pc-1": None,
            "pc-2": w["ben"],
        }
        last = s.execute(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)).scalar_one()
    for data in (STILL, SCREEN, FACE):
        assert not store.exists("acme", sha256_hex(data))
    assert store.get("acme", sha256_hex(w["ben_still"])) == w["ben_still"]
    assert (last.action, last.target, last.detail["evidence_object"]) == (
        "user.erase",
        f"user:{w['aiko']}",
        2,
    )
    assert "aiko" not in json.dumps(last.detail)
    report = hash_chain_store.verify(engine, store)
    assert (report.entries, report.evidence, report.problems) == (2, 1, [])


def test_erase_refused_under_legal_hold(engine: Engine, store: EvidenceStore) -> None:
    """A user whose incident is under legal hold is not erased; the message names the incident."""
    w = _world(engine, store, hold=True)
    with pytest.raises(PersonalDataError, match=f"incidents {w['incident']} are under legal hold"):
        erase_user(engine, store, "acme", "aiko", actor="admin")
    with Session(engine) as s:
        assert s.get(User, w["aiko"]) is not None


def test_unknown_user(engine: Engine, store: EvidenceStore, tmp_path: Path) -> None:
    """Requests about a user that does not exist say so."""
    accounts.create_tenant(engine, "acme", "Acme")
    with pytest.raises(PersonalDataError, match="user 'nobody' does not exist in tenant 'acme'"):
        export_user(engine, store, "acme", "nobody", tmp_path / "x.zip", actor="admin")
    with pytest.raises(PersonalDataError, match="user 'nobody' does not exist in tenant 'acme'"):
        erase_user(engine, store, "acme", "nobody", actor="admin")
    assert not (tmp_path / "x.zip").exists()
