"""The console's live call panel against a real Janus (the call tests' server, inside their network namespace): "join
as" a participant opens the call page, which joins; the panel shows who is in the call and what each sends; the
console takes someone out of the call and ends it."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from playwright.async_api import Page, async_playwright, expect

from openrooms.config import DEV_ACCESS_KEY
from tests.calls.test_signalling import Cast, cast  # noqa: F401  (the module's fixture)
from tests.console.browser import AXE, AXE_TAGS, CHROMIUM, SCREENSHOTS, SCREENSHOTS_ENV


async def _check_accessibility(page: Page) -> None:
    result = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", AXE_TAGS)
    assert [v["id"] for v in result["violations"]] == [], result["violations"]


async def _joined(page: Page) -> None:
    await page.wait_for_function("window.openrooms && window.openrooms.status === 'joined'", timeout=30000)


async def test_join_as_then_remove_and_end_from_the_call_panel(cast: Cast) -> None:  # noqa: F811
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    raw_id, _ = cast.user()
    room_id = cast.room({raw_id: "Presenter"})
    endpoint = cast.server.server.endpoint
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
            "--disable-features=WebRtcHideLocalIpsWithMdns"])
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 900})
            await context.add_init_script(path=str(AXE))
            console = await context.new_page()
            await console.goto(f"{endpoint}console/rooms/{room_id}")
            await console.get_by_label("Access key").fill(DEV_ACCESS_KEY)
            await console.get_by_role("button", name="Sign in").click()
            panel = console.locator("#call-panel")
            await expect(panel).to_contain_text("No call is in progress.", timeout=15000)

            async with context.expect_page() as opened:
                await console.get_by_role("button", name="Join as").click()
            call = await opened.value
            await _joined(call)
            # The panel, polled, shows the participant and its camera and microphone.
            await expect(panel).to_contain_text("1 in it", timeout=15000)
            await expect(panel).to_contain_text(re.compile(r"Presenter; sends audio, video"), timeout=15000)
            await _check_accessibility(console)
            if os.environ.get(SCREENSHOTS_ENV):
                await console.locator("section", has=console.locator("#call-panel")).screenshot(
                    path=str(SCREENSHOTS / "room-call.png"))

            await panel.get_by_role("button", name=re.compile("^Remove")).click()
            await expect(call.locator("#status")).to_contain_text("Disconnected", timeout=15000)
            await expect(panel).to_contain_text("No call is in progress.", timeout=15000)

            async with context.expect_page() as again:
                await console.get_by_role("button", name="Join as").click()
            second = await again.value
            await _joined(second)
            await expect(panel).to_contain_text("1 in it", timeout=15000)
            console.once("dialog", lambda dialog: dialog.accept())  # "End the call for everyone?"
            await panel.get_by_role("button", name="End the call").click()
            await expect(second.locator("#status")).to_contain_text("Disconnected", timeout=15000)
            # the call ends in the store once its last participant's leave is through: the next poll shows it
            await expect(panel).to_contain_text("No call is in progress.", timeout=15000)
            ended = cast.api("GET", f"/rooms/{room_id}/call")
            assert ended.status_code == 404
        finally:
            await browser.close()
