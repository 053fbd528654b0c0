"""Issue 12's walkthrough in Debian's chromium: an administrator sets up a group, a manager and a
worker through the pages, registers the worker's face images and device; each person sees only
their scope; sign-out ends the session; revoking the device drops its live agent within 5 s."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from core.settings import ServerSettings
from storage.keyring import ensure_master_key
from storage.models import User
from telework.face_gate import gate_factory
from tests.faces import FACES, MISSING
from tests.servers import serving as gateway_serving
from tests.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.test_web_devices_gateway import REVOKED, running_agent
from tests.waiting import wait_until
from tests.web_world import PASSWORD, World, make_world
from web import face_parts
from web.i18n import Language, text

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

SCREENSHOTS = Path("/tmp/telework-screenshots")  # where the dashboard's browser test puts its own
NEW_PASSWORD = "walkthrough passphrase 1"
SAME_PERSON = ("obama/1.jpg", "obama/2.jpg")  # one folder of /work/shared/faces: one person
OTHER_PERSON = "biden/1.jpg"  # another folder: another person
NOT_SAME = re.compile(
    r"not the same person as the other images: distance 0\.[0-9]{2}, need at most 0\.[0-9]{2}"
)


def fresh_screenshots() -> None:
    """The screenshot folder, without an earlier run's walkthrough pictures."""
    SCREENSHOTS.mkdir(mode=0o700, exist_ok=True)
    for old in SCREENSHOTS.glob("walkthrough-*.png"):
        old.unlink()


@contextlib.asynccontextmanager
async def serving_on(app: FastAPI, sock: socket.socket) -> AsyncIterator[None]:
    """``app`` on a real uvicorn on the already bound ``sock``."""
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), timeout=20, what="uvicorn started")
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before it started")
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class Walk:
    """The browser, the console's address, and a numbered screenshot of every page seen."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser = browser
        self.base = base
        self.shots: list[Path] = []
        self.refused: list[str] = []  # Content-Security-Policy complaints in any page's console
        self.outside: list[str] = []  # requests to anywhere but the console

    async def person(self) -> Page:
        """A fresh browser context (its own cookies) and page, as another person's computer."""
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.on(
            "console", lambda m: self.refused.append(m.text) if "Content Security Policy" in m.text else None
        )
        page.on("request", lambda r: None if r.url.startswith(self.base) else self.outside.append(r.url))
        return page

    async def shot(self, page: Page, name: str) -> None:
        path = SCREENSHOTS / f"walkthrough-{len(self.shots) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)

    async def sign_in(self, page: Page, login: str, password: str, who: str) -> Language:
        """Sign in on /signin as a person would; the language of the page they land on (/users)."""
        await page.goto(f"{self.base}/signin?lang=en")
        await page.fill('input[name="tenant"]', "acme")
        await page.fill('input[name="login"]', login)
        await page.fill('input[name="password"]', password)
        await self.shot(page, f"signin-{who}")
        await follow(page, 'main button[type="submit"]')
        assert page.url == f"{self.base}/users", page.url
        lang = await page.get_attribute("html", "lang")
        assert lang in ("ja", "en")
        return "ja" if lang == "ja" else "en"


async def follow(page: Page, selector: str, timeout_ms: float = 30_000) -> None:
    """Click the link or button ``selector`` and wait for the page it brings."""
    async with page.expect_navigation(timeout=timeout_ms):
        await page.click(selector)


