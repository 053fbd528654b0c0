"""The access matrix of the second factor and API token routes (pages and API): see
``tests/access_matrix.py``.

Only administrators and managers have a second factor: a worker's attempt is 403. The cases that
need an enrolment prepare one (not yet on, so everyone still signs in with the password alone)
for every administrator and manager; an administrator's reset targets acme's manager mika, whom
mika may see but not reset (403) and the workers and tenant beta cannot see (404). A token is
revoked only by its owner: anyone else gets 404, as for a missing token.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from tests.access_matrix import Call, Case, everyone, expect
from tests.web_world import PASSWORD, PEOPLE, World
from web import api_tokens, second_factor, totp

API = "/api/v1"
WITH_FACTOR = [(t, login) for t, login, role, _ in PEOPLE if role in second_factor.ROLES_WITH_SECOND_FACTOR]


async def enrolled(world: World) -> list[str]:
    """Every administrator and manager begins an enrolment (replacing an earlier one); their secrets."""
    keyring = second_factor.keyring_for(world.settings, world.engine)

    def begin(tenant: str, login: str) -> str:
        return second_factor.begin_enrolment(
            world.engine, keyring, tenant, world.ids[login], now=world.clock(), source="test"
        )

    return [await run_in_threadpool(begin, tenant, login) for tenant, login in WITH_FACTOR]


def wrong_code(secrets: list[str], now: float) -> str:
    """A code that no secret of ``secrets`` accepts now."""
    step = totp.step_of(now)
    taken = {totp.code_at(s, step + d) for s in secrets for d in (-1, 0, 1)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in taken)


async def confirm_json(world: World) -> Call:
    return Call(json={"code": wrong_code(await enrolled(world), world.clock())})


async def confirm_form(world: World) -> Call:
    return Call(data={"code": wrong_code(await enrolled(world), world.clock())})


async def off_json(world: World) -> Call:
    await enrolled(world)
    return Call(json={"password": PASSWORD})


async def off_form(world: World) -> Call:
    await enrolled(world)
    return Call(data={"password": PASSWORD})


async def on_mika(world: World) -> Call:
    await enrolled(world)
    return Call(path={"user_id": world.ids["mika"]})


async def wataru_token(world: World) -> Call:
    _, view = await run_in_threadpool(
        lambda: api_tokens.create(
            world.engine, "acme", world.ids["wataru"], "matrix", None, now=world.clock(), source="test"
        )
    )
    return Call(path={"token_id": view.id})


async def code_json(world: World) -> Call:
    return Call(json={"wait_token": "no-such-wait", "code": "123456"})


async def code_form(world: World) -> Call:
    return Call(data={"code": "123456"})


async def token_json(world: World) -> Call:
    return Call(json={"name": "matrix script", "expires_in_days": 30})


async def token_form(world: World) -> Call:
    return Call(data={"name": "matrix script", "expires_in_days": "30"})


async def begin_form(world: World) -> Call:
    return Call(data={})


FACTOR = (201, 201, 403)  # beta's administrator, manager, worker
RESET = expect(admin=204, manager=403, own=404, other=404)
OWN_TOKEN = expect(admin=404, manager=404, own=204, other=404)

CASES = [
    Case("POST", API + "/session/code", everyone(401), code_json),
    Case("GET", API + "/me/second-factor", everyone(200, anon=401)),
    Case("POST", API + "/me/second-factor", expect(admin=201, manager=201, own=403, other=403, beta=FACTOR)),
    Case(
        "POST", API + "/me/second-factor/confirm",
        expect(admin=422, manager=422, own=403, other=403, beta=(422, 422, 403)), confirm_json,
    ),
    Case(
        "POST", API + "/me/second-factor/off",
        expect(admin=204, manager=204, own=409, other=409, beta=(204, 204, 409)), off_json,
    ),
    Case("DELETE", API + "/users/{user_id}/second-factor", RESET, on_mika),
    Case("GET", API + "/me/tokens", everyone(200, anon=401), wataru_token),
    Case("POST", API + "/me/tokens", everyone(201, anon=401), token_json),
    Case("DELETE", API + "/me/tokens/{token_id}", OWN_TOKEN, wataru_token),
    Case("GET", "/signin/code", everyone(303)),
    Case("POST", "/signin/code", everyone(303), code_form),
    Case("GET", "/profile/second-factor", everyone(200, anon=303)),
    Case(
        "POST", "/profile/second-factor",
        expect(admin=303, manager=303, own=403, other=403, beta=(303, 303, 403), anon=303), begin_form,
    ),
    Case(
        "POST", "/profile/second-factor/confirm",
        expect(admin=422, manager=422, own=403, other=403, beta=(422, 422, 403), anon=303), confirm_form,
    ),
    Case(
        "POST", "/profile/second-factor/off",
        expect(admin=303, manager=303, own=409, other=409, beta=(303, 303, 409), anon=303), off_form,
    ),
    Case("GET", "/users/{user_id}/second-factor", {**RESET, "alice": 200, "anon": 303}, on_mika),
    Case("POST", "/users/{user_id}/second-factor/reset", {**RESET, "alice": 303, "anon": 303}, on_mika),
    Case("GET", "/profile/tokens", everyone(200, anon=303), wataru_token),
    Case("POST", "/profile/tokens", everyone(200, anon=303), token_form),
    Case("POST", "/profile/tokens/{token_id}/revoke", {**OWN_TOKEN, "wataru": 303, "anon": 303},
         wataru_token),
]  # fmt: skip
