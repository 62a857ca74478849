"""The console's rules in process, through the ASGI app on each store: no page without a session, CSRF on every
form, the sign-in limit, cookie flags, sign-out and expiry, where it is served; and its forms' effects on the
services (a room with its roster, bulk roster changes, deletion only once confirmed, tokens, key rotation)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

import pytest
from starlette.routing import Route

from openrooms.calls.model import CallServer
from openrooms.config import DEV_ACCESS_KEY, DEV_SECONDARY_KEY, Settings
from openrooms.console import app
from openrooms.console import session as sessions
from openrooms.console.app import Console
from openrooms.events import types as t
from openrooms.service.console_sessions import FAILURE_WINDOW_SECONDS, MAX_FAILURES
from openrooms.service.identity import IdentityService
from openrooms.service.model import Room
from openrooms.testing import Emulator
from tests.api.conftest import STORES, in_process
from tests.api.inprocess import InProcess
from tests.console.client import ConsoleClient, csrf_of

ROOM_ID = "12345678901234567"
HOUR = timedelta(hours=1)


CREATED = r'id="created-id" readonly value="([^"]+)"'


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, text
    return match.group(1)


def local(moment: datetime) -> str:
    """A `datetime-local` field's value (UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture(scope="module", params=STORES)
def target(request: pytest.FixtureRequest) -> Iterator[InProcess]:
    with in_process(str(request.param)) as app:
        yield app


@pytest.fixture
def browser(target: InProcess) -> Iterator[ConsoleClient]:
    client = ConsoleClient(target.emulator)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def signed_in(browser: ConsoleClient) -> ConsoleClient:
    assert browser.sign_in(DEV_ACCESS_KEY).status_code == 303
    return browser


def console_of(emulator: Emulator) -> Console:
    (_, console), = emulator.app.mounts
    assert isinstance(console, Console)
    return console


def guarded_routes(console: Console) -> list[tuple[str, str]]:
    open_paths = {"/console", "/console/sign-in", "/console/static/{name}"}
    found = []
    for route in console.router.routes:
        assert isinstance(route, Route)
        if route.path in open_paths:
            continue
        path = route.path.replace("{room_id}", ROOM_ID)
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def test_every_page_but_the_sign_in_needs_a_session(target: InProcess, browser: ConsoleClient) -> None:
    routes = guarded_routes(console_of(target.emulator))
    assert len(routes) >= 19  # the reader of the routes found them
    for method, path in routes:
        response = browser.request(method, path, data={"csrf": "x"} if method == "POST" else None)
        if method == "GET":
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/console/sign-in?next="), path
        else:
            assert response.status_code == 401, (method, path)
            assert "Sign in first" in response.text


def test_a_wrong_key_is_refused_and_a_right_one_opens_a_session(browser: ConsoleClient) -> None:
    refused = browser.sign_in("bm90IGEga2V5IG9mIHRoaXMgc2VydmVy")
    assert refused.status_code == 401
    assert "not an access key of this server" in refused.text
    assert sessions.COOKIE not in browser.client.cookies
    assert browser.get("/console/").status_code == 303
    accepted = browser.sign_in(DEV_SECONDARY_KEY)  # either key in force signs in
    assert accepted.status_code == 303
    cookie = next(value for name, value in accepted.headers.multi_items()
                  if name == "set-cookie" and value.startswith(sessions.COOKIE + "="))
    assert {"HttpOnly", "Secure", "SameSite=strict", "Path=/console"} <= {part.strip() for part in cookie.split(";")}
    assert browser.get("/console/").status_code == 200


def test_the_session_cookie_is_not_secure_over_plain_http(target: InProcess) -> None:
    client = ConsoleClient(target.emulator, scheme="http")
    try:
        response = client.sign_in(DEV_ACCESS_KEY)
        assert response.status_code == 303
        assert "Secure" not in response.headers["set-cookie"]
    finally:
        client.close()


def test_the_sign_in_form_needs_its_csrf_token(browser: ConsoleClient) -> None:
    browser.get("/console/sign-in")
    response = browser.request("POST", "/console/sign-in", data={"csrf": "forged", "access_key": DEV_ACCESS_KEY})
    assert response.status_code == 403
    assert sessions.COOKIE not in browser.client.cookies


