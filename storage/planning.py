"""SQLModel tables of plans and their outcome: schedules, tasks, daily and task rollups.

Days are calendar days in the tenant's time zone (``Tenant.time_zone``); times
of a schedule are wall-clock times in that zone; an ``end_time`` not after
``start_time`` means the shift ends the next day (crosses midnight).
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import Column, Date, Index, Time, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.models import tz_column


class Schedule(SQLModel, table=True):
    """A planned working day of a user: weekly (``weekday``) or for one date (``day``).

    Exactly one of ``weekday`` (0 = Monday .. 6 = Sunday) and ``day`` is set. A dated
    entry overrides the weekly ones of that date; a dated entry without times is a
    planned day off. ``valid_from`` / ``valid_to`` bound weekly entries (inclusive).
    """

    __tablename__ = "schedule"
    __table_args__ = (Index("ix_schedule_user", "tenant_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=63)
    user_id: int = Field(foreign_key="tw_user.id")
    weekday: int | None = Field(default=None, ge=0, le=6)
    day: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    start_time: time | None = Field(default=None, sa_column=Column(Time, nullable=True))
    end_time: time | None = Field(default=None, sa_column=Column(Time, nullable=True))
    valid_from: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    valid_to: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    created_at: datetime = Field(sa_column=tz_column())


class Task(SQLModel, table=True):
    """A task name workers can punch in a tenant."""

    __tablename__ = "task"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=63)
    name: str = Field(max_length=200)
    active: bool = True
    created_at: datetime = Field(sa_column=tz_column())


class DailyRollup(SQLModel, table=True):
    """Attendance of one user on one day (tenant time zone), against the schedule. Seconds."""

    __tablename__ = "daily_rollup"
    __table_args__ = (Index("ix_daily_rollup_tenant_day", "tenant_id", "day"),)
    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=63)
    user_id: int = Field(foreign_key="tw_user.id", primary_key=True)
    day: date = Field(sa_column=Column(Date, primary_key=True))
    first_start: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
    last_end: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
    worked_s: float = 0.0
    present_s: float = 0.0
    away_s: float = 0.0
    peeking_count: int = 0
    impersonation_count: int = 0
    camera_blocked_count: int = 0
    planned_s: float = 0.0
    late_start_s: float = 0.0
    early_end_s: float = 0.0
    overtime_s: float = 0.0
    absent: bool = False
    computed_at: datetime = Field(sa_column=tz_column())


class TaskRollup(SQLModel, table=True):
    """Time on one task by one user on one day (tenant time zone): seconds and intervals count."""

    __tablename__ = "task_rollup"
    __table_args__ = (Index("ix_task_rollup_tenant_day", "tenant_id", "day"),)
    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=63)
    user_id: int = Field(foreign_key="tw_user.id", primary_key=True)
    day: date = Field(sa_column=Column(Date, primary_key=True))
    task: str = Field(primary_key=True, max_length=200)
    seconds: float = 0.0
    count: int = 0
    computed_at: datetime = Field(sa_column=tz_column())


class RollupDirty(SQLModel, table=True):
    """A user whose intervals the builder changed from ``since`` on (inserted, moved or deleted rows).

    The rollup worker recomputes that user's days from ``since`` to now and deletes the row,
    so changes that leave no new interval row (an end moved, a row merged away) still reach
    the rollups. Written in the builder's transaction: no change without its marker.
    """

    __tablename__ = "rollup_dirty"
    __table_args__ = (Index("ix_rollup_dirty_tenant", "tenant_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=63)
    user_id: int = Field(foreign_key="tw_user.id")  # erasing a user erases its markers
    since: datetime = Field(sa_column=tz_column())
    created_at: datetime = Field(sa_column=tz_column())
