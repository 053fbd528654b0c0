"""The face-image routes of ``tests/access_cases/faces.py`` for every caller: the exact statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from sqlalchemy.engine import Engine

from tests.access_cases.faces import CASES
from tests.access_matrix import CALLERS
from tests.test_web_matrix import send
from tests.web_world import World, make_world


@pytest_asyncio.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=100, web_fails_per_address=1000
    ) as w:
        yield w


async def test_every_face_route_answers_each_caller_exactly_as_its_case_says(world: World) -> None:
    """Each face case x each caller (no face engine installed): exactly the status of the case."""
    got: dict[tuple[str, str, str], int] = {}
    want: dict[tuple[str, str, str], int] = {}
    for case in CASES:
        for caller in CALLERS:
            _, answer = await send(world, case, caller)
            got[(case.method, case.path, caller)] = answer.status_code
            want[(case.method, case.path, caller)] = case.expect[caller]
    assert got == want
