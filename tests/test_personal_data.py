"""A person's data request: export everything about a user, then erase it."""

from __future__ import annotations

import json
import stat
import zipfile
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.errors import OperatorError
from core.settings import ServerSettings
from storage import accounts, hash_chain_store
from storage.activity import EventRecord, Incident, Interval
from storage.agent_settings_store import change_settings
from storage.audit_models import AuditEntry
from storage.crypto import sha256_hex
from storage.db import import_tables
from storage.evidence_models import EvidenceObject, FaceTemplate
from storage.evidence_store import EvidenceStore, open_store, save_evidence
from storage.keyring import ensure_master_key
from storage.models import AgentDevice, Group, Membership, User
from storage.personal_data import PersonalDataError, export_user
from storage.personal_erase import manifest_key, unfinished
from storage.personal_registry import ERASED_ACTOR, HOLDINGS
from storage.planning import DailyRollup, RollupDirty, Schedule, TaskRollup
from storage.web_models import SetupCode, WebCredential
from telework.erase_user import Report, erase, resume

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
STILL, SCREEN, FACE = b"still" * 300, b"screen" * 300, b"face" * 300


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    ensure_master_key(tmp_path)
    return ServerSettings(data_dir=tmp_path)


@pytest.fixture
def store(engine: Engine, settings: ServerSettings) -> EvidenceStore:
    return open_store(settings, engine)


def erase_aiko(settings: ServerSettings, engine: Engine, store: EvidenceStore) -> Report:
    """What `admin erase-user --tenant acme aiko` does, without Redis."""
    return erase(settings, engine, store, "acme", "aiko", "admin", None)


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
    (ben_incident,) = _add(
        engine,
        Incident(
            tenant_id="acme", agent_id="pc-2", user_id=ben, kind="peeking", started_at=T, ended_at=T,
            review_status="false_positive", reviewer_id=aiko, created_at=T, updated_at=T,
        ),
    )  # fmt: skip
    day = T.date()
    _add(
        engine,
        DailyRollup(tenant_id="acme", user_id=aiko, day=day, worked_s=3600, computed_at=T),
        TaskRollup(tenant_id="acme", user_id=aiko, day=day, task="sales", seconds=60, count=1, computed_at=T),
        RollupDirty(tenant_id="acme", user_id=aiko, since=T, created_at=T),
        WebCredential(user_id=aiko, tenant_id="acme", password_hash="$argon2id$secret-hash", updated_at=T),
        SetupCode(code_hash="c0de" * 16, user_id=aiko, tenant_id="acme", created_at=T, expires_at=T),
        DailyRollup(tenant_id="acme", user_id=ben, day=day, worked_s=60, computed_at=T),
    )
    change_settings(engine, "acme", {"away_after_s": 45}, login="aiko", actor="cli:root")
    change_settings(engine, "acme", {"threshold_level": 4}, login="ben", actor="aiko")
    hash_chain_store.record(
        engine, actor="aiko", action="evidence.view", target="evidence:x", tenant_id="acme", at=T
    )
    return {
        "aiko": aiko,
        "ben": ben,
        "incident": incident,
        "ben_still": ben_still,
        "ben_incident": ben_incident,
    }


def _rows(engine: Engine) -> dict[str, int]:
    """Rows per table (every table of the schema)."""
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in import_tables().sorted_tables
        }


def _audited(engine: Engine, user_id: int) -> dict[str, int]:
    """Audit entries aiko made, and entries about her (the account helpers audit their changes too)."""
    with engine.connect() as conn:
        made = conn.execute(text("SELECT count(*) FROM audit_log WHERE actor = 'aiko'")).scalar_one()
        about = conn.execute(
            text("SELECT count(*) FROM audit_log WHERE target = :t"), {"t": f"user:{user_id}"}
        )
        return {"audit_log": int(made), "audit_log.target": int(about.scalar_one())}


