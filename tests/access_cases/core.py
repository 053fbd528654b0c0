"""The access matrix of the console's foundation routes: session, me, users, sign-in and set-up pages,
profile, static files (see ``tests/access_matrix.py``).

A user route is asked about wataru (a worker of mika's group ``sales``): the administrator, mika
and wataru himself see him; wendy and tenant beta do not (404, exactly as an id nobody has). The
sign-in and set-up forms are public, and refuse a post without the double-submit token (403).
"""

from __future__ import annotations

import httpx

from tests.access_matrix import Call, Case, everyone, expect
from tests.web_world import World

API = "/api/v1"


async def on_wataru(world: World) -> Call:
    return Call(path={"user_id": world.ids["wataru"]})


async def wrong_sign_in(world: World) -> Call:
    return Call(json={"tenant": "acme", "login": "nobody", "password": "not it"})


async def same_language(world: World) -> Call:
    return Call(json={"language": "ja"})


async def wrong_current(world: World) -> Call:
    return Call(json={"current": "not it", "new": "a new long password"})


async def sign_in_form(world: World) -> Call:
    return Call(data={"tenant": "acme", "login": "nobody", "password": "not it"})


async def setup_form(world: World) -> Call:
    return Call(data={"code": "not a code", "password": "a new long password"})


async def profile_form(world: World) -> Call:
    return Call(data={"name": "Same Name", "language": "ja"})


async def password_form(world: World) -> Call:
    return Call(data={"current": "not it", "new": "a new long password"})


async def stylesheet(world: World) -> Call:
    return Call(path={"path": "console.css"})


async def empty_form(world: World) -> Call:
    return Call(data={})


def shows_wataru(call: Call, answer: httpx.Response) -> bool:
    return "wataru" in answer.text


SEE_WATARU = expect(admin=200, manager=200, own=200, other=404)

CASES = [
    Case("POST", API + "/session", everyone(401), wrong_sign_in),
    Case("DELETE", API + "/session", everyone(204, anon=401)),
    Case("DELETE", API + "/sessions", everyone(200, anon=401)),
    Case("GET", API + "/me", everyone(200, anon=401)),
    Case("PATCH", API + "/me", everyone(200, anon=401), same_language),
    Case("PUT", API + "/me/password", everyone(422, anon=401), wrong_current),
    Case("GET", API + "/users", everyone(200, anon=401), leaks=lambda c, a: "wataru" in a.text),
    Case("GET", API + "/users/{user_id}", SEE_WATARU, on_wataru, leaks=shows_wataru),
    Case("GET", API + "/openapi.json", everyone(200)),
    Case("GET", "/", everyone(303)),
    Case("GET", "/signin", everyone(200)),
    Case("POST", "/signin", everyone(403), sign_in_form),
    Case("POST", "/signout", everyone(303), empty_form),
    Case("POST", "/signout-everywhere", everyone(303), empty_form),
    Case("GET", "/setup", everyone(200)),
    Case("POST", "/setup", everyone(403), setup_form),
    Case("GET", "/users", everyone(200, anon=303), leaks=lambda c, a: ">wataru</a>" in a.text),
    Case("GET", "/users/{user_id}", {**SEE_WATARU, "anon": 303}, on_wataru, leaks=shows_wataru),
    Case("GET", "/profile", everyone(200, anon=303)),
    Case("POST", "/profile", everyone(303), profile_form),
    Case("POST", "/profile/password", everyone(422, anon=303), password_form),
    Case("GET", "/static/{path}", everyone(200), stylesheet),
]
