"""The schedules routes alone through the access matrix (the full run is ``tests/test_web_matrix.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.access_cases.schedules import CASES
from tests.access_matrix import CALLERS
from tests.test_web_matrix import BETA, send
from tests.web_world import World, make_world


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=100, web_fails_per_address=1000
    ) as w:
        yield w


async def test_each_caller_gets_exactly_the_allowed_answer_on_the_schedules_routes(world: World) -> None:
    """Each schedules case x each caller: exactly its status, and no beta answer shows acme's object."""
    wrong: list[str] = []
    for case in CASES:
        for caller in CALLERS:
            call, answer = await send(world, case, caller)
            if answer.status_code != case.expect[caller]:
                wrong.append(
                    f"{case.method} {case.path} as {caller}: expected {case.expect[caller]}, "
                    f"got {answer.status_code} {answer.text[:160]!r}"
                )
            elif caller in BETA and answer.is_success and case.leaks and case.leaks(call, answer):
                wrong.append(f"{case.method} {case.path} as {caller}: the answer shows acme's object")
    assert wrong == []