def test_failed_sign_ins_are_limited_per_client(target: InProcess) -> None:
    client = ConsoleClient(target.emulator, address="192.0.2.1")  # this test's address: its failures only
    other = ConsoleClient(target.emulator, address="192.0.2.2")
    try:
        for _ in range(MAX_FAILURES):
            assert client.sign_in("d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc=").status_code == 401
        limited = client.sign_in(DEV_ACCESS_KEY)  # even the right key, until the window has passed
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= FAILURE_WINDOW_SECONDS
        assert sessions.COOKIE not in client.client.cookies
        assert other.sign_in(DEV_ACCESS_KEY).status_code == 303  # another address is not limited
    finally:
        client.close()
        other.close()


def test_a_form_without_its_csrf_token_changes_nothing(target: InProcess, signed_in: ConsoleClient) -> None:
    before = signed_in.get("/console/").text
    for data, csrf in (({"csrf": "forged"}, False), ({}, False)):
        response = signed_in.post("/console/rooms", {**data, "ids": ""}, csrf=csrf)
        assert response.status_code == 403
        assert "CSRF" in response.text
    assert found(r'id="count-open">(\d+)', before) == found(r'id="count-open">(\d+)', signed_in.get("/console/").text)
    # The header htmx sends is as good as the field.
    created = signed_in.post("/console/rooms", {"ids": ""}, csrf=False, headers={"x-csrf-token": signed_in.csrf})
    assert created.status_code == 303


def test_sign_out_ends_the_session(signed_in: ConsoleClient) -> None:
    cookie = signed_in.client.cookies[sessions.COOKIE]
    assert signed_in.post("/console/sign-out", {}).status_code == 303
    assert sessions.COOKIE not in signed_in.client.cookies
    signed_in.use_session(cookie)
    assert signed_in.get("/console/").status_code == 303  # the copy kept from before is ended too


def test_a_session_is_no_credential_of_the_api(target: InProcess, signed_in: ConsoleClient) -> None:
    response = signed_in.get("/rooms?api-version=2024-04-15")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Denied"


def test_served_on_loopback_by_default_and_elsewhere_when_asked() -> None:
    assert Settings(host="127.0.0.1").console_served
    assert Settings(host="localhost").console_served
    assert not Settings(host="0.0.0.0").console_served
    assert Settings(host="0.0.0.0", console=True).console_served
    assert not Settings(host="127.0.0.1", console=False).console_served
    with Emulator(serve=False, console=False) as emulator:
        assert emulator.app.mounts == ()
        client = ConsoleClient(emulator)
        try:
            response = client.get("/console/sign-in")
            assert response.status_code == 401  # no console: the API's pipeline answers, asking for its key
            assert response.json()["error"]["code"] == "Denied"
        finally:
            client.close()


def _room_page(client: ConsoleClient, room_id: str) -> str:
    page = client.get(f"/console/rooms/{room_id}")
    assert page.status_code == 200
    return page.text


def _roster(page: str) -> dict[str, str]:
    return dict(re.findall(r'<label for="select-\d+">([^<]+)</label></td>\s*<td>(\w+)</td>', page))


def test_a_room_and_its_roster_in_bulk(target: InProcess, signed_in: ConsoleClient) -> None:
    users = [signed_in.post("/console/users", {"action": "create"}) for _ in range(3)]
    ids = [found(CREATED, user.text) for user in users]
    opens = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=10)
    created = signed_in.post("/console/rooms", {"valid_from": local(opens), "valid_until": local(opens + HOUR),
                                                "ids": ids[0], "role": "Presenter"})
    assert created.status_code == 303
    room_id = created.headers["location"].rsplit("/", 1)[1]
    page = _room_page(signed_in, room_id)
    assert "upcoming" in page and opens.strftime("%Y-%m-%d %H:%M:00 UTC") in page
    assert _roster(page) == {ids[0]: "Presenter"}
    pasted = f"{ids[1]}\n{ids[2]},  "
    assert signed_in.post(f"/console/rooms/{room_id}/roster", {"action": "add", "ids": pasted,
                                                                "role": "Consumer"}).status_code == 303
    assert _roster(_room_page(signed_in, room_id)) == {ids[0]: "Presenter", ids[1]: "Consumer", ids[2]: "Consumer"}
    assert signed_in.post(f"/console/rooms/{room_id}/roster", {"action": "role", "selected": ids[:2],
                                                                "new_role": "Attendee"}).status_code == 303
    assert _roster(_room_page(signed_in, room_id)) == {ids[0]: "Attendee", ids[1]: "Attendee", ids[2]: "Consumer"}
    assert signed_in.post(f"/console/rooms/{room_id}/roster", {"action": "remove",
                                                                "selected": ids[1:]}).status_code == 303
    assert _roster(_room_page(signed_in, room_id)) == {ids[0]: "Attendee"}
    # A bad id is refused whole, in the error catalogue's words, and nothing is applied.
    refused = signed_in.post(f"/console/rooms/{room_id}/roster", {"action": "add", "ids": f"{ids[1]} wrong_mri"})
    assert refused.status_code == 400
    assert "wrong_mri" in refused.text
    assert _roster(refused.text) == {ids[0]: "Attendee"}
    # The API sees what the console did.
    listed = target.request("GET", f"/rooms/{room_id}/participants?api-version=2024-04-15").json()["value"]
    assert [(p["rawId"], p["role"]) for p in listed] == [(ids[0], "Attendee")]


