"""The console in Chromium against a real `openrooms serve` (in memory, no Janus): every page's main flow, with
axe-core's checks on each page, phone width, dark mode, and the pages read without JavaScript.

One server and one browser for the module; each test has its own browser context (its own cookies). With
OPENROOMS_CONSOLE_SCREENSHOTS=1 the tests write the screenshots of docs/console.md into docs/console/.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, StorageState, expect, sync_playwright

from openrooms.config import DEV_ACCESS_KEY
from openrooms.service.keys import REFRESH_SECONDS
from tests.console.browser import check_accessibility, checked, launch, new_context, screenshot, sign_in
from tests.support import Server, running_server

pytestmark = pytest.mark.e2e
ROOMS = "?api-version=2024-04-15"
SUBSCRIPTIONS = "/events/subscriptions?api-version=2026-11-01-openrooms"
VIEWPORT = {"width": 1200, "height": 900}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Webhook deliveries retried within milliseconds, dead-lettered at the first failure.
    with running_server(tmp_path_factory.mktemp("console"), "--in-memory", "--silent", "--webhook-max-attempts", "1",
                        "--webhook-retry-scale", "0.0001", tls=False) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def signed_in(browser: Browser, server: Server) -> StorageState:
    """The cookies of one sign-in, which the tests' contexts start with (a session is a cookie)."""
    context = new_context(browser)
    try:
        sign_in(context, server.endpoint, DEV_ACCESS_KEY)
        return context.storage_state()
    finally:
        context.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = new_context(browser, viewport=VIEWPORT)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def page(browser: Browser, server: Server, signed_in: StorageState) -> Iterator[Page]:
    context = new_context(browser, viewport=VIEWPORT, storage_state=signed_in)
    try:
        opened = context.new_page()
        opened.goto(f"{server.endpoint}console/")
        yield opened
    finally:
        context.close()


def go(page: Page, name: str) -> None:
    """Follow the navigation's link to a page."""
    page.get_by_role("navigation").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name if name != "Keys" else "Access keys")


def new_user(server: Server) -> str:
    created = server.request("POST", "/identities?api-version=2023-10-01", b"")
    assert created.status_code == 201
    raw_id: str = created.json()["identity"]["id"]
    return raw_id


def new_room(server: Server, participants: dict[str, str]) -> str:
    body = {"participants": {raw_id: {"role": role} for raw_id, role in participants.items()}}
    created = server.request("POST", "/rooms" + ROOMS, json.dumps(body).encode())
    assert created.status_code == 201
    room_id: str = created.json()["id"]
    return room_id


def test_sign_in_a_wrong_key_and_sign_out(context: BrowserContext, server: Server) -> None:
    page = context.new_page()
    page.goto(f"{server.endpoint}console/rooms")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    expect(page.get_by_label("Access key")).to_be_focused()
    checked(page, "sign-in")
    page.get_by_label("Access key").fill("bm90IGEga2V5IG9mIHRoaXMgc2VydmVy")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("not an access key of this server")
    page.get_by_label("Access key").fill(DEV_ACCESS_KEY)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.endpoint}console/rooms")  # back where it was going
    cookie, = [c for c in context.cookies() if c["name"] == "openrooms_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server.endpoint}console/sign-in")
    page.goto(f"{server.endpoint}console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))


def test_a_form_without_its_csrf_token_is_refused(page: Page, server: Server) -> None:
    page.goto(f"{server.endpoint}console/rooms")
    # What another site's form would send: no CSRF field and no header of htmx.
    page.evaluate("""() => {
        document.body.removeAttribute('hx-boost');
        document.body.removeAttribute('hx-headers');
        document.querySelectorAll('input[name=csrf]').forEach(input => input.remove());
    }""")
    page.get_by_role("button", name="Create the room").click()
    expect(page.get_by_role("alert")).to_contain_text("no valid CSRF token")


def test_overview(page: Page, server: Server) -> None:
    new_room(server, {})
    page.reload()
    expect(page.locator("#count-open")).not_to_have_text("0")
    expect(page.get_by_label("Connection string")).to_have_value(
        f"endpoint={server.endpoint};accesskey={DEV_ACCESS_KEY}")
    checked(page, "overview")


def test_create_a_room_and_edit_its_roster_in_bulk(page: Page, server: Server) -> None:
    users = [new_user(server) for _ in range(3)]
    go(page, "Rooms")
    checked(page, "rooms")
    page.get_by_label("PSTN dial-out").check()
    page.get_by_label("Participants (ids").fill(users[0])
    page.get_by_label("Their role").select_option("Presenter")
    page.get_by_role("button", name="Create the room").click()
    expect(page).to_have_url(re.compile(r"/console/rooms/\d+$"))
    room_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#pstn-state")).to_have_text("on")
    page.get_by_label("Add participants").fill(f"{users[1]}\n{users[2]}")
    page.get_by_label("Their role").select_option("Consumer")
    page.get_by_role("button", name="Add them").click()
    expect(page.get_by_role("heading", name="Roster (3)")).to_be_visible()
    page.get_by_label(f"Select {users[0]}").check()
    page.get_by_label(f"Select {users[1]}").check()
    page.get_by_label("Role for the selected").select_option("Attendee")
    page.get_by_role("button", name="Change their role").click()
    for user in users[:2]:  # the page is replaced by the answer: select the next ones on the new page
        expect(page.locator("table.roster tr", has_text=user)).to_contain_text("Attendee")
    page.get_by_label(f"Select {users[2]}").check()
    page.get_by_role("button", name="Remove the selected").click()
    expect(page.get_by_role("heading", name="Roster (2)")).to_be_visible()
    listed = server.request("GET", f"/rooms/{room_id}/participants{ROOMS}").json()["value"]
    assert sorted((p["rawId"], p["role"]) for p in listed) == sorted([(users[0], "Attendee"), (users[1], "Attendee")])
    checked(page, "room")
    go(page, "Rooms")  # found by its participant
    page.get_by_label("Participant", exact=True).fill(users[1])
    page.get_by_label("Window").select_option("open")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("table.rooms tbody tr")).to_have_count(1)
    page.get_by_role("link", name=room_id).click()
    page.get_by_role("button", name="Delete this room…").click()
    checked(page, "room-delete")
    page.get_by_role("button", name=f"Yes, delete room {room_id}").click()
    expect(page).to_have_url(f"{server.endpoint}console/rooms")
    assert server.request("GET", f"/rooms/{room_id}{ROOMS}").status_code == 404


