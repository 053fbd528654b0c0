"""Settings pushed by the server change the running agent's behaviour within a second, without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import redis.asyncio as aioredis

from agent.client import AgentSession
from agent.desk import Desk
from realtime.protocol import AgentSettings, IncidentEvent
from realtime.tenant_settings import publish_settings
from tests.desk_world import (
    USER,
    LockRecorder,
    StillCamera,
    frames,
    running_monitor,
    scene_image,
    watched_pipeline,
)
from tests.test_agent_client import FAST, running, stream_records, world
from tests.waiting import wait_until


async def test_pushed_analysis_fps_applies_to_the_frame_being_awaited(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """At 0.2 frames/s the monitor waits 5 s between frames; a push of 5 frames/s makes it analyse the next
    frame within a second of the publish (not when the old 5 s wait ends), and keep that pace."""
    async with world(redis_url, tmp_path) as w:
        await publish_settings(aredis, w.tenant, AgentSettings(analysis_fps=0.2))
        session = AgentSession(w.gateway.url, w.token, FAST)
        pipeline = watched_pipeline()
        desk = Desk(session, pipeline, notifier=lambda title, message: True)
        async with running(session):
            await wait_until(lambda: session.settings.analysis_fps == 0.2, 15, what="welcome settings")
            async with running_monitor(desk, StillCamera(scene_image(USER))):
                await wait_until(lambda: frames(pipeline) >= 1, 15, what="first frame")
                until = frames(pipeline) + 3
                start = time.monotonic()
                await publish_settings(aredis, w.tenant, AgentSettings(analysis_fps=5.0))
                await wait_until(lambda: frames(pipeline) >= until, 1.0, what="3 frames at 5 fps")
                elapsed = time.monotonic() - start
        assert elapsed < 1.0
        assert session.connects == 1  # applied live: no reconnect


async def test_pushed_lock_action_and_camera_delay_apply_to_the_next_incident(
    redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """A covered camera with camera_after_s=600 and incident_action=log raises nothing; a push of
    camera_after_s=0.2 and incident_action=lock makes it an incident within a second, the screen lock is
    attempted, and the incident event in the tenant's stream says the screen was locked."""
    async with world(redis_url, tmp_path) as w:
        await publish_settings(aredis, w.tenant, AgentSettings(analysis_fps=5.0, camera_after_s=600.0))
        session = AgentSession(w.gateway.url, w.token, FAST)
        pipeline = watched_pipeline()
        locker = LockRecorder()
        desk = Desk(session, pipeline, locker=locker, notifier=lambda title, message: True)
        camera = StillCamera(scene_image(None, covered=True))
        async with running(session):
            await wait_until(lambda: session.settings.camera_after_s == 600.0, 15, what="welcome settings")
            async with running_monitor(desk, camera):
                await wait_until(lambda: frames(pipeline) >= 5, 15, what="covered frames")
                assert (pipeline.state, locker.calls) == (None, 0)  # covered, but not for camera_after_s yet
                start = time.monotonic()
                pushed = AgentSettings(analysis_fps=5.0, camera_after_s=0.2, incident_action="lock")
                await publish_settings(aredis, w.tenant, pushed)
                await wait_until(lambda: locker.calls == 1, 1.0, what="screen lock attempted")
                elapsed = time.monotonic() - start
                assert pipeline.state == "camera_blocked"
            await session.wait_acked()

        async def incidents() -> list[IncidentEvent]:
            records = await stream_records(aredis, w.tenant)
            return [r.event for r in records if isinstance(r.event, IncidentEvent)]

        (incident,) = await wait_until(incidents, 10, what="incident in the stream")
        assert (incident.payload.kind, incident.payload.phase) == ("camera_blocked", "start")
        assert incident.payload.trace is not None
        assert incident.payload.trace["incident_action"] == {
            "action": "lock", "locked": True, "method": "test-locker", "detail": None,
        }  # fmt: skip
        assert elapsed < 1.0
        assert [n.key for n in desk.notices] == ["notice.lock"]