def test_window_pstn_and_a_delete_that_asks_first(signed_in: ConsoleClient) -> None:
    room_id = signed_in.post("/console/rooms", {"ids": ""}).headers["location"].rsplit("/", 1)[1]
    assert "open" in _room_page(signed_in, room_id)
    assert signed_in.post(f"/console/rooms/{room_id}/pstn", {"pstn": "on"}).status_code == 303
    assert '<strong id="pstn-state">on</strong>' in _room_page(signed_in, room_id)
    opens = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=3)
    backwards = signed_in.post(f"/console/rooms/{room_id}/window", {"valid_from": local(opens + HOUR),
                                                                    "valid_until": local(opens)})
    assert backwards.status_code == 400
    assert "The time range is incorrect" in backwards.text
    assert signed_in.post(f"/console/rooms/{room_id}/window", {"valid_from": local(opens),
                                                               "valid_until": local(opens + HOUR)}).status_code == 303
    page = _room_page(signed_in, room_id)
    assert opens.strftime("%Y-%m-%d %H:%M:00 UTC") in page and "upcoming" in page
    asked = signed_in.post(f"/console/rooms/{room_id}/delete", {})
    assert asked.status_code == 200 and f"Yes, delete room {room_id}" in asked.text
    assert signed_in.get(f"/console/rooms/{room_id}").status_code == 200  # still there
    assert signed_in.post(f"/console/rooms/{room_id}/delete", {"confirm": room_id}).status_code == 303
    assert signed_in.get(f"/console/rooms/{room_id}").status_code == 404


def test_tokens_of_a_user(target: InProcess, signed_in: ConsoleClient) -> None:
    user = signed_in.post("/console/users", {"action": "create"})
    raw_id = found(CREATED, user.text)
    issued = signed_in.post("/console/users", {"action": "token", "user_id": raw_id, "scopes": ["chat", "voip"],
                                               "minutes": "90"})
    assert issued.status_code == 200
    token = found(r'id="token" readonly value="([^"]+)"', issued.text)
    identity: IdentityService = console_of(target.emulator).services.identity
    verified = target.emulator.run(identity.verify_token(token))
    assert verified.raw_id == raw_id and verified.scopes == ("chat", "voip")
    assert round((verified.expires_at - verified.issued_at) / 10_000_000 / 60) == 90
    too_long = signed_in.post("/console/users", {"action": "token", "user_id": raw_id, "scopes": ["voip"],
                                                 "minutes": "5000"})
    assert too_long.status_code == 400
    assert signed_in.post("/console/users", {"action": "revoke", "user_id": raw_id}).status_code == 200
    with pytest.raises(Exception, match="401"):
        target.emulator.run(identity.verify_token(token))
    assert signed_in.post("/console/users", {"action": "delete", "user_id": raw_id}).status_code == 200
    assert signed_in.post("/console/users", {"action": "delete", "user_id": raw_id}).status_code == 404