async def texts_of(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in await page.locator(selector).all_inner_texts()]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_console_walkthrough_in_chromium(
    tmp_path: Path, database_url: str, engine: Engine, redis_url: str
) -> None:
    """Chromium, page by page: set-up by an admin, faces (one refused with its reason), a device token
    shown once, manager and worker scopes, sign-out, and a revoked device's agent gone within 5 s."""
    from playwright.async_api import async_playwright

    faces = FACES if FACES.is_dir() else None  # absent: every step but the faces', then a skip
    ensure_master_key(tmp_path)
    await asyncio.to_thread(fresh_screenshots)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"  # known before the app: set-up links name it
        overrides = {"web_secure_cookie": False, "web_base_url": base, "face_engine": "dlib"}
        gateway = ServerSettings(
            data_dir=tmp_path, redis_url=redis_url, database_url=database_url, gateway_port=0
        )
        async with (
            make_world(tmp_path, database_url, engine, redis_url, **overrides) as world,
            serving_on(world.app, sock),
            gateway_serving(gateway) as (_gateway_app, gateway_port),
            async_playwright() as p,
        ):
            face_parts.install(world.app, world.settings, gate_factory(world.settings))
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                walk = Walk(browser, base)
                await walkthrough(walk, world, faces, gateway_port)
            finally:
                await browser.close()
    assert (walk.outside, walk.refused) == ([], [])
    assert len(walk.shots) == len(set(walk.shots)) and all(s.stat().st_size > 0 for s in walk.shots)
    if faces is None:
        pytest.skip(f"{MISSING}: the face-image step was not run (every other step passed)")


