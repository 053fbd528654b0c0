"""The retention job, database partner of :mod:`workers.retention` (the rules as values).

Deletes what is older than the retention period, in batches, daily. Each tenant's period is its
own (``tenant_policy``, within the service's bounds) or the service's ``retention_days``; nothing
of a tenant under legal hold, nor of a user under legal hold (their rows, their agents' rows), is
deleted (:mod:`storage.policies`).

One run (:func:`run_once`):

1. events with ``ts`` before the cut-off;
2. closed intervals that ended before it;
3. incidents that ended (or, never ended, started) before it, except those under legal hold;
   their evidence goes with them unless a held incident lists it too;
4. evidence taken before the cut-off that no remaining incident refers to;
5. tenants terminated ``terminated_erase_days`` ago or more: face templates, their registered
   images and the tenant's evidence images (except evidence of incidents under legal hold).

Each batch (``retention_batch`` rows) is its own transaction, and progress is logged; a stop
request is honoured between batches. Ciphertext blobs are deleted before their rows, so an
interrupted run leaves rows that the next run deletes, never unreferenced images.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, true, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from core.process import stop_on_signals
from storage.activity import EventRecord, Incident, Interval
from storage.audit_trail import SYSTEM, AuditAction, audit
from storage.db import open_database
from storage.evidence_models import EvidenceObject, FaceTemplate
from storage.evidence_store import EvidenceStore, open_store
from storage.models import AgentDevice, Tenant, utcnow
from storage.policies import hold_sets, retention_periods
from storage.purge import PurgeStopped, check_stop, delete_evidence, delete_in_batches, evidence_rows
from workers.retention import (
    EVIDENCE_MARGIN,
    Cutoffs,
    Holds,
    RetentionPolicy,
    RetentionReport,
    cutoffs,
    face_erase_cutoff,
)

if TYPE_CHECKING:
    from core.settings import ServerSettings

log = logging.getLogger(__name__)

DEFAULT_POLICY = RetentionPolicy()


def load_holds(engine: Engine) -> Holds:
    """The tenants and users under legal hold, and the agents of those users."""
    tenants, users = hold_sets(engine)
    agents: frozenset[str] = frozenset()
    if users:
        with Session(engine) as s:
            agents = frozenset(
                s.execute(
                    select(col(AgentDevice.id)).where(col(AgentDevice.user_id).in_(sorted(users)))
                ).scalars()
            )
    return Holds(tenants=tenants, users=users, agents=agents)


def due(tenant: Any, moment: Any, cuts: Cutoffs, holds: Holds) -> ColumnElement[bool]:
    """Rows whose ``moment`` is before their tenant's cut-off; none of a tenant under legal hold."""
    special = sorted(set(cuts.tenants) | holds.tenants)
    rest = moment < cuts.default
    if special:
        rest = and_(tenant.not_in(special), rest)
    own = [and_(tenant == t, moment < c) for t, c in cuts.tenants.items() if t not in holds.tenants]
    return or_(rest, *own)


def not_held(user: Any, agent: Any, holds: Holds) -> ColumnElement[bool]:
    """Rows that are not about a user under legal hold (by the row's user, or its agent's)."""
    conds: list[ColumnElement[bool]] = [true()]
    if holds.users and user is not None:
        conds.append(or_(user.is_(None), user.not_in(sorted(holds.users))))
    if holds.agents and agent is not None:
        conds.append(or_(agent.is_(None), agent.not_in(sorted(holds.agents))))
    return and_(*conds)


def _protected(engine: Engine, where: ColumnElement[bool]) -> dict[str, set[str]]:
    """sha256 of evidence listed by the incidents matching ``where``, per tenant."""
    out: dict[str, set[str]] = {}
    with Session(engine) as s:
        for tenant, shas in s.execute(select(col(Incident.tenant_id), col(Incident.evidence)).where(where)):
            out.setdefault(tenant, set()).update(shas or ())
    return out


def _evidence_sweep(
    engine: Engine,
    store: EvidenceStore,
    where: ColumnElement[bool],
    keep: Callable[[Any], bool],
    batch: int,
    stop: threading.Event | None,
) -> int:
    """Delete evidence matching ``where`` unless ``keep(row)``; pages by id past the kept ones."""
    total, after = 0, 0
    while True:
        check_stop(stop)
        with Session(engine) as s:
            rows = s.execute(
                select(
                    col(EvidenceObject.id),
                    col(EvidenceObject.tenant_id),
                    col(EvidenceObject.sha256),
                    col(EvidenceObject.storage_key),
                    col(EvidenceObject.incident_id),
                )
                .where(where, col(EvidenceObject.id) > after)
                .order_by(col(EvidenceObject.id))
                .limit(batch)
            ).all()
        if not rows:
            return total
        after = rows[-1][0]
        doomed = [r[:4] for r in rows if not keep(r)]
        if doomed:
            total += delete_evidence(engine, store, doomed)
            log.info("retention progress", extra={"table": "evidence_object", "deleted": total})


