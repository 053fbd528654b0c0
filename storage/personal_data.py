"""A person's request for their data: who they are, which rows are about them, and the export.

Which rows are about a person is declared once, in :mod:`storage.personal_registry`; this module
turns each holding into a query (:func:`where`). ``export_user`` writes one zip: ``person.json``
(the user, and for every holding the rows about them: ``tables`` has one key per holding; what
Redis holds about their agents: ``redis``) plus the decrypted evidence images and registered
face images. Secrets (password and token hashes)
and the encrypted face feature vectors are left out. The erasure is :mod:`storage.personal_erase`.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Table, false, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from core.errors import OperatorError
from storage.activity import Incident
from storage.audit_trail import AuditAction, audit
from storage.db import import_tables
from storage.evidence_store import EvidenceError, EvidenceStore
from storage.models import AgentDevice, User, utcnow
from storage.personal_registry import HOLDINGS, Holding, Match
from storage.policies import held as policy_hold

log = logging.getLogger(__name__)

FORMAT = "telework-export/2"
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

    @property
    def target(self) -> str:
        """How the audit log names them (never by login or name)."""
        return f"user:{self.user_id}"


def table(name: str) -> Table:
    """The declared table ``name`` (every table module imported)."""
    found: Table = import_tables().tables[name]
    return found


def _in(column: Any, values: tuple[Any, ...] | frozenset[Any]) -> ColumnElement[bool]:
    return column.in_(sorted(values)) if values else false()


def where(holding: Holding, subject: Subject) -> ColumnElement[bool]:
    """The rows of ``holding`` that are about ``subject``."""
    c = table(holding.table).c
    tenant = c.tenant_id == subject.tenant
    match holding.match:
        case Match.USER:
            return c[holding.column] == subject.user_id
        case Match.AGENT:
            return tenant & _in(c[holding.column], subject.agents)
        case Match.USER_OR_AGENT:
            return tenant & or_(c.user_id == subject.user_id, _in(c.agent_id, subject.agents))
        case Match.EVIDENCE:  # an incident cannot take someone else's evidence with it
            nobody_else = or_(c.user_id.is_(None), c.user_id == subject.user_id) & or_(
                c.agent_id.is_(None), _in(c.agent_id, subject.agents)
            )
            return tenant & or_(
                c.user_id == subject.user_id,
                _in(c.agent_id, subject.agents),
                nobody_else
                & or_(_in(c.incident_id, subject.incidents), _in(c.sha256, subject.evidence_shas)),
            )
        case Match.INCIDENT:
            return tenant & _in(c[holding.column], subject.incidents)
        case Match.LOGIN:
            return tenant & (c[holding.column] == subject.login)
        case Match.TARGET:
            return tenant & (c[holding.column] == subject.target)
    raise AssertionError(f"unhandled match {holding.match}")  # pragma: no cover


def find_subject(engine: Engine, tenant: str, login: str) -> Subject:
    with Session(engine) as s:
        uid = s.execute(
            select(col(User.id)).where(col(User.tenant_id) == tenant, col(User.login) == login)
        ).scalar_one_or_none()
        if uid is None:
            raise PersonalDataError(f"user {login!r} does not exist in tenant {tenant!r}")
        agents = tuple(
            sorted(s.execute(select(col(AgentDevice.id)).where(col(AgentDevice.user_id) == uid)).scalars())
        )
        partial = Subject(tenant, login, uid, agents, (), frozenset())
        incident = next(h for h in HOLDINGS if h.name == "incident")
        rows = s.execute(
            select(col(Incident.id), col(Incident.evidence)).where(where(incident, partial))
        ).all()
    shas = frozenset(sha for _id, listed in rows for sha in (listed or ()) if isinstance(sha, str))
    return Subject(tenant, login, uid, agents, tuple(sorted(r[0] for r in rows)), shas)


def check_not_held(conn: Connection | Session, subject: Subject) -> None:
    """PersonalDataError naming the hold on the subject (their tenant's or their own legal hold,
    :mod:`storage.policies`) or their incidents under legal hold, if any: an erasure is refused
    while there is one."""
    hold = policy_hold(conn, subject.tenant, subject.user_id)
    if hold is not None:
        whose = f"tenant {subject.tenant!r}" if hold == "tenant" else f"user {subject.login!r}"
        raise PersonalDataError(
            f"user {subject.login!r} of tenant {subject.tenant!r}: the data of {whose} is under "
            "legal hold; release the hold before erasing"
        )
    incident = next(h for h in HOLDINGS if h.name == "incident")
    held = list(
        conn.execute(
            select(col(Incident.id)).where(where(incident, subject), col(Incident.legal_hold))
        ).scalars()
    )
    if held:
        raise PersonalDataError(
            f"user {subject.login!r} of tenant {subject.tenant!r}: incidents {', '.join(map(str, held))} "
            "are under legal hold; release the hold before erasing"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return None
    return value


def collect(engine: Engine, subject: Subject) -> dict[str, list[dict[str, Any]]]:
    """For every holding, its rows about ``subject`` (secrets left out; limited columns where declared)."""
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for holding in HOLDINGS:
            t = table(holding.table)
            names = holding.export or tuple(c.name for c in t.columns if c.name not in SECRET_COLUMNS)
            query = select(*(t.c[n] for n in names)).where(where(holding, subject))
            order = [c for c in t.primary_key.columns]
            out[holding.name] = [
                {k: _jsonable(v) for k, v in r._mapping.items()} for r in conn.execute(query.order_by(*order))
            ]
    return out


def export_user(
    engine: Engine, store: EvidenceStore, tenant: str, login: str, out: Path, actor: str,
    redis: Mapping[str, list[dict[str, Any]]] | None = None,
) -> Path:  # fmt: skip
    """Write everything about the user to the zip ``out`` (mode 0600); returns its path. Audited.

    ``redis``: what Redis holds about their agents, per key (``person.json`` ``redis``; None: not read).
    """
    subject = find_subject(engine, tenant, login)
    tables = collect(engine, subject)
    if not tables["tw_user"]:
        raise PersonalDataError(f"user {login!r} of tenant {tenant!r} disappeared during the export")
    files: dict[str, str] = {}
    problems: list[str] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    try:  # never through a symlink (a planted one would have the export overwrite its target)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise PersonalDataError(
            f"export file {out}: expected a new or regular file, got {exc.strerror}"
        ) from None
    os.fchmod(fd, 0o600)  # an existing file keeps its mode under O_CREAT
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
            "user": tables["tw_user"][0],
            "tables": tables,
            "redis": None if redis is None else dict(redis),
            "files": files,
            "problems": problems,
        }
        zf.writestr("person.json", json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True))
    counts = {name: len(rows) for name, rows in tables.items()}
    with Session(engine) as s:
        audit(s, AuditAction.USER_EXPORT, actor=actor, source=None, target=subject.target, tenant_id=tenant,
              rows=counts, files=len(files), problems=len(problems),
              redis=None if redis is None else {k: len(v) for k, v in redis.items()})  # fmt: skip
        s.commit()
    log.info("user exported", extra={"tenant": tenant, "user_id": subject.user_id, "files": len(files)})
    return out
