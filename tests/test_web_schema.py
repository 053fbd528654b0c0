"""Schemathesis over the console's OpenAPI document, signed in as each role of acme: no 5xx, and every
answer conforms to its operation (a documented status, content type, and the schema of its body).

Requests are generated from ``/api/v1/openapi.json`` (:func:`schemathesis.openapi.from_dict` of the
app's own document) and sent through httpx to the app in this process, on a real database and Redis,
with the session cookie and the CSRF header of the role. Path ids are half the time real ids of
acme's people and groups, so the handlers behind the 404s run too. The roles go worker, manager,
administrator: the administrator's requests may reset the others' passwords. Bounded: a few examples
per operation (:data:`EXAMPLES`), SQLite only (the routes' SQL runs on PostgreSQL in their own tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from storage.models import Group
from tests.web_world import BASE, World, make_world

EXAMPLES = 10  # per operation and role (about 30 s in all)
ROLES = ("wataru", "mika", "alice")
SESSION_ENDING = {("DELETE", "/api/v1/session"), ("DELETE", "/api/v1/sessions")}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
ID_PARAMS = ("user_id", "group_id")


@pytest.fixture
def loop() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_operation_answers_as_documented_for_every_role(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str, loop: asyncio.Runner
) -> None:
    """For each role and each operation of the document: no 5xx; status, content type, body as documented."""
    context = make_world(
        tmp_path, database_url, engine, redis_url, web_fails_per_account=10_000, web_fails_per_address=100_000
    )
    world = loop.run(context.__aenter__())
    try:
        schema = schemathesis.openapi.from_dict(world.app.openapi())
        operations = [operation_of(result) for result in schema.get_all_operations()]
        assert len(operations) >= 20  # the document lists the console's operations
        ids = real_ids(world)
        failures: list[str] = []
        sent: list[str] = []
        for role in ROLES:
            client, csrf = loop.run(world.signed_in(role))
            for operation in operations:
                if (operation.method.upper(), operation.path) in SESSION_ENDING:
                    continue
                failures += fuzz(loop, client, csrf, operation, ids, sent)
        assert failures == [], "\n".join(failures)
        fuzzed = {label.split(" -> ")[0] for label in sent}
        assert len(fuzzed) >= len(operations) - len(SESSION_ENDING) - 2  # all but a multipart or two
        assert len(sent) >= len(ROLES) * len(fuzzed)
    finally:
        loop.run(context.__aexit__(None, None, None))


def operation_of(result: Ok[Any] | Err[Any]) -> Any:
    """The operation of a loaded result; a part of the document schemathesis cannot read fails here."""
    assert isinstance(result, Ok), result.err()
    return result.ok()


def real_ids(world: World) -> list[int]:
    """Ids of acme's people and groups (and of beta's: another tenant's ids must read as missing)."""
    with Session(world.engine) as s:
        groups = [int(g) for g in s.execute(select(col(Group.id))).scalars()]
    return sorted({*world.ids.values(), *groups})


def fuzz(
    loop: asyncio.Runner,
    client: httpx.AsyncClient,
    csrf: str,
    operation: Any,
    ids: list[int],
    sent: list[str],
) -> list[str]:
    """The failures of a few generated requests of ``operation`` (an empty list: none); each request
    sent is noted in ``sent`` as ``METHOD /template -> status``."""
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), real=st.booleans(), pick=st.sampled_from(ids))
    def run(case: Case[Any], real: bool, pick: int) -> None:
        if real:
            for name in ID_PARAMS:
                if case.path_parameters and name in case.path_parameters:
                    case.path_parameters[name] = pick
        kwargs = case.as_transport_kwargs(base_url=BASE, headers={"X-CSRF-Token": csrf})
        kwargs.pop("cookies", None)  # the client's session cookie is sent
        if isinstance(kwargs.get("data"), bytes | str):  # a body already encoded (multipart)
            kwargs["content"] = kwargs.pop("data")
        request = client.build_request(**kwargs)
        try:
            loop.run(request.aread())  # the checks read the request's body again
        except (TypeError, AttributeError):  # a generated file part httpx cannot encode: not sent
            return
        answer = loop.run(client.send(request))
        label = f"{case.method} {case.formatted_path} -> {answer.status_code}"
        sent.append(f"{case.method} {case.path} -> {answer.status_code}")
        if answer.status_code >= 500:
            found.append(f"{label}: {answer.text[:200]}")
            return
        try:
            case.validate_response(answer, checks=CHECKS)
        except FailureGroup as exc:  # the checks that failed, each with what it expected
            found.append(f"{label}: {str(exc)[:300]}")

    run()
    return found
