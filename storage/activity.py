"""SQLModel tables of what agents report and what the builder derives from it.

* :class:`EventRecord` - one agent event, stored exactly once per tenant (written by
  the persistence worker and the builder, insert-or-ignore on (tenant, event id)).
* :class:`Interval` - duty, presence and task intervals derived from the events
  by :mod:`workers.intervals` (end ``None``: still open).
* :class:`Incident` - peeking / impersonation / camera-blocked incidents derived
  by :mod:`workers.incidents`, with their review by a manager.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, PrimaryKeyConstraint, Text
from sqlmodel import Field, SQLModel

from storage.models import tz_column

INTERVAL_KINDS = ("duty", "presence", "task")
DUTY_ON = "on"  # the value of every duty interval (off-duty time has no interval)
CLOSED_BY = ("event", "silence")
REVIEW_STATUSES = ("unreviewed", "confirmed", "false_positive")


class EventRecord(SQLModel, table=True):
    """One agent event, stored exactly once per tenant (primary key: the tenant and the event's UUIDv7).

    The id is the agent's, so the key includes the tenant: one tenant's event is never taken
    for a duplicate of another's. ``seq`` is 64-bit (up to ``realtime.protocol.MAX_SEQ``).
    """

    __tablename__ = "event"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "id"),
        Index("ix_event_tenant_agent_seq", "tenant_id", "agent_id", "seq"),
        Index("ix_event_tenant_agent_ts", "tenant_id", "agent_id", "ts"),
    )
    id: str = Field(max_length=36)
    tenant_id: str = Field(max_length=63)
    agent_id: str = Field(max_length=63)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    ts: datetime = Field(sa_column=tz_column())
    type: str = Field(max_length=16)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    session_id: str = Field(max_length=64)
    received_at: datetime = Field(sa_column=tz_column())
    stored_at: datetime = Field(sa_column=tz_column())


class Interval(SQLModel, table=True):
    """A span of one agent's duty, presence state or task; rebuilt from the events, never edited.

    ``kind``: duty (value ``on``) | presence (value: a ``realtime.protocol.PRESENCE_STATES`` state)
    | task (value: the task name). Presence and task intervals only exist inside duty
    intervals. ``ended_at`` None: open. ``closed_by``: ``event`` (an event ended it),
    ``silence`` (the agent went silent; ended at its last event), None while open.
    """

    __tablename__ = "interval"
    __table_args__ = (
        Index("ix_interval_agent_kind_start", "tenant_id", "agent_id", "kind", "started_at"),
        Index("ix_interval_user_start", "tenant_id", "user_id", "started_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=63)  # no FK: like events, derived rows follow the stream
    agent_id: str = Field(max_length=63)
    user_id: int | None = Field(default=None, foreign_key="tw_user.id")
    kind: str = Field(max_length=16)
    value: str = Field(max_length=200)
    started_at: datetime = Field(sa_column=tz_column())
    ended_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True, index=True))
    start_event_id: str = Field(max_length=36)
    end_event_id: str | None = Field(default=None, max_length=36)
    closed_by: str | None = Field(default=None, max_length=16)


class Incident(SQLModel, table=True):
    """One peeking / impersonation / camera-blocked incident and its review.

    The builder owns kind, times, evidence, trace and source_event_ids (it may extend an
    incident when late events arrive); the review fields belong to people and are never
    touched by the builder.
    """

    __tablename__ = "incident"
    __table_args__ = (
        Index("ix_incident_agent_kind_start", "tenant_id", "agent_id", "kind", "started_at"),
        Index("ix_incident_user_start", "tenant_id", "user_id", "started_at"),
        Index("ix_incident_tenant_review", "tenant_id", "review_status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(max_length=63)  # no FK: like events, derived rows follow the stream
    agent_id: str = Field(max_length=63)
    user_id: int | None = Field(default=None, foreign_key="tw_user.id")
    kind: str = Field(max_length=32)  # one of realtime.protocol.INCIDENT_KINDS
    started_at: datetime = Field(sa_column=tz_column())
    ended_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
    evidence: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # sha256 hex
    trace: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source_event_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    review_status: str = Field(default="unreviewed", max_length=16)  # unreviewed|confirmed|false_positive
    reviewer_id: int | None = Field(default=None, foreign_key="tw_user.id")
    reviewed_at: datetime | None = Field(default=None, sa_column=tz_column(nullable=True))
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    worker_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    legal_hold: bool = False
    created_at: datetime = Field(sa_column=tz_column())
    updated_at: datetime = Field(sa_column=tz_column())