def test_export_user_bundle(engine: Engine, store: EvidenceStore, tmp_path: Path) -> None:
    """The zip holds every holding of aiko's (no secrets), her decrypted images; the export is audited."""
    w = _world(engine, store)
    audited = _audited(engine, w["aiko"])
    out = export_user(engine, store, "acme", "aiko", tmp_path / "out" / "aiko.zip", actor="admin")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as zf:
        doc = json.loads(zf.read("person.json"))
        files = {name: zf.read(name) for name in zf.namelist() if name != "person.json"}
    assert (doc["format"], doc["tenant"], doc["user"]["login"], doc["user"]["name"]) == (
        "telework-export/2",
        "acme",
        "aiko",
        "Aiko Sato",
    )
    counts = {name: len(rows) for name, rows in doc["tables"].items()}
    assert counts == {
        "evidence_object": 2,
        "evidence_object.incident_id": 1,  # her own still, attached to her incident
        "face_template": 1,
        "incident": 1,
        "incident.reviewer_id": 1,
        "interval": 1,
        "event": 1,
        "daily_rollup": 1,
        "task_rollup": 1,
        "rollup_dirty": 1,
        "schedule": 1,
        "membership": 1,
        "user_agent_settings": 1,
        "agent_settings_change": 1,
        "agent_settings_change.actor": 1,
        "agent_device": 1,
        "web_credential": 1,
        "web_setup_code": 1,
        "user_legal_hold": 0,
        "web_second_factor": 0,
        "web_recovery_code": 0,
        "web_api_token": 0,
        **audited,
        "tw_user": 1,
    }
    assert counts["audit_log"] >= 2  # her evidence view and her settings change
    assert set(counts) == {h.name for h in HOLDINGS}
    assert doc["tables"]["incident.reviewer_id"] == [
        {"id": w["ben_incident"], "reviewer_id": w["aiko"], "review_status": "false_positive",
         "reviewed_at": None, "comment": None}
    ]  # fmt: skip
    assert files == {
        f"evidence/{sha256_hex(STILL)}.jpg": STILL,
        f"evidence/{sha256_hex(SCREEN)}.jpg": SCREEN,
        f"face_images/{sha256_hex(FACE)}.jpg": FACE,
    }
    text = json.dumps(doc)
    for secret in ("password_hash", "token_hash", '"blob"', "e-ben", "Ben", "secret-hash", "c0dec0de"):
        assert secret not in text
    assert (doc["problems"], doc["redis"]) == ([], None)
    with Session(engine) as s:
        last = s.execute(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)).scalar_one()
    assert (last.action, last.target, last.actor) == ("user.export", f"user:{w['aiko']}", "admin")


def test_erase_user(settings: ServerSettings, engine: Engine, store: EvidenceStore) -> None:
    """Erasure removes aiko's rows and images everywhere, keeps ben's, and is audited by id only."""
    w = _world(engine, store)
    before = _rows(engine)
    audited = _audited(engine, w["aiko"])
    audited["audit_log.target"] += 1  # the revocation, in its own transaction before
    report = erase_aiko(settings, engine, store)
    assert report.rows == {
        "evidence_object": 2, "evidence_object.incident_id": 0, "face_template": 1, "incident": 1,
        "incident.reviewer_id": 1, "interval": 1, "event": 1, "daily_rollup": 1, "task_rollup": 1,
        "rollup_dirty": 1, "schedule": 1, "membership": 1,
        "user_agent_settings": 1, "agent_settings_change": 1, "agent_settings_change.actor": 1,
        "agent_device": 1, "web_credential": 1, "web_setup_code": 1, "user_legal_hold": 0, "tw_user": 1,
        "web_second_factor": 0, "web_recovery_code": 0, "web_api_token": 0,
        **audited,
    }  # fmt: skip
    assert (report.blobs, report.redis, report.target) == (
        {"evidence": 2, "face_images": 1},
        {},
        f"user:{w['aiko']}",
    )
    after = _rows(engine)
    deleted = {h.table: report.rows[h.name] for h in HOLDINGS if h.action == "delete"}
    assert {t: before[t] - after[t] for t in before if before[t] != after[t]} == {
        **{t: n for t, n in deleted.items() if n},
        "audit_log": -3,  # user.erase.revoke, user.erase, user.erase.finish
    }
    with Session(engine) as s:
        assert list(s.execute(select(col(User.login))).scalars()) == ["ben"]
        assert list(s.execute(select(col(EventRecord.id))).scalars()) == ["e-ben"]
        assert list(s.execute(select(col(Interval.user_id))).scalars()) == [w["ben"]]
        assert list(s.execute(select(col(Incident.id), col(Incident.reviewer_id))).all()) == [
            (w["ben_incident"], None)
        ]
        assert list(s.execute(select(col(FaceTemplate.id))).scalars()) == []
        assert list(s.execute(select(col(EvidenceObject.sha256))).scalars()) == [sha256_hex(w["ben_still"])]
        assert list(s.execute(select(col(AgentDevice.id))).scalars()) == ["pc-2"]
        assert list(s.execute(select(col(DailyRollup.user_id))).scalars()) == [w["ben"]]
        actors = s.execute(text("SELECT actor, target FROM agent_settings_change")).all()
        entries = list(s.execute(select(AuditEntry).order_by(col(AuditEntry.seq))).scalars())
    assert [tuple(a) for a in actors] == [(ERASED_ACTOR, "ben")]
    for data in (STILL, SCREEN, FACE):
        assert not store.exists("acme", sha256_hex(data))
    assert store.get("acme", sha256_hex(w["ben_still"])) == w["ben_still"]
    assert not store.backend.exists(manifest_key("acme", w["aiko"]))
    erasure = [(e.action, e.target) for e in entries if e.action.startswith("user.erase")]
    assert erasure == [
        (a, f"user:{w['aiko']}") for a in ("user.erase.revoke", "user.erase", "user.erase.finish")
    ]
    for e in entries[-3:]:
        assert "aiko" not in json.dumps(e.detail) and "Aiko" not in json.dumps(e.detail)
    assert entries[-2].detail["rows"]["event"] == 1
    report_v = hash_chain_store.verify(engine, store)
    assert (report_v.evidence, report_v.problems) == (1, [])


