"""Presence from the first moment of duty: the agent sends its state with the punch-in, and the builder
starts the duty's presence from it (a real agent desk and monitor, gateway, Redis, builder, database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agent.client import AgentSession
from agent.desk import Desk
from agent.punch import PunchRequest
from storage.activity import Interval
from tests.agent_world import FAST, building, world
from tests.desk_world import USER, ManualClock, StillCamera, running_monitor, scene_image, watched_pipeline
from tests.faces import needs_faces
from tests.test_agent_client import running
from tests.waiting import wait_until


def spans(w: Any) -> list[tuple[str, str, datetime, datetime | None]]:
    with w.engine.connect() as conn:
        rows = conn.execute(
            select(Interval.__table__)  # type: ignore[attr-defined]
            .where(Interval.__table__.c.tenant_id == w.tenant)  # type: ignore[attr-defined]
            .order_by("started_at", "kind")
        ).all()

    def aware(value: datetime | None) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC) if value.tzinfo is None else value

    return [(r.kind, r.value, aware(r.started_at), aware(r.ended_at)) for r in rows]  # type: ignore[misc]


@needs_faces
async def test_punch_in_with_the_user_present_then_ten_quiet_minutes_are_ten_minutes_present(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """The user punches in (face verified), then nothing changes for 10 minutes on the agent's (injected)
    clock while the camera keeps watching, then punches out: the stored events are the duty, its first
    state (present, same time) and the duty's end, and the builder makes 10 minutes of duty and 10 minutes
    present."""
    async with world(redis_url, database_url, tmp_path) as w, building(w.settings, w.engine):
        start = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=0)
        clock = ManualClock(start)
        session = AgentSession(w.gateway.url, w.token, FAST)
        desk = Desk(session, watched_pipeline(), event_clock=clock)
        camera = StillCamera(scene_image(USER))
        async with running(session), running_monitor(desk, camera, gated=True) as monitor:
            assert (await desk.punch(PunchRequest("in"))).accepted
            watched = monitor.stats.frames_analysed
            await wait_until(
                lambda: monitor.stats.frames_analysed >= watched + 4, 20, what="4 frames on duty"
            )
            clock.advance(600)
            assert (await desk.punch(PunchRequest("out"))).accepted
            await session.wait_stored()  # in the database, not only acked
        end = start + timedelta(minutes=10)
        stored = [(e.seq, e.type, e.ts.replace(tzinfo=UTC)) for e in w.events()]
        assert stored == [(1, "duty", start), (2, "state", start), (3, "duty", end)]
        expected = [("duty", "on", start, end), ("presence", "present", start, end)]
        assert await wait_until(lambda: spans(w) == expected and spans(w), 20, what="the built intervals")
