"""The call page in a real browser (Debian's Chromium driven by Playwright, fake camera and microphone) against
a real Janus, inside the tests' network namespace: media flows where the roles say it may."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.calls.test_signalling import Cast, cast  # noqa: F401  (the module's fixture)

CHROMIUM = "/usr/bin/chromium"



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
    """What the page last sampled of its peer connections' statistics (`getStats`, twice a second)."""
    result: dict[str, Any] = await page.evaluate("window.openrooms.stats")
    return result


async def until(page: Page, condition: str) -> None:
    """Wait for `condition` on the page's sampled statistics `s` (a guard against a hang, not a measure)."""
    await page.wait_for_function(f"(() => {{ const s = window.openrooms.stats; return {condition}; }})()",
                                 polling=250, timeout=30000)


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
    await until(pages["presenter"], "s.inboundFeeds >= 1 && s.framesDecoded > 10")
    await until(pages["attendee"], "s.inboundFeeds >= 1 && s.framesDecoded > 10")
    await until(pages["consumer"], "s.inboundFeeds >= 2 && s.framesDecoded > 10")
    first = {name: await stats(page) for name, page in pages.items()}
    # ... and keeps flowing: received and sent bytes grow.
    for name in ("presenter", "attendee", "consumer"):
        await until(pages[name], f"s.inBytes > {first[name]['inBytes']}")
    for name in ("presenter", "attendee"):
        await until(pages[name], f"s.outBytes > {first[name]['outBytes']}")
    assert first["presenter"]["inboundFeeds"] == first["attendee"]["inboundFeeds"] == 1  # a Consumer sends nothing
    assert (await stats(pages["consumer"]))["outBytes"] == 0
    assert await pages["consumer"].evaluate("Object.keys(window.openrooms.publishers).length") == 0
    # Buttons follow the capabilities: only the Presenter has moderation controls; screen share for none here
    # but the Presenter.
    assert await pages["presenter"].locator("button[data-request=remove]").count() >= 1
    assert await pages["attendee"].locator("button[data-request=remove]").count() == 0
    assert await pages["attendee"].locator("#screen").is_hidden()
    assert await pages["presenter"].locator("#screen").is_visible()
    # The Presenter mutes the Attendee (Janus moderates its audio, with the secret openrooms holds) ...
    await pages["presenter"].locator("[data-key^=feed-] button[data-request=mute]").first.click()
    await pages["presenter"].wait_for_function("(window.openrooms.lastDone || {}).request === 'mute'")
    assert await pages["presenter"].evaluate("window.openrooms.lastDone") == {
        "type": "done", "request": "mute", "target": attendee, "found": True}
    # ... and removes it: its page says so.
    await pages["presenter"].locator("[data-key^=feed-] button[data-request=remove]").first.click()
    await pages["attendee"].wait_for_function("window.openrooms.status === 'ended'")
    assert "removed" in await pages["attendee"].evaluate("window.openrooms.message")


async def test_a_collaborator_shares_its_screen_as_a_second_feed(browser: Browser, cast: Cast) -> None:  # noqa: F811
    collaborator, collaborator_token = cast.user()
    viewer, viewer_token = cast.user()
    room_id = cast.room({collaborator: "Collaborator", viewer: "Consumer"})
    sharing = await open_page(browser, cast, room_id, collaborator_token)
    watching = await open_page(browser, cast, room_id, viewer_token)
    assert await sharing.locator("#screen").is_visible()
    await sharing.locator("#screen").click()
    await sharing.wait_for_function("window.openrooms.publishers.screen !== undefined")
    # The viewer decodes two feeds of the collaborator: camera and screen.
    await until(watching, "s.inboundFeeds >= 2")
    kinds = await watching.evaluate("Object.values(window.openrooms.feeds).map((f) => f.kind).sort()")
    assert kinds == ["camera", "screen"]


async def test_the_page_trickles_its_candidates_after_each_description(browser: Browser, cast: Cast) -> None:  # noqa: F811
    presenter, presenter_token = cast.user()
    attendee, attendee_token = cast.user()
    room_id = cast.room({presenter: "Presenter", attendee: "Attendee"})
    sent: list[dict[str, Any]] = []
    page = await (await browser.new_context()).new_page()
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(json.loads(frame))))
    await page.goto(f"{cast.server.server.endpoint}call/{room_id}#token={attendee_token}")
    other = await open_page(browser, cast, room_id, presenter_token)
    await until(page, "s.inboundFeeds >= 1 && s.framesDecoded > 10")  # media flows with trickled candidates
    await until(other, "s.inboundFeeds >= 1 && s.framesDecoded > 10")
    await page.wait_for_function("window.openrooms.subscribers && Object.keys(window.openrooms.subscribers).length")
    feed_id = int((await page.evaluate("Object.keys(window.openrooms.subscribers)"))[0])
    for description, where in (("publish", {"feed": "camera"}), ("start", {"feedId": feed_id})):
        def about(m: dict[str, Any], where: dict[str, Any] = where) -> bool:
            return all(m.get(k) == v for k, v in where.items())

        for _ in range(300):  # until the page says gathering is complete (a guard against a hang, not a measure)
            if any(m["type"] == "trickle" and about(m) and m["candidate"] is None for m in sent):
                break
            await asyncio.sleep(0.1)
        position = next(i for i, m in enumerate(sent) if m["type"] == description and about(m))
        trickled = [m for m in sent if m["type"] == "trickle" and about(m)]
        assert trickled, f"no candidate trickled after {description} {where}"
        # Every candidate follows its description; the last says gathering is complete.
        assert all(sent.index(m) > position for m in trickled)
        assert all(m["candidate"]["candidate"].startswith("candidate:") for m in trickled[:-1])
        assert trickled[-1]["candidate"] is None
