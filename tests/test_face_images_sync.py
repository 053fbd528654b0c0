"""The agent keeps the server's face template: written 0600 and matched at once; a frame without a
body for its engine keeps the local template; a connecting agent gets the template in its welcome."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

from agent.client import AgentSession
from agent.face.dlib_engine import DlibEngine
from agent.face.templates import Template
from agent.face_sync import TemplateSync, template_of
from realtime.protocol.face_templates import TemplateBody, TemplatePush, encode_embedding
from realtime.templates_push import announce
from storage.keyring import ensure_master_key
from tests import test_face_templates_push as pushes
from tests.test_agent_client import FAST, running
from tests.test_gateway import gateway_on
from tests.waiting import wait_until

sqlite_db = pushes.sqlite_db  # the fixture: a migrated SQLite database
store_image = pushes.store_image


def unit(seed: int, size: int = 128) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(size).astype(np.float32)
    return [float(x) for x in v / np.linalg.norm(v)]


def frame(revision: str, *bodies: tuple[str, str, list[list[float]]]) -> TemplatePush:
    return TemplatePush(
        user_id=3,
        revision=revision * 64,
        templates=[TemplateBody(engine=e, model_version=m, embeddings=[encode_embedding(v) for v in vs])
                   for e, m, vs in bodies],
    )  # fmt: skip


def test_template_for_the_engine_is_saved_private_and_matched(tmp_path: Path) -> None:
    """The body of this engine becomes the template file (0600) and the matcher; others are ignored."""
    engine = DlibEngine()
    path = tmp_path / "faces" / "template.json"
    matchers: list[object] = []
    sync = TemplateSync(engine, path, matchers.append)
    a, b = unit(1), unit(2)
    pushed = frame("a", ("insightface", "buffalo_s", [unit(3, 512)]), ("dlib", engine.model_version, [a, b]))
    template = sync.apply(pushed)
    assert template is not None and len(template.embeddings) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = Template.load(path)
    assert np.allclose(np.stack(saved.embeddings), np.array([a, b], dtype=np.float32), atol=1e-6)
    assert len(matchers) == 1
    assert sync.apply(pushed) is None and len(matchers) == 1  # the same revision again: nothing to do


def test_frames_without_this_engine_keep_the_local_template(tmp_path: Path) -> None:
    """No images on the server, or only another engine's: the local file and matcher stay."""
    engine = DlibEngine()
    path = tmp_path / "template.json"
    Template("dlib", engine.model_version, (np.array(unit(5), dtype=np.float32),)).save(path)
    before = path.read_bytes()
    matchers: list[object] = []
    sync = TemplateSync(engine, path, matchers.append)
    assert sync.apply(frame("b")) is None
    assert sync.apply(frame("c", ("insightface", "buffalo_s", [unit(6, 512)]))) is None
    assert path.read_bytes() == before and matchers == []
    assert template_of(frame("d", ("dlib", "other-model", [unit(7)])), "dlib", engine.model_version) is None


async def test_connecting_agent_gets_the_template_and_then_its_change(
    sqlite_db: str, redis_url: str, aredis: aioredis.Redis, tmp_path: Path
) -> None:
    """The agent's session hands the welcome's template and a pushed change to its on_template."""
    ensure_master_key(tmp_path)
    async with gateway_on(sqlite_db, redis_url, tmp_path) as gw:
        first = store_image(sqlite_db, tmp_path, gw.tenant, 11)
        got: list[TemplatePush] = []
        session = AgentSession(gw.url, gw.token, FAST)
        session.on_template = got.append
        async with running(session):
            await wait_until(lambda: len(got) == 1, 15, what="the welcome's template")
            store_image(sqlite_db, tmp_path, gw.tenant, 12)
            assert await announce(aredis, gw.tenant, got[0].user_id)
            await wait_until(lambda: len(got) == 2, 15, what="the pushed template")
        assert [len(t.templates[0].embeddings) for t in got] == [1, 2]
        welcomed = template_of(got[0], "dlib", "m1")
        assert welcomed is not None and np.allclose(welcomed.embeddings[0], first, atol=1e-6)
