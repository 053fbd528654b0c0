"""The tasks a tenant offers its workers (``task`` table): create, rename, deactivate, reactivate, list.

A removed task is deactivated, not deleted: its name stays in past task events and
rollups, and creating it again reactivates it. A rename changes the name offered from now on;
past records keep the name they were made with. Each change is audited (``task.create``,
``task.remove``, ``task.rename``) in its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.errors import OperatorError
from realtime.protocol import MAX_TASKS
from storage.account_rules import refused_character
from storage.audit_trail import SYSTEM, AuditAction, audit
from storage.models import Tenant, utcnow
from storage.planning import Task

MAX_TASK_NAME = 200  # characters, as the task column and the protocol's TaskName allow


class TaskError(OperatorError, ValueError):
    """A task cannot be created or removed; the message says why."""


def task_name(name: str) -> str:
    """Pure: ``name`` stripped, or TaskError saying what was expected."""
    clean = name.strip()
    if not clean:
        raise TaskError("task name: expected 1-200 characters, got an empty name")
    if len(clean) > MAX_TASK_NAME:
        raise TaskError(f"task name: expected at most {MAX_TASK_NAME} characters, got {len(clean)}")
    bad = refused_character(clean)
    if bad is not None:
        raise TaskError(f"task name: expected no control characters, got {bad} in {name!r}")
    return clean


def _find(s: Session, tenant: str, name: str) -> Task | None:
    found: Task | None = s.execute(
        select(Task).where(Task.tenant_id == tenant, Task.name == name)  # type: ignore[arg-type]
    ).scalar_one_or_none()
    return found


def _tenant(s: Session, tenant: str) -> None:
    if s.get(Tenant, tenant) is None:
        raise TaskError(f"tenant {tenant!r} does not exist")


def create_task(
    engine: Engine, tenant: str, name: str, *, actor: str = SYSTEM, source: str | None = None
) -> bool:
    """Offer task ``name`` in ``tenant`` (reactivating a removed one). False: it was already offered."""
    clean = task_name(name)
    with Session(engine) as s:
        _tenant(s, tenant)
        task = _find(s, tenant, clean)
        if task is not None and task.active:
            return False
        offered = s.execute(
            select(func.count()).where(Task.tenant_id == tenant, Task.active.is_(True))  # type: ignore[arg-type,attr-defined]
        ).scalar_one()
        if offered >= MAX_TASKS:
            raise TaskError(f"tenant {tenant!r} already offers {offered} tasks; the limit is {MAX_TASKS}")
        was = None if task is None else False
        if task is None:
            task = Task(tenant_id=tenant, name=clean, active=True, created_at=utcnow())
        else:
            task.active = True
        s.add(task)
        audit(
            s, AuditAction.TASK_CREATE, actor=actor, source=source, target=f"task:{clean}",
            tenant_id=tenant, old={"active": was}, new={"active": True},
        )  # fmt: skip
        s.commit()
    return True


def deactivate_task(
    engine: Engine, tenant: str, name: str, *, actor: str = SYSTEM, source: str | None = None
) -> None:
    """Stop offering task ``name`` in ``tenant``; TaskError when the tenant has no such active task."""
    clean = task_name(name)
    with Session(engine) as s:
        _tenant(s, tenant)
        task = _find(s, tenant, clean)
        if task is None or not task.active:
            raise TaskError(f"tenant {tenant!r} offers no task {clean!r}")
        task.active = False
        s.add(task)
        audit(
            s, AuditAction.TASK_REMOVE, actor=actor, source=source, target=f"task:{clean}",
            tenant_id=tenant, old={"active": True}, new={"active": False},
        )  # fmt: skip
        s.commit()


def listed_tasks(engine: Engine, tenant: str) -> list[str]:
    """As :func:`active_tasks`, but TaskError for an unknown tenant (what ``admin task list`` prints)."""
    with Session(engine) as s:
        _tenant(s, tenant)
    return active_tasks(engine, tenant)


def active_tasks(engine: Engine, tenant: str) -> list[str]:
    """The names of the tasks ``tenant`` offers, sorted by code point (empty for an unknown tenant)."""
    with Session(engine) as s:
        names = s.execute(
            select(Task.name).where(Task.tenant_id == tenant, Task.active.is_(True))  # type: ignore[call-overload,attr-defined]
        ).scalars()
        return sorted(str(n) for n in names)


@dataclass(frozen=True)
class OfferedTask:
    """A task of a tenant, offered (``active``) or not."""

    id: int
    name: str
    active: bool


def tenant_tasks(engine: Engine, tenant: str) -> list[OfferedTask]:
    """Every task of ``tenant``, offered or not, by name (code point)."""
    with Session(engine) as s:
        rows = s.execute(select(Task).where(Task.tenant_id == tenant)).scalars()  # type: ignore[arg-type]
        found = [OfferedTask(int(t.id or 0), t.name, t.active) for t in rows]
    return sorted(found, key=lambda t: t.name)


def find_task(engine: Engine, tenant: str, task_id: int) -> OfferedTask | None:
    """Task ``task_id`` of ``tenant``; None for another tenant's or no such task."""
    with Session(engine) as s:
        task = s.get(Task, task_id)
        if task is None or task.tenant_id != tenant or task.id is None:
            return None
        return OfferedTask(task.id, task.name, task.active)


def _own(s: Session, tenant: str, task_id: int) -> Task:
    task = s.get(Task, task_id)
    if task is None or task.tenant_id != tenant:
        raise TaskError(f"tenant {tenant!r} has no task {task_id}")
    return task


def rename_task(
    engine: Engine, tenant: str, task_id: int, name: str, *, actor: str = SYSTEM, source: str | None = None
) -> bool:
    """Rename task ``task_id`` of ``tenant``; False: it already had that name. TaskError when the
    name is not valid or another task of the tenant has it."""
    clean = task_name(name)
    with Session(engine) as s:
        task = _own(s, tenant, task_id)
        if task.name == clean:
            return False
        if _find(s, tenant, clean) is not None:
            raise TaskError(f"task name: tenant {tenant!r} already has a task {clean!r}")
        old = task.name
        task.name = clean
        s.add(task)
        audit(
            s, AuditAction.TASK_RENAME, actor=actor, source=source, target=f"task:{old}",
            tenant_id=tenant, old={"name": old}, new={"name": clean},
        )  # fmt: skip
        s.commit()
    return True


def set_task_active(
    engine: Engine, tenant: str, task_id: int, active: bool, *, actor: str = SYSTEM, source: str | None = None
) -> bool:
    """Offer (``active``) or stop offering task ``task_id``; False: it already was so. TaskError past
    the limit of offered tasks."""
    with Session(engine) as s:
        task = _own(s, tenant, task_id)
        if task.active == active:
            return False
        if active:
            offered = s.execute(
                select(func.count()).where(Task.tenant_id == tenant, Task.active.is_(True))  # type: ignore[arg-type,attr-defined]
            ).scalar_one()
            if offered >= MAX_TASKS:
                raise TaskError(f"tenant {tenant!r} already offers {offered} tasks; the limit is {MAX_TASKS}")
        task.active = active
        s.add(task)
        audit(
            s, AuditAction.TASK_CREATE if active else AuditAction.TASK_REMOVE, actor=actor, source=source,
            target=f"task:{task.name}", tenant_id=tenant, old={"active": not active}, new={"active": active},
        )  # fmt: skip
        s.commit()
    return True
