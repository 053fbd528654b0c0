"""The teleworker's local page: its HTML in both languages, and driven in a real Chromium through a punch."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

import pytest

from agent.control import ControlServer
from agent.desk import Desk
from agent.local_page import page_html
from agent.watch import RecordingEvidenceStore
from realtime.protocol import AgentSettings, DutyPayload, TaskPayload
from tests.desk_world import (
    STRANGER,
    USER,
    ManualClock,
    Recorder,
    StillCamera,
    running_monitor,
    scene_image,
    watched_pipeline,
)
from tests.test_dashboard import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = Path(os.environ.get("TELEWORK_SCREENSHOT_DIR", "/tmp"))


def test_page_in_both_languages_has_every_control() -> None:
    """Japanese and English pages carry the same controls, their own texts, and no external resource."""
    for lang, start, end in (("en", "Start work", "End work"), ("ja", "勤務開始", "勤務終了")):
        page = page_html(lang)
        assert f'<html lang="{lang}">' in page
        assert f'<button id="punch-in">{start}</button><button id="punch-out">{end}</button>' in page
        for element in ('id="preview"', 'id="task-picker"', 'id="register"', 'id="evidence"', 'id="notices"'):
            assert element in page
        assert "http://" not in page and "https://" not in page
    assert page_html("fr") == page_html("en")


async def test_page_in_chromium_through_a_punch(tmp_path: Path) -> None:
    """In Chromium: off duty the page says the camera is off and shows no preview; a stranger's punch is
    refused with the distance; the user's is accepted (duty on, verified DutyEvent, its first state), the
    camera says "on: on duty since ..." and its preview shows the camera; an offered task is started from
    the picker, the last evidence is shown, and the Japanese page shows the same state; the punch-out
    turns the camera off and empties the preview. Screenshots go to TELEWORK_SCREENSHOT_DIR."""
    if not Path(CHROMIUM).exists():  # noqa: ASYNC240 - once, before the browser starts
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (make test installs it)")
    from playwright.async_api import async_playwright

    session = Recorder(settings=AgentSettings(analysis_fps=4.0, evidence_interval_s=1.0))
    pipeline = watched_pipeline()
    evidence = RecordingEvidenceStore(tmp_path / "evidence", screen=None)
    camera = StillCamera(scene_image(STRANGER))
    clock = ManualClock(datetime(2026, 12, 1, 9, 2).astimezone())  # 09:02 here, whatever the zone
    desk = Desk(
        session, pipeline, evidence, tasks=("Design", "Review"), camera=camera.properties,
        event_clock=clock, verify_s=1.5,
    )  # fmt: skip
    server = ControlServer(desk, asyncio.get_running_loop(), port=0, folder=tmp_path)
    try:
        async with running_monitor(desk, camera, evidence, gated=True), async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
                await page.goto(server.page_url)
                await page.locator("body[data-ready='1']").wait_for(timeout=15_000)
                assert await page.title() == "Telework Supporter — my agent"
                off = page.locator("#camera-status[data-on='false'][data-why='off_duty']")
                await off.wait_for(timeout=5_000)
                assert await off.inner_text() == "off: not on duty"
                assert await page.locator("#state").inner_text() == "Not watched (off duty)"
                assert await page.get_attribute("#preview", "src") is None
                assert camera.reads == 0

                await page.click("#punch-in")
                message = page.locator("#message[data-result='refused']")
                await message.wait_for(timeout=10_000)
                text = await message.inner_text()
                assert text.startswith("Refused: face does not match the registered user (distance 0.")
                assert await page.locator("#duty").get_attribute("data-on-duty") == "false"

                camera.image = scene_image(USER)  # the stranger leaves, the user sits
                await page.click("#punch-in")
                await page.locator("#message[data-result='accepted']").wait_for(timeout=10_000)
                assert await page.locator("#message").inner_text() == "Work started (face verified)."
                await page.locator("#duty[data-on-duty='true']").wait_for(timeout=5_000)
                assert await page.locator("#punch-in").is_disabled()
                on = page.locator("#camera-status[data-on='true'][data-why='on_duty']")
                await on.wait_for(timeout=5_000)
                assert await on.inner_text() == "on: on duty since 09:02"
                await page.locator("#preview[data-loaded='1']").wait_for(timeout=10_000)
                assert await page.eval_on_selector("#preview", "img => img.naturalWidth") == 640
                assert await page.locator("#camera-info").inner_text() == "Camera 0: 640x480, 30 fps (still)"

                await page.select_option("#task-picker", "Review")
                await page.click("#task-start")
                await page.locator("#task[data-task='Review']").wait_for(timeout=10_000)
                assert await page.locator("#message").inner_text() == "Task started: Review (face verified)."

                await page.locator("#evidence img[data-kind='camera']").wait_for(timeout=10_000)
                still = "#evidence img[data-kind='camera']"
                assert await page.eval_on_selector(still, "i => i.naturalWidth") == 640
                await page.screenshot(path=str(SCREENSHOTS / "telework-local-page-en.png"), full_page=True)

                await page.click("a[data-lang='ja']")
                await page.locator("html[lang='ja'] body[data-ready='1']").wait_for(timeout=10_000)
                assert await page.locator("#duty").inner_text() == "勤務中"
                await page.locator("#state[data-state='present']").wait_for(timeout=10_000)
                assert await page.locator("#state").inner_text() == "在席"
                assert await page.locator("#camera-status").inner_text() == "オン: 09:02 から勤務中"
                assert await page.locator("#punch-out").inner_text() == "勤務終了"
                await page.screenshot(path=str(SCREENSHOTS / "telework-local-page-ja.png"), full_page=True)

                await page.click("#punch-out")
                await page.locator("#camera-status[data-on='false']").wait_for(timeout=10_000)
                assert await page.locator("#camera-status").inner_text() == "オフ: 勤務外"
                await page.locator("#preview[data-loaded='0']").wait_for(timeout=5_000)
                assert await page.get_attribute("#preview", "src") is None
            finally:
                await browser.close()
    finally:
        await asyncio.to_thread(server.close)
    punches = [x for x in session.emitted if isinstance(x, DutyPayload | TaskPayload)]
    assert punches == [
        DutyPayload(on_duty=True, verified=True), TaskPayload(task="Review"), TaskPayload(task=None),
        DutyPayload(on_duty=False, verified=True),
    ]  # fmt: skip
    assert not camera.is_open