def test_erasure_is_all_or_nothing(settings: ServerSettings, engine: Engine, store: EvidenceStore) -> None:
    """The database refuses the last delete: nothing at all is erased (rows, objects, no manifest);
    once it accepts, running it again erases everything."""
    w = _world(engine, store)
    trigger = {
        "sqlite": ["CREATE TRIGGER keep_users BEFORE DELETE ON tw_user BEGIN SELECT RAISE(ABORT, 'no'); END"],
        "postgresql": [
            "CREATE FUNCTION keep_users() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'no' USING ERRCODE = 'foreign_key_violation'; END $$",
            "CREATE TRIGGER keep_users BEFORE DELETE ON tw_user FOR EACH ROW EXECUTE FUNCTION keep_users()",
        ],
    }[engine.dialect.name]
    with engine.begin() as conn:
        for sql in trigger:
            conn.execute(text(sql))
    before = _rows(engine)
    with pytest.raises(
        PersonalDataError, match=r"^user 'aiko' of tenant 'acme' was not erased \(nothing was\)"
    ):
        erase_aiko(settings, engine, store)
    after = _rows(engine)
    assert {t: after[t] - before[t] for t in before if after[t] != before[t]} == {
        "audit_log": 1
    }  # the revocation
    for data in (STILL, SCREEN, FACE):
        assert store.exists("acme", sha256_hex(data))
    assert not store.backend.exists(manifest_key("acme", w["aiko"]))
    with engine.begin() as conn:
        conn.execute(
            text("DROP TRIGGER keep_users" + (" ON tw_user" if engine.dialect.name == "postgresql" else ""))
        )
    assert erase_aiko(settings, engine, store).rows["event"] == 1
    assert _rows(engine)["tw_user"] == 1


def test_an_erasure_interrupted_after_its_commit_is_finished_by_the_next(
    settings: ServerSettings, engine: Engine, store: EvidenceStore
) -> None:
    """An object that cannot be deleted stops it after the rows are gone; the next run finishes it."""
    w = _world(engine, store)
    stuck = Path(store.where("acme", sha256_hex(SCREEN)))
    stuck.unlink()
    (stuck / "in-the-way").mkdir(parents=True)  # unlink() of a directory fails, also for root
    with pytest.raises(
        OperatorError, match=f"user:{w['aiko']} of tenant acme is erased from the database, but"
    ):
        erase_aiko(settings, engine, store)
    assert _rows(engine)["tw_user"] == 1
    assert unfinished(engine, store, "acme") == [w["aiko"]]
    (stuck / "in-the-way").rmdir()
    stuck.rmdir()
    (finished,) = resume(settings, engine, store, "acme", None, "admin")
    assert (finished.target, finished.blobs) == (f"user:{w['aiko']}", {"evidence": 2, "face_images": 1})
    assert unfinished(engine, store, "acme") == []
    for data in (STILL, FACE):
        assert not store.exists("acme", sha256_hex(data))
    assert not store.backend.exists(manifest_key("acme", w["aiko"]))