def test_join_as_issues_a_voip_token_for_the_call_page(target: InProcess, signed_in: ConsoleClient) -> None:
    user = signed_in.post("/console/users", {"action": "create"})
    raw_id = found(CREATED, user.text)
    room_id = signed_in.post("/console/rooms", {"ids": raw_id}).headers["location"].rsplit("/", 1)[1]
    joined = signed_in.post(f"/console/rooms/{room_id}/join-as", {"raw_id": raw_id})
    assert joined.status_code == 303
    location = joined.headers["location"]
    assert location.startswith(f"/call/{room_id}#token=")
    token = location.split("#token=")[1].split("&")[0]
    identity: IdentityService = console_of(target.emulator).services.identity
    assert target.emulator.run(identity.verify_token(token)).scopes == ("voip",)
    assert "not configured" in signed_in.get(f"/console/rooms/{room_id}/call").text  # no Janus here


@pytest.mark.parametrize("store", STORES)
def test_rotating_a_key_keeps_this_session_and_ends_the_others(store: str) -> None:
    with in_process(store) as target:  # an app of its own: the other tests sign in with the development key
        _rotate(target)


def _rotate(target: InProcess) -> None:
    first, second = ConsoleClient(target.emulator), ConsoleClient(target.emulator)
    try:
        assert first.sign_in(DEV_ACCESS_KEY).status_code == 303
        assert second.sign_in(DEV_ACCESS_KEY).status_code == 303
        unconfirmed = first.post("/console/keys/rotate", {"name": "primary"})
        assert unconfirmed.status_code == 400
        rotated = first.post("/console/keys/rotate", {"name": "primary", "confirm": "yes"})
        assert rotated.status_code == 200 and "Rotated" in rotated.text
        first.csrf = csrf_of(rotated)
        assert first.get("/console/keys").status_code == 200
        assert second.get("/console/keys").status_code == 303  # signed with the replaced key
        stored = target.emulator.run(console_of(target.emulator).services.store.get_access_keys())
        assert DEV_ACCESS_KEY not in stored.values()
        assert second.sign_in(DEV_ACCESS_KEY).status_code == 401
        assert second.sign_in(stored["primary"]).status_code == 303
        overview = first.get("/console/")
        assert f"accesskey={stored['primary']}" in overview.text
    finally:
        first.close()
        second.close()


def _listed(client: ConsoleClient, query: str) -> tuple[list[str], str | None]:
    page = client.get(f"/console/rooms?{query}")
    assert page.status_code == 200
    rows = re.findall(r'<tr><td><a href="/console/rooms/(\d+)">', page.text)
    following = re.search(r'<a href="([^"]+)" rel="next">', page.text)
    return rows, None if following is None else following.group(1).replace("&amp;", "&")


@pytest.mark.parametrize("store", STORES)
def test_rooms_by_state_participant_and_id_sorted_by_valid_from_and_paged(store: str) -> None:
    with in_process(store, page_size=2) as target:
        client = ConsoleClient(target.emulator)
        try:
            assert client.sign_in(DEV_ACCESS_KEY).status_code == 303
            raw_id = found(CREATED, client.post("/console/users", {"action": "create"}).text)
            start = datetime.now(UTC).replace(second=0, microsecond=0)
            made = []
            for days in (9, 3, 6):  # upcoming, created out of validFrom's order
                opens = start + timedelta(days=days)
                created = client.post("/console/rooms", {"valid_from": local(opens), "valid_until": local(opens + HOUR),
                                                         "ids": raw_id if days != 6 else ""})
                made.append(created.headers["location"].rsplit("/", 1)[1])
            open_now = client.post("/console/rooms", {"ids": ""}).headers["location"].rsplit("/", 1)[1]
            first, following = _listed(client, "state=upcoming")
            assert first == [made[1], made[2]]  # by validFrom, two a page
            assert following is not None
            second, last = _listed(client, following.split("?", 1)[1])
            assert (second, last) == ([made[0]], None)
            assert _listed(client, "state=open")[0] == [open_now]
            assert _listed(client, f"participant={quote(raw_id)}")[0] == [made[1], made[0]]
            assert _listed(client, f"q={made[2]}")[0] == [made[2]]
            assert _listed(client, "state=ended")[0] == []
            refused = client.get("/console/rooms?participant=nobody")
            assert refused.status_code == 400 and 'role="alert"' in refused.text
            overview = client.get("/console/").text
            assert found(r'id="count-upcoming">([^<]+)', overview) == "3"
            assert found(r'id="count-open">([^<]+)', overview) == "1"
            assert found(r'id="count-ended">([^<]+)', overview) == "0"
        finally:
            client.close()