async def walkthrough(walk: Walk, world: World, faces: Path | None, gateway_port: int) -> None:
    base = walk.base
    # 1. The administrator signs in and sets up a group, a manager and a worker.
    admin = await walk.person()
    lang = await walk.sign_in(admin, "alice", PASSWORD, "admin")
    await walk.shot(admin, "users-admin")
    await follow(admin, 'nav a[href="/groups"]')
    await admin.fill('form[action="/groups"] input[name="name"]', "field")
    await walk.shot(admin, "groups-admin")
    await follow(admin, 'form[action="/groups"] button[type="submit"]')
    group_url = admin.url
    assert re.fullmatch(rf"{re.escape(base)}/groups/[0-9]+", group_url), group_url
    assert await texts_of(admin, "main h1") == ["field"]
    await walk.shot(admin, "group-new")

    links: dict[str, str] = {}
    for login, name, role in (("maya", "Maya Manager", "manager"), ("wes", "Wes Worker", "worker")):
        await follow(admin, 'nav a[href="/users"]')
        form = 'form[action="/users"][method="post"]'
        await admin.fill(f'{form} input[name="login"]', login)
        await admin.fill(f'{form} input[name="name"]', name)
        await admin.select_option(f'{form} select[name="role"]', role)
        await admin.select_option(f'{form} select[name="language"]', "en")
        await follow(admin, f'{form} button[type="submit"]')
        assert admin.url == f"{base}/users"  # the created user's page, answered to the POST
        assert await texts_of(admin, "main h1") == [name]
        assert await texts_of(admin, "p.notice") == [
            text("users_created", lang, hours=world.settings.web_setup_code_ttl_s // 3600)
        ]
        links[login] = (await texts_of(admin, ".setup-link code"))[0]
        assert links[login].startswith(f"{base}/setup#")
        await walk.shot(admin, f"user-created-{login}")
    ids = {login: world_id(world, login) for login in ("maya", "wes", "wataru", "wendy", "mika")}

    await admin.goto(group_url)
    await admin.select_option('form[action$="/managers"] select[name="user"]', str(ids["maya"]))
    await follow(admin, 'form[action$="/managers"] button[type="submit"]')
    assert admin.url == f"{group_url}?saved=1"
    await admin.select_option('form[action$="/members"] select[name="user"]', str(ids["wes"]))
    await follow(admin, 'form[action$="/members"] button[type="submit"]')
    assert admin.url == f"{group_url}?saved=1"
    tables = admin.locator("main table")
    assert await tables.count() == 2  # members, then managers
    assert await texts_of(admin, "main table >> nth=0 >> tbody td:first-child") == ["wes"]
    assert await texts_of(admin, "main table >> nth=1 >> tbody td:first-child") == ["maya"]
    await walk.shot(admin, "group-assigned")

    # Each new person sets their password with their one-time link.
    people = {}
    for login in ("maya", "wes"):
        page = await walk.person()
        await page.goto(links[login])
        assert page.url == f"{base}/setup"  # the code moved off the address bar, into the form
        assert await page.input_value("#setup-code") == links[login].split("#", 1)[1]
        await page.fill('input[name="password"]', NEW_PASSWORD)
        await walk.shot(page, f"setup-{login}")
        await follow(page, 'main button[type="submit"]')
        await page.wait_for_load_state()
        assert await page.locator("#setup-code").count() == 0  # done: the form is gone
        page_lang = await page.get_attribute("html", "lang")
        assert page_lang in ("ja", "en")
        assert await texts_of(page, "p.notice") == [text("setup_done", "ja" if page_lang == "ja" else "en")]
        await walk.shot(page, f"setup-done-{login}")
        people[login] = page

    # 2. The worker's face images: two of one person accepted, another person's refused with its reason.
    if faces is not None:
        await face_images(walk, admin, lang, faces, ids["wes"])

    # 3. A device token for the worker, shown once.
    await follow(admin, 'nav a[href="/devices"]')
    await admin.fill('form[action="/devices"] input[name="device_id"]', "pc-wes")
    await admin.fill('form[action="/devices"] input[name="login"]', "wes")
    await follow(admin, 'form[action="/devices"] button[type="submit"]')
    assert admin.url == f"{base}/devices"
    assert await texts_of(admin, "main h1") == ["pc-wes"]
    token = (await texts_of(admin, "main .card code"))[0]
    assert len(token) >= 32
    await walk.shot(admin, "device-issued")
    await admin.goto(f"{base}/devices/pc-wes")
    assert await admin.locator("main .card code").count() == 0  # never shown again
    assert token not in await admin.content()

    # 4. The manager sees only her group and its member; the worker only himself.
    maya = people["maya"]
    assert await walk.sign_in(maya, "maya", NEW_PASSWORD, "manager") == "en"  # the language she was given
    assert sorted(await texts_of(maya, "main table tbody td:first-child")) == ["maya", "wes"]
    await walk.shot(maya, "users-manager")
    await follow(maya, 'nav a[href="/groups"]')
    assert await texts_of(maya, "main table tbody td:first-child") == ["field"]
    await walk.shot(maya, "groups-manager")
    await follow(maya, 'main table a:text-is("field")')
    assert maya.url == group_url
    assert await texts_of(maya, "main table >> nth=0 >> tbody td:first-child") == ["wes"]
    assert await texts_of(maya, "main table >> nth=1 >> tbody td:first-child") == ["maya"]
    assert await maya.locator("main form").count() == 0  # a manager changes nothing here
    await walk.shot(maya, "group-manager")
    for other in ("wataru", "wendy", "mika"):
        answer = await maya.goto(f"{base}/users/{ids[other]}")
        assert answer is not None and answer.status == 404, other
    await walk.shot(maya, "user-outside-manager")

    wes = people["wes"]
    assert await walk.sign_in(wes, "wes", NEW_PASSWORD, "worker") == "en"
    assert await texts_of(wes, "main table tbody td:first-child") == ["wes"]
    await walk.shot(wes, "users-worker")
    await follow(wes, 'nav a[href="/groups"]')
    assert await texts_of(wes, "main p") == [text("groups_none", "en")]
    await walk.shot(wes, "groups-worker")
    answer = await wes.goto(f"{base}/users/{ids['maya']}")
    assert answer is not None and answer.status == 404
    await walk.shot(wes, "user-outside-worker")

    # 5. Sign-out ends the session: the old cookie opens nothing.
    await wes.goto(f"{base}/users")
    cookie = world.app.state.console.session_cookie
    old = {c["name"]: c["value"] for c in await wes.context.cookies()}[cookie]
    await follow(wes, 'nav form[action="/signout"] button[type="submit"]')
    assert wes.url == f"{base}/signin?out=1"
    await walk.shot(wes, "signed-out-worker")
    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as replay:
        again = await replay.get("/users", headers={"Cookie": f"{cookie}={old}"})
    assert (again.status_code, again.headers["location"]) == (303, "/signin?next=%2Fusers")
    await wes.goto(f"{base}/users")  # the browser itself: back to the sign-in page
    assert wes.url == f"{base}/signin?next=%2Fusers"

    # 6. A real agent on the device token; the administrator revokes the device; the agent is dropped.
    async with running_agent(gateway_port, token) as (agent, task):
        online = await wait_until(
            lambda: _shows(admin, base, "devices_online", lang), 10, 0.2, "pc-wes online"
        )
        assert online[4] == "7.1.0"  # the agent's version
        await walk.shot(admin, "device-online")
        started = time.monotonic()
        await follow(admin, 'form[action="/devices/pc-wes/revoke"] button[type="submit"]')
        await asyncio.wait_for(asyncio.shield(task), 5)
        assert time.monotonic() - started < 5
        assert agent.fatal == REVOKED
    assert admin.url == f"{base}/devices/pc-wes?done=revoked"
    assert await texts_of(admin, "p.notice") == [text("devices_revoked_done", lang)]
    assert await admin.locator('form[action="/devices/pc-wes/revoke"]').count() == 0
    await walk.shot(admin, "device-revoked")
    shown = await wait_until(lambda: _shows(admin, base, "devices_offline", lang), 5, 0.2, "pc-wes offline")
    revoked = re.escape(text("devices_revoked", lang, at="AT")).replace(
        "AT", r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"
    )
    assert re.fullmatch(revoked, shown[5]), shown[5]
    await walk.shot(admin, "device-offline")


async def _shows(page: Page, base: str, online: str, lang: Language) -> list[str] | None:
    """pc-wes's page, reloaded: its facts (id, user, online, last seen, version, status, created)
    when it shows ``online`` (a text key), else None."""
    await page.goto(f"{base}/devices/pc-wes")
    shown = await texts_of(page, "main dl dd")
    return shown if shown[2] == text(online, lang) else None


def world_id(world: World, login: str) -> int:
    """A user's id by login in acme (the new people are not in the world's ids)."""
    if login in world.ids:
        return world.ids[login]
    with Session(world.engine) as s:
        found = s.exec(select(User.id).where(col(User.tenant_id) == "acme", col(User.login) == login)).one()
    assert found is not None
    return int(found)


async def face_images(walk: Walk, admin: Page, lang: Language, faces: Path, wes: int) -> None:
    """On the worker's face page: two photos of one person registered, one of another refused."""
    base = walk.base
    await admin.goto(f"{base}/users/{wes}")
    await follow(admin, f'a[href="/users/{wes}/faces"]')
    assert admin.url == f"{base}/users/{wes}/faces"
    await walk.shot(admin, "faces-empty")
    files = [str(faces / name) for name in (*SAME_PERSON, OTHER_PERSON)]
    await admin.set_input_files('input[type="file"][name="files"]', files)
    upload = 'form[enctype="multipart/form-data"] button[type="submit"]'
    await follow(admin, upload, timeout_ms=120_000)  # the first upload loads dlib
    accepted = [text("faces_accepted", lang, file=Path(n).name) for n in SAME_PERSON]
    assert await texts_of(admin, "ul.face-results li.notice") == accepted
    refused = await texts_of(admin, "ul.face-results li.error")
    shown = text("faces_rejected", lang, file=Path(OTHER_PERSON).name, reason="REASON")
    expected = re.escape(shown).replace("REASON", NOT_SAME.pattern)
    assert len(refused) == 1 and re.fullmatch(expected, refused[0]), refused
    assert await admin.locator("ul.faces li.face").count() == 2
    await admin.wait_for_function(
        "() => [...document.querySelectorAll('ul.faces img')].every(i => i.complete && i.naturalWidth > 0)"
    )  # the thumbnails load
    await walk.shot(admin, "faces-uploaded")
