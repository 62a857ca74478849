"""The workloads: each is a pool of distinct, freshly signed raw requests that wrk sends in rotation."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

from bench.wire import API_VERSION, Client, raw_request, user_id

Q = f"?api-version={API_VERSION}"
POOL_SIZE = 4000
BIG_ROSTER = 1000


@dataclass
class Fixture:
    """What a database holds before the workloads run: rooms to read and change, one room of 1,000."""

    room_ids: list[str]
    big_room: str
    next_user: int = 10_000_000  # user numbers above this are free for new roster entries

    def fresh_users(self, count: int) -> list[str]:
        first, self.next_user = self.next_user, self.next_user + count
        return [user_id(n) for n in range(first, first + count)]


def seed(client: Client, rooms: int) -> Fixture:
    """Rooms (with 2 participants each) and a 1,000-participant room, created through the API."""
    ids = [
        client.call("POST", "/rooms" + Q, {"participants": {user_id(2 * n): {"role": "Presenter"},
                                                          user_id(2 * n + 1): {}}}, expect=201)["id"]
        for n in range(rooms)
    ]
    return Fixture(ids, big_room(client))


def big_room(client: Client) -> str:
    roster = {user_id(5_000_000 + n): {"role": "Attendee"} for n in range(BIG_ROSTER)}
    return str(client.call("POST", "/rooms" + Q, {"participants": roster}, expect=201)["id"])


def _body(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class Pools:
    """Builds each workload's pool, signed now (so that the default 300 s clock-skew window holds)."""

    def __init__(self, fixture: Fixture, host: str, seed: int = 7) -> None:
        self.fixture, self.host = fixture, host
        self.rng = random.Random(seed)
        self.date = formatdate(usegmt=True)

    def _req(self, method: str, path: str, body: bytes = b"") -> bytes:
        return raw_request(method, path, self.host, body, date=self.date)

    def create_room(self) -> bytes:
        return self._req("POST", "/rooms" + Q, b"{}")

    def create_room_5(self) -> bytes:
        roster = {u: {"role": "Attendee"} for u in self.fixture.fresh_users(5)}
        return self._req("POST", "/rooms" + Q, _body({"participants": roster}))

    def get_room(self) -> bytes:
        return self._req("GET", f"/rooms/{self.rng.choice(self.fixture.room_ids)}{Q}")

    def update_room(self) -> bytes:
        start = datetime.now(UTC) + timedelta(days=1, seconds=self.rng.randrange(86_400))
        until = start + timedelta(days=self.rng.randrange(1, 170))
        dial_out = self.rng.random() < 0.5
        body = {"validFrom": _rfc3339(start), "validUntil": _rfc3339(until), "pstnDialOutEnabled": dial_out}
        return self._req("PATCH", f"/rooms/{self.rng.choice(self.fixture.room_ids)}{Q}", _body(body))

    def list_rooms(self) -> bytes:
        return self._req("GET", "/rooms" + Q)

    def list_participants(self) -> bytes:
        return self._req("GET", f"/rooms/{self.fixture.big_room}/participants{Q}")

    def participants_add_remove(self) -> list[bytes]:
        """An add and the matching removal: the rosters stay the same size however long the run."""
        room = self.rng.choice(self.fixture.room_ids)
        (user,) = self.fixture.fresh_users(1)
        path = f"/rooms/{room}/participants{Q}"
        return [self._req("PATCH", path, _body({"participants": {user: {"role": "Presenter"}}})),
                self._req("PATCH", path, _body({"participants": {user: None}}))]

    def mixed(self) -> bytes | list[bytes]:
        """70% reads (get 40, list participants 15, list rooms 15), 30% writes (create, update, roster 10 each)."""
        weights: list[tuple[Callable[[], bytes | list[bytes]], int]] = [
            (self.get_room, 40), (self.list_participants, 15), (self.list_rooms, 15),
            (self.create_room, 10), (self.update_room, 10), (self.participants_add_remove, 5),  # 2 requests each
        ]
        picked = self.rng.choices([w for w, _ in weights], [n for _, n in weights])[0]
        return picked()

    def pool(self, workload: str, size: int = POOL_SIZE) -> list[bytes]:
        self.date = formatdate(usegmt=True)
        make = getattr(self, workload)
        requests: list[bytes] = []
        while len(requests) < size:
            made = make()
            requests.extend(made if isinstance(made, list) else [made])
        return requests


# name -> (pool builder, what it does)
WORKLOADS: dict[str, tuple[str, str]] = {
    "create_room": ("create_room", "POST /rooms, no participants"),
    "create_room_5": ("create_room_5", "POST /rooms with 5 participants"),
    "get_room": ("get_room", "GET /rooms/{id}"),
    "update_room": ("update_room", "PATCH /rooms/{id}: validity window + pstnDialOutEnabled"),
    "list_rooms_first_page": ("list_rooms", "GET /rooms (first page of 100)"),
    "participants_add_remove": ("participants_add_remove", "PATCH /rooms/{id}/participants: add one, remove it"),
    "list_participants_1000": ("list_participants", "GET /rooms/{id}/participants of a 1,000-participant room "
                                                    "(first page of 100)"),
    "mixed": ("mixed", "70% reads (get 40, list participants 15, list rooms 15), 30% writes"),
}
WRITES = {"create_room", "create_room_5", "update_room", "participants_add_remove"}
