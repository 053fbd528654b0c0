"""The tasks a tenant offers its workers (``task`` table): create, deactivate, list.

A removed task is deactivated, not deleted: its name stays in past task events and
rollups, and creating it again reactivates it.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from core.errors import OperatorError
from realtime.protocol import MAX_TASKS
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
    return clean


def _find(s: Session, tenant: str, name: str) -> Task | None:
    found: Task | None = s.execute(
        select(Task).where(Task.tenant_id == tenant, Task.name == name)  # type: ignore[arg-type]
    ).scalar_one_or_none()
    return found


def _tenant(s: Session, tenant: str) -> None:
    if s.get(Tenant, tenant) is None:
        raise TaskError(f"tenant {tenant!r} does not exist")


def create_task(engine: Engine, tenant: str, name: str) -> bool:
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
        if task is None:
            task = Task(tenant_id=tenant, name=clean, active=True, created_at=utcnow())
        else:
            task.active = True
        s.add(task)
        s.commit()
    return True


def deactivate_task(engine: Engine, tenant: str, name: str) -> None:
    """Stop offering task ``name`` in ``tenant``; TaskError when the tenant has no such active task."""
    clean = task_name(name)
    with Session(engine) as s:
        _tenant(s, tenant)
        task = _find(s, tenant, clean)
        if task is None or not task.active:
            raise TaskError(f"tenant {tenant!r} offers no task {clean!r}")
        task.active = False
        s.add(task)
        s.commit()


def active_tasks(engine: Engine, tenant: str) -> list[str]:
    """The names of the tasks ``tenant`` offers, sorted by code point (empty for an unknown tenant)."""
    with Session(engine) as s:
        names = s.execute(
            select(Task.name).where(Task.tenant_id == tenant, Task.active.is_(True))  # type: ignore[call-overload,attr-defined]
        ).scalars()
        return sorted(str(n) for n in names)
