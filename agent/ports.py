"""What the running agent's parts need of one another, as Protocols (no implementations, no I/O).

* :class:`Emitter`: holds the current settings and queues event payloads. The monitor emits
  through one (the :class:`~agent.desk.Desk`, or an :class:`~agent.client.AgentSession`
  directly); the desk emits through its session.
* :class:`Session`: an emitter that also knows the tasks the server offers
  (:class:`~agent.client.AgentSession`).

Frame sources have their Protocol beside their implementations:
:class:`agent.capture.sources.FrameSource`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from realtime.protocol import AgentSettings, DutyPayload, IncidentPayload, StatePayload, TaskPayload

Payload = StatePayload | DutyPayload | TaskPayload | IncidentPayload


class Emitter(Protocol):
    """Settings in force (re-read at every frame: a settings push applies at once) and an event sink."""

    @property
    def settings(self) -> AgentSettings: ...

    def emit(self, payload: Payload, ts: datetime | None = None) -> object:
        """Queue one event with ``payload`` at ``ts`` (None: now)."""
        ...


class Session(Emitter, Protocol):
    """An emitter connected to the server, which says which tasks the user may punch."""

    @property
    def tasks(self) -> tuple[str, ...] | None:
        """The task names the server offers (the welcome's list, replaced by each ``tasks`` frame);
        None: it does not say, empty: its tenant has none."""
        ...
