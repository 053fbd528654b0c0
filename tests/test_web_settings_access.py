"""The access matrix of the settings, tasks and policies routes alone (``tests/access_cases/settings.py``),
run as ``tests/test_web_matrix.py`` runs every case: each caller, the exact status, no leak to beta."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.access_cases.settings import CASES
from tests.access_matrix import CALLERS, route_table
from tests.test_web_matrix import BETA, send
from tests.web_world import World, make_world


@pytest.fixture
async def world(tmp_path: Path, database_url: str, engine: Engine, redis_url: str) -> AsyncIterator[World]:
    async with make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=100, web_fails_per_address=1000
    ) as w:
        yield w


def test_every_case_is_a_route_of_the_app(world: World) -> None:
    """Each case names a route the application has, once."""
    keys = [(c.method, c.path) for c in CASES]
    assert len(keys) == len(set(keys))
    assert set(keys) <= route_table(world.app)


async def test_each_caller_gets_exactly_the_allowed_answer(world: World) -> None:
    """Every settings, tasks and policies case x every caller: its status; beta never sees acme's object."""
    wrong: list[str] = []
    for case in CASES:
        for caller in CALLERS:
            call, answer = await send(world, case, caller)
            if answer.status_code != case.expect[caller]:
                wrong.append(
                    f"{case.method} {case.path} as {caller}: expected {case.expect[caller]}, "
                    f"got {answer.status_code} {answer.text[:120]!r}"
                )
            elif caller in BETA and answer.is_success and case.leaks and case.leaks(call, answer):
                wrong.append(f"{case.method} {case.path} as {caller}: the answer shows acme's object")
    assert wrong == []
