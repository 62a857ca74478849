"""The room queries of the list (openrooms extension, docs/rooms.md) through the app in process, on each store:
`participant`, `state`, `idPrefix` and `orderby` at the extension's api-version, their errors in the ACS envelope,
and the Rooms api-versions' list exactly as before whatever those parameters say."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from openrooms.http import versions
from tests.api.conftest import in_process
from tests.api.inprocess import InProcess
from tests.support import user_id

EXTENSION = versions.ROOM_QUERIES.versions[0].name
ACS = "2025-03-13"
START = datetime(2030, 1, 1, 12, tzinfo=UTC)
# name: (validFrom, validUntil) as hours from START, and the roster; the clock is then moved 2 hours on.
ROOMS = {"ended": (0, 1, [1]), "open": (0, 24, [1, 2]), "upcoming": (3, 24, [1]), "upcoming_later": (5, 24, [])}


def _at(hours: int) -> str:
    return (START + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def server(store_kind: str) -> Iterator[tuple[InProcess, dict[str, str]]]:
    """The app with a page size of 2 and the rooms of ROOMS (by name: id), two hours after START."""
    with in_process(store_kind, clock=START, page_size=2) as target:
        made = {}
        for name, (start, end, roster) in ROOMS.items():
            body = {"validFrom": _at(start), "validUntil": _at(end),
                    "participants": {user_id(n): {"role": "Attendee"} for n in roster}}
            response = target.request("POST", f"/rooms?api-version={ACS}", json.dumps(body).encode())
            assert response.status_code == 201, response.text
            made[name] = response.json()["id"]
        clock = target.emulator.clock
        assert clock is not None
        clock.advance(timedelta(hours=2))
        yield target, made


def _listed(target: InProcess, query: str) -> tuple[list[str], list[str]]:
    """Every room the list answers, following nextLink; and the links followed."""
    ids: list[str] = []
    links: list[str] = []
    page = _get(target, f"/rooms?{query}", 200)
    while True:
        ids += [room["id"] for room in page["value"]]
        link = page.get("nextLink")
        if not link:
            return ids, links
        links.append(link)
        parts = urlsplit(link)
        page = _get(target, f"{parts.path}?{parts.query}", 200)


def _get(target: InProcess, path_and_query: str, status: int) -> Any:
    response = target.request("GET", path_and_query)
    assert response.status_code == status, response.text
    return response.json()


def _names(made: dict[str, str], ids: list[str]) -> list[str]:
    by_id = {room_id: name for name, room_id in made.items()}
    return [by_id[room_id] for room_id in ids]


def _in_order(made: dict[str, str], *names: str) -> list[str]:
    """The names in the list's order: by validFrom, then id."""
    return sorted(names, key=lambda name: (ROOMS[name][0], made[name]))


def test_the_extension_lists_every_room_by_validfrom_across_pages(server: tuple[InProcess, dict[str, str]]) -> None:
    target, made = server
    ids, links = _listed(target, f"api-version={EXTENSION}")
    assert _names(made, ids) == _in_order(made, *ROOMS)
    assert len(links) == 1
    ids, _ = _listed(target, f"api-version={EXTENSION}&orderby=validFrom%20asc")
    assert _names(made, ids) == _in_order(made, *ROOMS)


@pytest.mark.parametrize(("query", "expected"), [
    ("state=ended", ["ended"]),
    ("state=open", ["open"]),
    ("state=upcoming", ["upcoming", "upcoming_later"]),
    ("state=Open,upcoming", ["open", "upcoming", "upcoming_later"]),
    ("state=open&state=ended", ["ended", "open"]),
    (f"participant={user_id(1)}", ["ended", "open", "upcoming"]),
    (f"participant={user_id(1)}&state=open,upcoming&orderby=validFrom", ["open", "upcoming"]),
    (f"participant={user_id(3)}", []),
])
def test_queries_by_state_and_participant_carry_their_parameters_across_pages(
    server: tuple[InProcess, dict[str, str]], query: str, expected: list[str]
) -> None:
    target, made = server
    ids, links = _listed(target, f"api-version={EXTENSION}&{query}")
    assert _names(made, ids) == _in_order(made, *expected)
    for link in links:
        carried = parse_qs(urlsplit(link).query)
        assert {name: carried[name] for name in parse_qs(query)} == parse_qs(query)
        assert carried["api-version"] == [EXTENSION]


def test_a_query_by_id_prefix(server: tuple[InProcess, dict[str, str]]) -> None:
    target, made = server
    ids, _ = _listed(target, f"api-version={EXTENSION}&idPrefix={made['open']}")
    assert _names(made, ids) == ["open"]


@pytest.mark.parametrize(("query", "target_name"), [
    ("state=closed", "state"), ("state=", "state"), ("state=open,,ended", "state"),
    ("participant=wrong_mri", "participant"), ("participant=", "participant"),
    ("idPrefix=12a", "idPrefix"), ("idPrefix=", "idPrefix"), ("idPrefix=1234567890123456789", "idPrefix"),
    ("orderby=createdAt", "orderby"), ("orderby=validFrom%20desc", "orderby"),
    ("skipToken=not-a-token", "skipToken"), ("maxpagesize=0", "maxpagesize"), ("maxpagesize=x", "maxpagesize"),
])
def test_bad_query_parameters_are_400_in_the_acs_envelope(
    server: tuple[InProcess, dict[str, str]], query: str, target_name: str
) -> None:
    target, _ = server
    error = _get(target, f"/rooms?api-version={EXTENSION}&{query}", 400)["error"]
    assert error["code"] == "BadRequest"
    assert error["target"] == target_name
    assert error["message"]


def test_a_page_token_of_the_acs_list_is_no_page_token_of_a_query(server: tuple[InProcess, dict[str, str]]) -> None:
    target, _ = server
    token = parse_qs(urlsplit(_get(target, f"/rooms?api-version={ACS}", 200)["nextLink"]).query)["skipToken"][0]
    assert _get(target, f"/rooms?api-version={EXTENSION}&skipToken={token}", 400)["error"]["target"] == "skipToken"


def test_the_rooms_versions_list_as_before_whatever_the_query_parameters(
    server: tuple[InProcess, dict[str, str]]
) -> None:
    target, made = server
    plain, _ = _listed(target, f"api-version={ACS}")
    assert sorted(_names(made, plain)) == sorted(set(ROOMS) - {"ended"})  # ended rooms are not listed there
    for query in ("state=ended", "state=closed", f"participant={user_id(2)}", "orderby=createdAt", "idPrefix=x"):
        ids, links = _listed(target, f"api-version={ACS}&{query}")
        assert ids == plain
        assert all("state=" not in link and "participant=" not in link for link in links)
    response = target.request("GET", f"/rooms?api-version={ACS}&state=open")
    assert response.headers["api-supported-versions"] == versions.ROOMS.supported


def test_the_extension_version_serves_the_list_alone(server: tuple[InProcess, dict[str, str]]) -> None:
    target, made = server
    response = target.request("GET", f"/rooms?api-version={EXTENSION}")
    assert response.headers["api-supported-versions"] == versions.ROOM_QUERIES.supported
    for method, path in (("POST", "/rooms"), ("GET", f"/rooms/{made['open']}"),
                         ("GET", f"/rooms/{made['open']}/participants")):
        response = target.request(method, f"{path}?api-version={EXTENSION}", b"{}" if method == "POST" else b"")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "UnsupportedApiVersion"