def test_erase_refused_under_legal_hold(
    settings: ServerSettings, engine: Engine, store: EvidenceStore
) -> None:
    """A user whose incident is under legal hold is not erased nor revoked; the message names the incident."""
    w = _world(engine, store, hold=True)
    with pytest.raises(PersonalDataError, match=f"incidents {w['incident']} are under legal hold"):
        erase_aiko(settings, engine, store)
    with Session(engine) as s:
        user = s.get(User, w["aiko"])
        assert user is not None and user.enabled
        assert s.get(AgentDevice, "pc-1").revoked_at is None  # type: ignore[union-attr]


def test_unknown_user(settings: ServerSettings, engine: Engine, store: EvidenceStore, tmp_path: Path) -> None:
    """Requests about a user that does not exist say so."""
    accounts.create_tenant(engine, "acme", "Acme")
    with pytest.raises(PersonalDataError, match="user 'nobody' does not exist in tenant 'acme'"):
        export_user(engine, store, "acme", "nobody", tmp_path / "x.zip", actor="admin")
    with pytest.raises(PersonalDataError, match="user 'nobody' does not exist in tenant 'acme'"):
        erase(settings, engine, store, "acme", "nobody", "admin", None)
    assert not (tmp_path / "x.zip").exists()


def test_erasure_stays_in_its_tenant(settings: ServerSettings, engine: Engine, store: EvidenceStore) -> None:
    """The same login in another tenant, its settings changes as an actor, its events: all untouched."""
    _world(engine, store)
    accounts.create_tenant(engine, "beta", "Beta")
    other = accounts.create_user(engine, "beta", "aiko", "Aiko Beta")
    accounts.create_agent(engine, "beta", "pc-9", "aiko")
    _add(engine, _event("e-beta", "pc-9"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE event SET tenant_id = 'beta' WHERE id = 'e-beta'"))
    _add(engine, Schedule(tenant_id="beta", user_id=other, weekday=1, created_at=T))
    change_settings(engine, "beta", {"away_after_s": 50}, login="aiko", actor="aiko")
    erase_aiko(settings, engine, store)
    with Session(engine) as s:
        assert list(s.execute(select(col(User.tenant_id), col(User.login))).all()) == [
            ("acme", "ben"),
            ("beta", "aiko"),
        ]
        assert list(s.execute(select(col(EventRecord.id)).order_by(col(EventRecord.id))).scalars()) == [
            "e-ben",
            "e-beta",
        ]
        assert s.get(AgentDevice, "pc-9") is not None
        actors = s.execute(text("SELECT tenant_id, actor FROM agent_settings_change ORDER BY id")).all()
    assert [tuple(a) for a in actors] == [("acme", ERASED_ACTOR), ("beta", "aiko")]


def test_an_incident_cannot_take_someone_elses_evidence_with_it(
    settings: ServerSettings, engine: Engine, store: EvidenceStore
) -> None:
    """Ben's still, listed by aiko's incident and attached to it, stays (detached); her own ones go."""
    w = _world(engine, store)
    with Session(engine) as s:
        incident = s.get(Incident, w["incident"])
        assert incident is not None
        incident.evidence = [*incident.evidence, sha256_hex(w["ben_still"])]
        s.add(incident)
        s.execute(
            text("UPDATE evidence_object SET incident_id = :i WHERE agent_id = 'pc-2'"), {"i": w["incident"]}
        )
        s.commit()
    report = erase_aiko(settings, engine, store)
    assert (report.rows["evidence_object"], report.rows["evidence_object.incident_id"]) == (2, 1)
    with engine.connect() as conn:
        left = conn.execute(text("SELECT sha256, incident_id, user_id FROM evidence_object")).all()
    assert [tuple(r) for r in left] == [(sha256_hex(w["ben_still"]), None, w["ben"])]
    assert store.get("acme", sha256_hex(w["ben_still"])) == w["ben_still"]


def test_export_never_writes_through_a_symlink(engine: Engine, store: EvidenceStore, tmp_path: Path) -> None:
    """A planted link at the export's path is refused (its target untouched), and nothing is audited."""
    _world(engine, store)
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    link = tmp_path / "aiko.zip"
    link.symlink_to(target)
    with pytest.raises(PersonalDataError, match=f"^export file {link}: expected a new or regular file, got "):
        export_user(engine, store, "acme", "aiko", link, actor="admin")
    assert target.read_bytes() == b"keep me"
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'user.export'")).scalar_one()
            == 0
        )