def _incidents(
    engine: Engine,
    store: EvidenceStore,
    cuts: Cutoffs,
    holds: Holds,
    policy: RetentionPolicy,
    stop: threading.Event | None,
) -> tuple[int, int, int]:
    """Delete due incidents (not held) with their evidence; returns (deleted, held and kept, evidence)."""
    moment = func.coalesce(col(Incident.ended_at), col(Incident.started_at))
    ended = and_(
        due(col(Incident.tenant_id), moment, cuts, holds),
        not_held(col(Incident.user_id), col(Incident.agent_id), holds),
    )
    with Session(engine) as s:
        held = s.execute(
            select(func.count()).select_from(Incident).where(ended, col(Incident.legal_hold))
        ).scalar_one()
    protected = _protected(engine, col(Incident.legal_hold).is_(True))
    total = evidence = 0
    while True:
        check_stop(stop)
        with Session(engine) as s:
            ids = list(
                s.execute(
                    select(col(Incident.id)).where(ended, ~col(Incident.legal_hold)).limit(policy.batch)
                ).scalars()
            )
            if not ids:
                return total, held, evidence
        linked = evidence_rows(engine, col(EvidenceObject.incident_id).in_(ids))
        kept = {r[0] for r in linked if r[2] in protected.get(r[1], ())}
        if kept:
            with Session(engine) as s:
                s.execute(
                    update(EvidenceObject).where(col(EvidenceObject.id).in_(kept)).values(incident_id=None)
                )
                s.commit()
        doomed = [r for r in linked if r[0] not in kept]
        if doomed:
            evidence += delete_evidence(engine, store, doomed)
        with Session(engine) as s:
            s.execute(delete(Incident).where(col(Incident.id).in_(ids)))
            s.commit()
        total += len(ids)
        log.info("retention progress", extra={"table": "incident", "deleted": total})


def _old_evidence(
    engine: Engine,
    store: EvidenceStore,
    cuts: Cutoffs,
    holds: Holds,
    policy: RetentionPolicy,
    stop: threading.Event | None,
) -> int:
    protected = _protected(
        engine, or_(col(Incident.legal_hold), col(Incident.started_at) < cuts.latest() + EVIDENCE_MARGIN)
    )
    return _evidence_sweep(
        engine,
        store,
        and_(
            due(col(EvidenceObject.tenant_id), col(EvidenceObject.taken_at), cuts, holds),
            not_held(col(EvidenceObject.user_id), col(EvidenceObject.agent_id), holds),
        ),
        lambda r: r[4] is not None or r[2] in protected.get(r[1], ()),
        policy.batch,
        stop,
    )


def _erase_faces(
    engine: Engine,
    store: EvidenceStore,
    tenant: str,
    holds: Holds,
    policy: RetentionPolicy,
    stop: threading.Event | None,
) -> tuple[int, int, int]:
    """Erase a terminated tenant's face templates, their images and its evidence images (but a
    held user's)."""
    templates = images = 0
    while True:
        check_stop(stop)
        with Session(engine) as s:
            rows = s.execute(
                select(col(FaceTemplate.id), col(FaceTemplate.image_key))
                .where(
                    col(FaceTemplate.tenant_id) == tenant, not_held(col(FaceTemplate.user_id), None, holds)
                )
                .limit(policy.batch)
            ).all()
        if not rows:
            break
        for _id, key in rows:
            if key:
                store.backend.delete(key)
                images += 1
        with Session(engine) as s:
            s.execute(delete(FaceTemplate).where(col(FaceTemplate.id).in_([r[0] for r in rows])))
            s.commit()
        templates += len(rows)
        log.info(
            "retention progress", extra={"table": "face_template", "tenant": tenant, "deleted": templates}
        )
    held_ids: set[int] = set()
    with Session(engine) as s:
        held_ids.update(
            s.execute(
                select(col(Incident.id)).where(col(Incident.tenant_id) == tenant, col(Incident.legal_hold))
            ).scalars()
        )
    protected = _protected(engine, (col(Incident.tenant_id) == tenant) & col(Incident.legal_hold))
    evidence = _evidence_sweep(
        engine,
        store,
        and_(
            col(EvidenceObject.tenant_id) == tenant,
            not_held(col(EvidenceObject.user_id), col(EvidenceObject.agent_id), holds),
        ),
        lambda r: r[4] in held_ids or r[2] in protected.get(r[1], ()),
        policy.batch,
        stop,
    )
    return templates, images, evidence