def test_the_polled_call_panel_is_not_swapped_while_it_is_unchanged(signed_in: ConsoleClient) -> None:
    room_id = signed_in.post("/console/rooms", {"ids": ""}).headers["location"].rsplit("/", 1)[1]
    digest = found(r'hx-vals=\'\{"seen": "([0-9a-f]+)"\}\'', _room_page(signed_in, room_id))
    polled = {"hx-request": "true"}
    assert signed_in.get(f"/console/rooms/{room_id}/call?seen={digest}", headers=polled).status_code == 204
    changed = signed_in.get(f"/console/rooms/{room_id}/call?seen=0000", headers=polled)
    assert changed.status_code == 200 and changed.text.startswith('<div id="call-panel"')
    # Without htmx, the panel is a page of its own.
    assert "<h1>Call of room" in signed_in.get(f"/console/rooms/{room_id}/call?seen={digest}").text


def _cursor(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_events_page_shows_the_latest_first_and_the_tail_goes_on_from_the_end(signed_in: ConsoleClient) -> None:
    rooms = [signed_in.post("/console/rooms", {"ids": ""}).headers["location"].rsplit("/", 1)[1] for _ in range(3)]
    created = f"type={quote(t.ROOM_CREATED)}"
    page = signed_in.get(f"/console/events?{created}").text
    subjects = re.findall(r'<span class="mono">([^<]+)</span>', page)
    assert subjects[:3] == [f"rooms/{room_id}" for room_id in reversed(rooms)]
    rows = [_cursor(cursor) for cursor in re.findall(r'<li class="event" id="event-([0-9.]+)"', page)]
    assert rows == sorted(rows, reverse=True)
    assert _cursor(unquote(found(r'data-stream="[^"]*after=([0-9.%E]+)"', page))) >= rows[0]
    one = signed_in.get(f"/console/events?{created}&room_id={rooms[1]}").text
    assert re.findall(r'<span class="mono">([^<]+)</span>', one) == [f"rooms/{rooms[1]}"]
    # Nothing matches: the tail still goes on from the end of the log, not from its start.
    none = signed_in.get("/console/events?room_id=99999999999999999").text
    assert re.findall(r'<li class="event"', none) == []
    assert _cursor(unquote(found(r'data-stream="[^"]*after=([0-9.%E]+)"', none))) >= rows[0]


@pytest.mark.parametrize("store", STORES)
def test_the_overview_counts_rooms_and_lists_every_call_in_progress(store: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Room calls configured (no Janus is needed: the overview reads only what the store holds of the calls).
    with in_process(store, janus_url="ws://127.0.0.1:9/") as target:
        client = ConsoleClient(target.emulator)
        try:
            assert client.sign_in(DEV_ACCESS_KEY).status_code == 303
            services = console_of(target.emulator).services
            now = services.clock.now()
            hour = 36_000_000_000
            # More open rooms than a page of pages: the calls are in the last ones by the start of the window.
            rooms = [Room(f"{10**16 + n}", now, now - 1000 * hour + n * hour, now + hour, False) for n in range(1001)]

            async def seed() -> None:
                for room in rooms:
                    await services.store.insert_room(room, [], None)
                for room in rooms[-2:]:
                    await services.store.claim_call_server(CallServer(
                        room.id, "ws://127.0.0.1:9/", 1, "secret", "pin", f"call-{room.id}", now, "someone",
                        "Presenter", "correlation"))

            target.emulator.run(seed())
            overview = client.get("/console/").text
            assert found(r'id="count-open">([^<]+)', overview) == "1001"
            assert found(r'id="count-calls">([^<]+)', overview) == "2"
            assert all(f'/console/rooms/{room.id}"' in overview for room in rooms[-2:])
            monkeypatch.setattr(app, "MAX_COUNTED_ROOMS", 1000)
            monkeypatch.setattr(app, "MAX_LISTED_CALLS", 1)
            overview = client.get("/console/").text
            assert found(r'id="count-open">([^<]+)', overview) == "1000+"
            assert found(r'id="count-calls">([^<]+)', overview) == "1+"
            assert f'/console/rooms/{rooms[-2].id}"' in overview and f'/console/rooms/{rooms[-1].id}"' not in overview
        finally:
            client.close()
