"""The call page in a real browser (Debian's Chromium driven by Playwright, fake camera and microphone) against
a real Janus, inside the tests' network namespace: media flows where the roles say it may."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.calls.test_signalling import Cast, cast  # noqa: F401  (the module's fixture)

CHROMIUM = "/usr/bin/chromium"
STATS = """async () => {
  const sum = {outBytes: 0, inBytes: 0, framesDecoded: 0, inboundFeeds: 0};
  const s = window.openrooms;
  for (const {pc} of Object.values(s.publishers)) {
    (await pc.getStats()).forEach((r) => { if (r.type === 'outbound-rtp') sum.outBytes += r.bytesSent || 0; });
  }
  for (const sub of Object.values(s.subscribers)) {
    if (!sub.pc) continue;
    let counted = false;
    (await sub.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp') {
        sum.inBytes += r.bytesReceived || 0;
        sum.framesDecoded += r.framesDecoded || 0;
        if (r.kind === 'video' && (r.framesDecoded || 0) > 0 && !counted) { sum.inboundFeeds += 1; counted = true; }
      }
    });
  }
  return sum;
}"""


@pytest.fixture
async def browser(cast: Cast) -> AsyncIterator[Browser]:  # noqa: F811
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
            "--disable-features=WebRtcHideLocalIpsWithMdns"])
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(browser: Browser, cast: Cast, room_id: str, token: str) -> Page:  # noqa: F811
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{cast.server.server.endpoint}call/{room_id}#token={token}")
    await page.wait_for_function("window.openrooms && window.openrooms.status !== 'connecting'")
    return page


async def stats(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(STATS)
    return result


async def test_presenter_attendee_and_consumer_exchange_media_as_their_roles_allow(
        browser: Browser, cast: Cast) -> None:  # noqa: F811
    presenter, presenter_token = cast.user()
    attendee, attendee_token = cast.user()
    consumer, consumer_token = cast.user()
    room_id = cast.room({presenter: "Presenter", attendee: "Attendee", consumer: "Consumer"})
    pages = {name: await open_page(browser, cast, room_id, token) for name, token in (
        ("presenter", presenter_token), ("attendee", attendee_token), ("consumer", consumer_token))}
    for page in pages.values():
        assert await page.evaluate("window.openrooms.status") == "joined"
    # Media flows: each sender's video is decoded by the others (waited for, not timed).
    wait = f"async () => ({STATS})().then((s) => s.inboundFeeds >= %d && s.framesDecoded > 10)"
    await pages["presenter"].wait_for_function(wait % 1, polling=250, timeout=30000)
    await pages["attendee"].wait_for_function(wait % 1, polling=250, timeout=30000)
    await pages["consumer"].wait_for_function(wait % 2, polling=250, timeout=30000)
    first = {name: await stats(page) for name, page in pages.items()}
    await pages["consumer"].wait_for_function(
        f"async () => ({STATS})().then((s) => s.inBytes > {first['consumer']['inBytes']})", polling=250)
    for name in ("presenter", "attendee"):
        await pages[name].wait_for_function(
            f"async () => ({STATS})().then((s) => s.outBytes > {first[name]['outBytes']})", polling=250)
    assert first["consumer"]["outBytes"] == 0
    assert await pages["consumer"].evaluate("Object.keys(window.openrooms.publishers).length") == 0
    # Buttons follow the capabilities: only the Presenter has moderation controls; screen share for none here
    # but the Presenter.
    assert await pages["presenter"].locator("button[data-request=remove]").count() >= 1
    assert await pages["attendee"].locator("button[data-request=remove]").count() == 0
    assert await pages["attendee"].locator("#screen").is_hidden()
    assert await pages["presenter"].locator("#screen").is_visible()
    # The Presenter removes the Attendee: its page says so.
    await pages["presenter"].locator("[data-key^=feed-] button[data-request=remove]").first.click()
    await pages["attendee"].wait_for_function("window.openrooms.status === 'ended'")
    assert "removed" in await pages["attendee"].evaluate("window.openrooms.message")