def run_once(
    engine: Engine,
    store: EvidenceStore,
    now: datetime,
    policy: RetentionPolicy = DEFAULT_POLICY,
    stop: threading.Event | None = None,
) -> RetentionReport:
    """One retention pass as of ``now``; returns what it removed. Safe to repeat or run concurrently.

    Each tenant's cut-off is its own period's (:func:`workers.retention.cutoffs`); ``cutoff`` in
    the report is the service period's. Tenants and users under legal hold are left alone."""
    cuts = cutoffs(now, policy, retention_periods(engine))
    holds = load_holds(engine)
    report = RetentionReport(cutoff=cuts.default)
    log.info(
        "retention started",
        extra={"cutoff": cuts.default.isoformat(), "own_periods": len(cuts.tenants),
               "held_tenants": len(holds.tenants), "held_users": len(holds.users)},
    )  # fmt: skip
    try:
        events = and_(
            due(col(EventRecord.tenant_id), col(EventRecord.ts), cuts, holds),
            not_held(None, col(EventRecord.agent_id), holds),
        )
        n = delete_in_batches(engine, EventRecord, col(EventRecord.id), events, policy.batch, stop)
        report = report.add(events=n)
        closed_before = and_(
            col(Interval.ended_at).is_not(None),
            due(col(Interval.tenant_id), col(Interval.ended_at), cuts, holds),
            not_held(col(Interval.user_id), col(Interval.agent_id), holds),
        )
        n = delete_in_batches(engine, Interval, col(Interval.id), closed_before, policy.batch, stop)
        report = report.add(intervals=n)
        deleted, held, evidence = _incidents(engine, store, cuts, holds, policy, stop)
        report = report.add(incidents=deleted, held_incidents=held, evidence=evidence)
        report = report.add(evidence=_old_evidence(engine, store, cuts, holds, policy, stop))
        with Session(engine) as s:
            tenants = list(
                s.execute(
                    select(col(Tenant.id)).where(col(Tenant.terminated_at) <= face_erase_cutoff(now, policy))
                ).scalars()
            )
        for tenant in tenants:
            if tenant in holds.tenants:
                continue  # under legal hold: nothing of it is erased
            templates, images, evidence = _erase_faces(engine, store, tenant, holds, policy, stop)
            report = report.add(face_templates=templates, face_images=images, evidence=evidence)
            if templates or images or evidence:
                report = _with_tenant(report, tenant)
    except PurgeStopped:
        report = _stopped(report)
    log.info("retention finished", extra=report.summary())
    if report.removed_any:
        _audit(engine, report)
    return report


def _audit(engine: Engine, report: RetentionReport) -> None:
    """One system entry per pass that removed something: what it counted, never what it removed."""
    with Session(engine) as session:
        audit(
            session,
            AuditAction.RETENTION_PURGE,
            actor=SYSTEM,
            source=SYSTEM,
            target="retention",
            tenant_id=None,
            removed=report.summary(),
        )
        session.commit()


def _with_tenant(report: RetentionReport, tenant: str) -> RetentionReport:
    return replace(report, erased_tenants=(*report.erased_tenants, tenant))


def _stopped(report: RetentionReport) -> RetentionReport:
    log.info("retention stopped before it finished")
    return replace(report, stopped=True)


def run_loop(
    engine: Engine,
    store: EvidenceStore,
    policy: RetentionPolicy,
    interval_s: float,
    stop: threading.Event,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Run a pass now and then every ``interval_s`` until ``stop`` is set (checked between batches)."""
    while not stop.is_set():
        try:
            run_once(engine, store, clock(), policy, stop)
        except Exception:
            log.exception("retention run failed; retrying at the next interval")
        stop.wait(interval_s)


def serve_retention(settings: ServerSettings) -> None:
    """Blocking entry of a retention process: runs until SIGINT/SIGTERM (``telework retention``).

    Raises ConfigError for a missing master key and SchemaError on an un-migrated database.
    """
    engine = open_database(settings)
    try:
        store = open_store(settings, engine)
        stop = threading.Event()
        with stop_on_signals(stop.set):
            run_loop(
                engine, store, RetentionPolicy.from_settings(settings), settings.retention_interval_s, stop
            )
    finally:
        engine.dispose()
