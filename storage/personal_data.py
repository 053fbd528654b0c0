"""A person's request for their data: export everything about a user, or erase it.

``export_user`` writes one zip: ``person.json`` (the user, their memberships, devices, events,
intervals, incidents, evidence and face-template metadata, schedules, rollups and the audit
entries they made) plus the decrypted evidence images and registered face images. Secrets
(password and token hashes) and the encrypted face feature vectors are left out.

``erase_user`` deletes all of it (blobs first, then rows) and the user, and records a
``user.erase`` audit entry naming the user by id only. It refuses while an incident about the
user is under legal hold. Audit entries the user made stay: the audit log is a hash chain.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, delete, false, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col

from core.errors import OperatorError
from storage import hash_chain_store
from storage.activity import EventRecord, Incident, Interval
from storage.audit_models import AuditEntry
from storage.db import import_tables
from storage.evidence_models import EvidenceObject, FaceTemplate
from storage.evidence_store import EvidenceError, EvidenceStore
from storage.models import AgentDevice, User, utcnow
from storage.purge import delete_evidence, delete_in_batches, evidence_rows

log = logging.getLogger(__name__)

FORMAT = "telework-export/1"
SECRET_COLUMNS = {"password_hash", "token_hash", "blob", "wrapped"}
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


class PersonalDataError(OperatorError, ValueError):
    """The export or erasure cannot be carried out (unknown user, legal hold...)."""


@dataclass(frozen=True)
class Subject:
    """Who a request is about, and the rows that identify their data."""

    tenant: str
    login: str
    user_id: int
    agents: tuple[str, ...]
    incidents: tuple[int, ...]
    evidence_shas: frozenset[str]  # listed by their incidents

    def evidence_where(self) -> ColumnElement[bool]:
        return (col(EvidenceObject.tenant_id) == self.tenant) & or_(
            col(EvidenceObject.user_id) == self.user_id,
            col(EvidenceObject.agent_id).in_(self.agents) if self.agents else false(),
            col(EvidenceObject.incident_id).in_(self.incidents) if self.incidents else false(),
            col(EvidenceObject.sha256).in_(self.evidence_shas) if self.evidence_shas else false(),
        )

    def owned(self, table: Any) -> ColumnElement[bool]:
        """Rows of an interval / incident table that are about this user."""
        by_agent = col(table.agent_id).in_(self.agents) if self.agents else false()
        return (col(table.tenant_id) == self.tenant) & or_(col(table.user_id) == self.user_id, by_agent)


def find_subject(engine: Engine, tenant: str, login: str) -> Subject:
    with Session(engine) as s:
        uid = s.execute(
            select(col(User.id)).where(col(User.tenant_id) == tenant, col(User.login) == login)
        ).scalar_one_or_none()
        if uid is None:
            raise PersonalDataError(f"user {login!r} does not exist in tenant {tenant!r}")
        agents = tuple(
            s.execute(select(col(AgentDevice.id)).where(col(AgentDevice.user_id) == uid)).scalars()
        )
        partial = Subject(tenant, login, uid, agents, (), frozenset())
        rows = s.execute(
            select(col(Incident.id), col(Incident.evidence)).where(partial.owned(Incident))
        ).all()
    shas = frozenset(sha for _id, listed in rows for sha in (listed or ()))
    return Subject(tenant, login, uid, agents, tuple(r[0] for r in rows), shas)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return value


def _row(row: SQLModel) -> dict[str, Any]:
    table = row.__table__  # type: ignore[attr-defined]
    return {c.name: _jsonable(getattr(row, c.name)) for c in table.columns if c.name not in SECRET_COLUMNS}


def _user_tables() -> list[Any]:
    """Tables (other than the special cases) whose rows belong to a user through ``user_id``."""
    special = {"tw_user", "agent_device", "interval", "incident", "evidence_object", "face_template"}
    return [
        t
        for t in import_tables().sorted_tables  # every table module, not only those imported so far
        if t.name not in special
        and "user_id" in t.c
        and any(fk.column.table.name == "tw_user" for fk in t.c.user_id.foreign_keys)
    ]


def _collect(engine: Engine, subject: Subject) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    with Session(engine) as s:

        def rows(model: Any, where: ColumnElement[bool]) -> list[dict[str, Any]]:
            return [_row(r) for r in s.execute(select(model).where(where)).scalars()]

        out["agent_device"] = rows(AgentDevice, col(AgentDevice.user_id) == subject.user_id)
        out["event"] = (
            rows(
                EventRecord,
                (col(EventRecord.tenant_id) == subject.tenant)
                & col(EventRecord.agent_id).in_(subject.agents),
            )
            if subject.agents
            else []
        )
        out["interval"] = rows(Interval, subject.owned(Interval))
        out["incident"] = rows(Incident, subject.owned(Incident))
        out["evidence_object"] = rows(EvidenceObject, subject.evidence_where())
        out["face_template"] = rows(FaceTemplate, col(FaceTemplate.user_id) == subject.user_id)
        for table in _user_tables():
            out[table.name] = [
                {k: _jsonable(v) for k, v in r._mapping.items()}
                for r in s.execute(select(table).where(table.c.user_id == subject.user_id))
            ]
        out["audit_log"] = rows(
            AuditEntry,
            (col(AuditEntry.tenant_id) == subject.tenant) & (col(AuditEntry.actor) == subject.login),
        )
    return out


def export_user(engine: Engine, store: EvidenceStore, tenant: str, login: str, out: Path, actor: str) -> Path:
    """Write everything about the user to the zip ``out`` (mode 0600); returns its path. Audited."""
    subject = find_subject(engine, tenant, login)
    with Session(engine) as s:
        user = s.get(User, subject.user_id)
        if user is None:
            raise PersonalDataError(f"user {login!r} of tenant {tenant!r} disappeared during the export")
        person = _row(user)
    tables = _collect(engine, subject)
    files: dict[str, str] = {}
    problems: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        images = [("evidence", e["sha256"], e["content_type"]) for e in tables["evidence_object"]]
        images += [
            ("face_images", f["image_sha256"], "image/jpeg")
            for f in tables["face_template"]
            if f["image_sha256"]
        ]
        for folder, sha, content_type in images:
            name = f"{folder}/{sha}{EXTENSIONS.get(content_type, '.bin')}"
            try:
                zf.writestr(name, store.get(tenant, sha))
                files[name] = sha
            except EvidenceError as exc:
                problems.append(str(exc))
        document = {
            "format": FORMAT,
            "exported_at": utcnow().isoformat(),
            "tenant": tenant,
            "user": person,
            "tables": tables,
            "files": files,
            "problems": problems,
        }
        zf.writestr("person.json", json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True))
    counts = {name: len(rows) for name, rows in tables.items()}
    hash_chain_store.record(
        engine,
        actor=actor,
        action="user.export",
        target=f"user:{subject.user_id}",
        tenant_id=tenant,
        detail={"rows": counts, "files": len(files), "problems": len(problems)},
    )
    log.info("user exported", extra={"tenant": tenant, "user_id": subject.user_id, "files": len(files)})
    return out


def erase_user(
    engine: Engine, store: EvidenceStore, tenant: str, login: str, actor: str, batch: int = 1000
) -> dict[str, int]:
    """Delete the user and all their data; returns rows deleted per table. Audited (by user id)."""
    subject = find_subject(engine, tenant, login)
    with Session(engine) as s:
        held = list(
            s.execute(
                select(col(Incident.id)).where(subject.owned(Incident), col(Incident.legal_hold))
            ).scalars()
        )
    if held:
        raise PersonalDataError(
            f"user {login!r} of tenant {tenant!r}: incidents {', '.join(map(str, held))} are under "
            "legal hold; release the hold before erasing"
        )
    counts: dict[str, int] = {}
    templates = list(_face_images(engine, subject.user_id))
    for key in templates:
        store.backend.delete(key)
    counts["face_images"] = len(templates)
    counts["face_template"] = delete_in_batches(
        engine, FaceTemplate, col(FaceTemplate.id), col(FaceTemplate.user_id) == subject.user_id, batch
    )
    counts["evidence_object"] = delete_evidence(
        engine, store, evidence_rows(engine, subject.evidence_where()), batch
    )
    counts["incident"] = delete_in_batches(engine, Incident, col(Incident.id), subject.owned(Incident), batch)
    counts["interval"] = delete_in_batches(engine, Interval, col(Interval.id), subject.owned(Interval), batch)
    counts["event"] = (
        delete_in_batches(
            engine,
            EventRecord,
            col(EventRecord.id),
            (col(EventRecord.tenant_id) == tenant) & col(EventRecord.agent_id).in_(subject.agents),
            batch,
        )
        if subject.agents
        else 0
    )
    with Session(engine) as s:
        for table in _user_tables():
            counts[table.name] = _rowcount(s.execute(delete(table).where(table.c.user_id == subject.user_id)))
        s.execute(
            update(Incident).where(col(Incident.reviewer_id) == subject.user_id).values(reviewer_id=None)
        )
        s.execute(
            update(EvidenceObject).where(col(EvidenceObject.user_id) == subject.user_id).values(user_id=None)
        )
        counts["agent_device_unlinked"] = _rowcount(
            s.execute(
                update(AgentDevice).where(col(AgentDevice.user_id) == subject.user_id).values(user_id=None)
            )
        )
        s.execute(delete(User).where(col(User.id) == subject.user_id))
        counts["tw_user"] = 1
        hash_chain_store.append(
            s,
            actor=actor,
            action="user.erase",
            target=f"user:{subject.user_id}",
            tenant_id=tenant,
            detail=counts,
        )
        s.commit()
    log.info("user erased", extra={"tenant": tenant, "user_id": subject.user_id, **counts})
    return counts


def _face_images(engine: Engine, user_id: int) -> list[str]:
    with Session(engine) as s:
        keys = s.execute(
            select(col(FaceTemplate.image_key)).where(
                col(FaceTemplate.user_id) == user_id, col(FaceTemplate.image_key).is_not(None)
            )
        ).scalars()
        return [k for k in keys if k]


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))