def test_issue_a_token(page: Page, server: Server) -> None:
    go(page, "Users")
    page.get_by_role("button", name="Create a user").click()
    raw_id = page.get_by_label("The new user").input_value()
    assert raw_id.startswith("8:acs:")
    expect(page.get_by_label("User id")).to_have_value(raw_id)
    page.get_by_label("chat", exact=True).check()
    page.get_by_label("Expires in").fill("75")
    page.get_by_role("button", name="Issue a token").click()
    token = page.get_by_label(re.compile("^Token for")).input_value()
    assert token.count(".") == 2
    copy = page.locator("[data-copy='#token']")
    copy.click()
    expect(copy).to_have_text("Copied")
    checked(page, "users")


def test_an_event_arrives_in_the_live_tail(page: Page, server: Server) -> None:
    go(page, "Events")
    expect(page.locator("#tail-state")).to_have_text(re.compile("^Live"))
    room_id = new_room(server, {})  # made by an API client, while the page is open
    row = page.locator(".event", has_text=f"rooms/{room_id}")
    expect(row).to_contain_text("OpenRooms.RoomCreated")
    checked(page, "events")
    # Filtered: only that room's events, and the next change shows up.
    page.get_by_label("Room id").fill(room_id)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(f"room_id={room_id}"))  # the filtered page, not the one it replaces
    expect(page.locator("#tail-state")).to_have_text(re.compile("^Live"))
    server.request("PATCH", f"/rooms/{room_id}{ROOMS}", b'{"pstnDialOutEnabled": true}',
                   headers={"content-type": "application/merge-patch+json"})
    expect(page.locator(".event", has_text="OpenRooms.RoomUpdated")).to_have_count(1)
    expect(page.locator(".event", has_text="OpenRooms.RoomCreated")).to_have_count(1)
    subjects = page.locator(".event .mono").all_inner_texts()
    assert set(subjects) == {f"rooms/{room_id}"}  # that room's only


def test_join_as_opens_the_call_page(page: Page, server: Server) -> None:
    raw_id = new_user(server)
    room_id = new_room(server, {raw_id: "Presenter"})
    page.goto(f"{server.endpoint}console/rooms/{room_id}")
    expect(page.locator("#call-panel")).to_contain_text("Room calls are not configured")
    with page.context.expect_page() as opened:
        page.get_by_role("button", name="Join as").click()
    call = opened.value
    expect(call).to_have_url(re.compile(f"/call/{room_id}$"))  # the page took the token out of the address
    # This server has no Janus: the call page shows the join refused in the server's words.
    expect(call.locator("#status")).to_contain_text("not configured")


