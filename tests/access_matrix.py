"""The role x tenant access matrix: what each console route answers to each kind of caller.

Every route of the console application (pages and API) is described once by a :class:`Case`
in a module ``tests/access_cases/<area>.py`` (a list ``CASES``). ``tests/test_web_matrix.py``
reads the application's route table and fails when a route has no case (or a case no route),
so a new route cannot be left out; then, for each case and each caller of :data:`CALLERS`, it
prepares fresh objects of tenant ``acme`` (``Case.prepare``), sends the request signed in as the
caller (with the CSRF header), and asserts the exact status of ``Case.expect``; a 2xx answer to
a caller of tenant ``beta`` must not show the prepared object (``Case.leaks``).

The callers (see ``tests/web_world.py``): ``alice`` administrator of acme; ``mika`` manager of
acme's group ``sales``; ``wataru`` worker in ``sales`` (the owner of what ``prepare`` makes when
the object belongs to a user); ``wendy`` worker in acme's other group ``ops``; ``bob``, ``ben``,
``bill`` administrator, manager and worker of tenant ``beta``; ``anon`` not signed in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.web_world import World

CALLERS = ("alice", "mika", "wataru", "wendy", "bob", "ben", "bill", "anon")


@dataclass
class Call:
    """How to call a route: path parameters, query, and one kind of body."""

    path: dict[str, object] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: dict[str, str] | None = None  # a form (the CSRF field is added)
    files: dict[str, tuple[str, bytes, str]] | None = None  # multipart uploads


Prepare = Callable[[World], Awaitable[Call]]


async def no_call(world: World) -> Call:
    """A call without parameters or body."""
    return Call()


@dataclass(frozen=True)
class Case:
    method: str  # GET, POST, PUT, PATCH, DELETE
    path: str  # the route's path template, exactly as in the route table: /api/v1/users/{user_id}
    expect: Mapping[str, int]  # every caller of CALLERS -> the exact status
    prepare: Prepare = no_call  # fresh objects of acme for one caller's request
    leaks: Callable[[Call, httpx.Response], bool] | None = None  # a 2xx answer shows acme's object


def expect(
    *,
    admin: int,
    manager: int,
    own: int,
    other: int,
    beta: int | tuple[int, int, int] = 404,
    anon: int = 401,
) -> dict[str, int]:
    """The statuses for: acme's administrator, sales' manager, the owner (wataru), another acme
    worker (wendy), beta's administrator, manager and worker (one value or three), no session."""
    b = beta if isinstance(beta, tuple) else (beta, beta, beta)
    return {
        "alice": admin,
        "mika": manager,
        "wataru": own,
        "wendy": other,
        "bob": b[0],
        "ben": b[1],
        "bill": b[2],
        "anon": anon,
    }


def everyone(status: int, anon: int | None = None) -> dict[str, int]:
    """The same status for every caller (``anon`` may differ)."""
    out = dict.fromkeys(CALLERS, status)
    if anon is not None:
        out["anon"] = anon
    return out


def route_table(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the application serves (HEAD aside), included routers too."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount, Route, WebSocketRoute

    found: set[tuple[str, str]] = set()
    pending: list[Any] = list(app.routes)
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute | Route):
            found.update((m, route.path) for m in (route.methods or set()) - {"HEAD"})
        elif isinstance(route, WebSocketRoute):
            found.add(("WEBSOCKET", route.path))
        elif isinstance(route, Mount):
            found.add(("GET", route.path + "/{path}"))
        elif hasattr(route, "original_router"):  # FastAPI's record of an included router
            assert route.include_context.prefix == "", "routers carry their own prefix"
            pending.extend(route.original_router.routes)
        else:
            raise AssertionError(f"a route of an unknown kind: {route!r}")
    return found