def test_phone_width_and_dark_mode(browser: Browser, server: Server, signed_in: StorageState) -> None:
    phone = new_context(browser, viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True,
                        storage_state=signed_in)
    try:
        page = phone.new_page()
        room_id = new_room(server, {new_user(server): "Attendee"})
        for path in ("", "rooms", f"rooms/{room_id}", "users", "events", "keys"):
            page.goto(f"{server.endpoint}console/{path}")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
            check_accessibility(page)  # the dark colours' contrast too
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(17, 20, 24)"
        page.goto(f"{server.endpoint}console/rooms/{room_id}")
        screenshot(page, "room-phone-dark")
    finally:
        phone.close()


def test_read_pages_work_without_javascript(browser: Browser, server: Server) -> None:
    plain = new_context(browser, java_script_enabled=False, viewport=VIEWPORT)
    try:
        page = sign_in(plain, server.endpoint, DEV_ACCESS_KEY)
        room_id = new_room(server, {new_user(server): "Attendee"})
        page.goto(f"{server.endpoint}console/rooms?q={room_id}")
        page.get_by_role("link", name=room_id).click()
        expect(page.get_by_role("heading", name="Roster (1)")).to_be_visible()
        page.goto(f"{server.endpoint}console/events?room_id={room_id}")
        expect(page.locator(".event")).to_contain_text("OpenRooms.RoomCreated")
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{server.endpoint}console/sign-in")
    finally:
        plain.close()


class _Hook(http.server.BaseHTTPRequestHandler):
    """A webhook receiver: answers Event Grid's validation handshake, then deliveries with `status`."""

    status = 500
    received: list[Any] = []  # noqa: RUF012  (the receiver's record, shared by its requests)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if isinstance(body, list) and body and body[0]["eventType"].endswith("SubscriptionValidationEvent"):
            answer = json.dumps({"validationResponse": body[0]["data"]["validationCode"]}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        if self.status < 300:
            _Hook.received += body
        self.send_response(self.status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join()


def test_webhook_dead_letters_are_delivered_again(page: Page, server: Server, hook: str) -> None:
    made = server.request("POST", SUBSCRIPTIONS, json.dumps({"endpoint": hook}).encode())
    assert made.status_code == 201, made.text
    try:
        room_id = new_room(server, {})
        page.goto(f"{server.endpoint}console/events")
        for _ in range(200):  # the first and only attempt fails: a dead letter
            if page.get_by_role("heading", name=re.compile("^Dead letters of")).count():
                break
            page.wait_for_timeout(100)
            page.reload()
        expect(page.locator("table.webhooks")).to_contain_text("failing")
        checked(page, "events-webhooks")
        _Hook.status = 200
        page.get_by_role("checkbox", name=f"OpenRooms.RoomCreated rooms/{room_id}").check()
        page.get_by_role("button", name="Re-deliver").click()
        expect(page.get_by_role("status").filter(has_text="queued again")).to_contain_text("1 dead letter")
        created = ("OpenRooms.RoomCreated", f"rooms/{room_id}")
        for _ in range(200):
            if created in [(event["eventType"], event["subject"]) for event in _Hook.received]:
                break
            page.wait_for_timeout(100)
        assert created in [(event["eventType"], event["subject"]) for event in _Hook.received]
        go(page, "Overview")
        expect(page.locator(".webhook-health")).to_contain_text(hook)
    finally:
        assert server.request("DELETE", SUBSCRIPTIONS.replace("?", f"/{made.json()['id']}?")).status_code == 204


def test_keys_rotate_with_confirmation(page: Page, server: Server) -> None:
    # Last in the module: the server's development keys are replaced.
    go(page, "Keys")
    expect(page.get_by_role("row", name=re.compile("^primary"))).to_contain_text("well-known development key")
    checked(page, "keys")
    page.get_by_label("secondary").check()
    page.get_by_role("button", name="Rotate").click()
    assert page.get_by_label(re.compile("^I understand")).evaluate("box => box.validity.valueMissing")
    expect(page.get_by_role("status")).to_have_count(0)  # the browser asked for the box and sent nothing
    page.get_by_label(re.compile("^I understand")).check()
    page.get_by_role("button", name="Rotate").click()
    expect(page.get_by_role("status")).to_contain_text("Rotated: primary, secondary")
    expect(page.get_by_role("row", name=re.compile("^primary"))).not_to_contain_text("well-known")
    # The development key no longer signs, once the API has re-read the keys (at most a second after a request).
    deadline = time.monotonic() + 10 * REFRESH_SECONDS
    while server.request("GET", "/rooms" + ROOMS).status_code != 401:
        assert time.monotonic() < deadline, "the replaced development key still signs"
        time.sleep(0.1)
    go(page, "Overview")  # still signed in, with the new key's session
    key = page.get_by_label("Connection string").input_value().rsplit("accesskey=", 1)[1]
    assert server.request("GET", "/rooms" + ROOMS, key=key).status_code == 200
