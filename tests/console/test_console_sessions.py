"""Console sessions and failed sign-ins are the store's, shared by every app on one database: two apps over one
store (an SQLite file; a PostgreSQL schema), like two workers or two instances. Signing out on one ends the session
on the other; failed sign-ins count on both; expiry, forged and unknown tokens; key rotation ends the sessions of the
key rotated away (on both), not those of the other key or of another kind; the tables keep no token in clear."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from openrooms.console.app import Console
from openrooms.service import keys
from openrooms.service.console_sessions import (
    ACCESS_KEY,
    FAILURE_WINDOW_SECONDS,
    MAX_FAILURES,
    OIDC,
    ConsoleSessions,
    Principal,
    token_hash,
)
from openrooms.service.keys import KeyRing
from openrooms.service.ports import RoomStore
from openrooms.store.sqlite import SqliteStore
from openrooms.testing import Emulator
from tests.api.conftest import STORES
from tests.console.client import ConsoleClient, csrf_of
from tests.store import postgres_schema

WRONG_KEY = "d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc="


@dataclass
class Pair:
    """Two apps on one database, with keys of their own (no well-known development key)."""

    a: Emulator
    b: Emulator
    kind: str
    database: str  # the SQLite file, or the PostgreSQL schema's URL
    primary: str
    secondary: str

    def console(self, emulator: Emulator) -> Console:
        (_, console), = emulator.app.mounts
        assert isinstance(console, Console)
        return console

    @property
    def store(self) -> RoomStore:
        return self.console(self.a).services.store

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of `table`, read from the database itself."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.database)) as db:
                return db.execute(f"SELECT * FROM {table}").fetchall()
        with psycopg.connect(self.database, autocommit=True) as connection:
            return connection.execute(f"SELECT * FROM {table}").fetchall()


@contextlib.contextmanager
def pair_of_apps(kind: str, tmp: Path) -> Iterator[Pair]:
    primary, secondary = keys.new_key(), keys.new_key()
    with contextlib.ExitStack() as stack:
        if kind == "postgres":
            database = stack.enter_context(postgres_schema.fresh_schema(postgres_schema.base_url()))
            settings: dict[str, Any] = {"database_url": database}
        else:
            settings = {"location": tmp, "in_memory": False}
            database = str(tmp / "openrooms.db")
            SqliteStore.upgrade(Path(database))  # as `openrooms db upgrade` does before `serve`
        a, b = (stack.enter_context(Emulator(serve=False, access_key=primary, secondary_key=secondary, **settings))
                for _ in range(2))
        apps = Pair(a, b, kind, database, primary, secondary)
        given = {"primary": keys.KeyInForce(primary, "given"), "secondary": keys.KeyInForce(secondary, "given")}
        a.run(keys.seed(apps.store, given, apps.console(a).services.clock.now()))  # as `openrooms serve` does at start
        yield apps


@pytest.fixture(scope="module", params=STORES)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with pair_of_apps(str(request.param), tmp_path_factory.mktemp("pair")) as apps:
        yield apps


@contextlib.contextmanager
def clients(*specs: tuple[Emulator, str]) -> Iterator[list[ConsoleClient]]:
    """Console clients of these apps, from these addresses."""
    made = [ConsoleClient(emulator, address=address) for emulator, address in specs]
    try:
        yield made
    finally:
        for client in made:
            client.close()


def test_signing_out_on_one_app_ends_the_session_on_the_other(pair: Pair) -> None:
    with clients((pair.a, "198.51.100.1"), (pair.b, "198.51.100.1")) as (on_a, on_b):
        assert on_a.sign_in(pair.primary).status_code == 303
        token = on_a.session
        assert token is not None
        on_b.use_session(token)  # the same browser, answered by the other worker or instance
        on_b.csrf = csrf_of(on_b.get("/console/"))
        assert on_b.csrf == on_a.csrf  # the CSRF token is the session's, not the app's
        assert on_b.post("/console/rooms", {"ids": ""}).status_code == 303
        assert on_a.post("/console/sign-out", {}).status_code == 303
        refused = on_b.get("/console/")
        assert refused.status_code == 303 and refused.headers["location"].startswith("/console/sign-in")
        assert on_b.post("/console/rooms", {"ids": ""}).status_code == 401
        on_a.use_session(token)  # a copy kept from before the sign-out, on the app that signed out
        assert on_a.get("/console/").status_code == 303


def test_failed_sign_ins_count_on_every_app(pair: Pair) -> None:
    address = "198.51.100.2"
    with clients((pair.a, address), (pair.b, address), (pair.b, "198.51.100.3")) as (on_a, on_b, elsewhere):
        for attempt in range(MAX_FAILURES):
            assert (on_a if attempt % 2 else on_b).sign_in(WRONG_KEY).status_code == 401
        for client in (on_a, on_b):  # five failures in all, on two apps: both refuse, even the right key
            limited = client.sign_in(pair.primary)
            assert limited.status_code == 429, limited.text
            assert 1 <= int(limited.headers["retry-after"]) <= FAILURE_WINDOW_SECONDS
            assert client.session is None
        assert elsewhere.sign_in(pair.primary).status_code == 303  # another address is not limited


def test_the_attempt_window_passes_and_starts_anew(pair: Pair) -> None:
    now = [2_000_000_000.0]
    # Each app's sessions on its own store and event loop (a store's connections belong to its loop).
    stores = (pair.store, pair.console(pair.b).services.store)
    first, second = (ConsoleSessions(store, KeyRing(store, [pair.primary, pair.secondary]), 60,
                                     clock=lambda: now[0]) for store in stores)
    on_a, on_b = pair.a.run, pair.b.run
    client = "198.51.100.4"
    for n in range(MAX_FAILURES - 1):
        if n % 2:
            on_a(first.failed(client))
        else:
            on_b(second.failed(client))
        now[0] += 1
    assert on_a(first.retry_after(client)) == 0  # four: one more is allowed
    on_b(second.failed(client))
    assert on_a(first.retry_after(client)) == FAILURE_WINDOW_SECONDS - (MAX_FAILURES - 1)
    now[0] += FAILURE_WINDOW_SECONDS - MAX_FAILURES  # a second before the first failure is a minute old
    assert on_b(second.retry_after(client)) == 1
    now[0] += 1
    assert on_b(second.retry_after(client)) == 0
    on_a(first.failed(client))  # the first of a new window
    assert on_a(pair.store.get_sign_in_failures(client)) == (1, int(now[0]))


def test_a_session_expires_and_expired_ones_are_deleted(pair: Pair) -> None:
    hour_ago = [time.time() - 3600]
    ring = KeyRing(pair.store, [pair.primary, pair.secondary])
    earlier = ConsoleSessions(pair.store, ring, 60, clock=lambda: hour_ago[0])
    principal = pair.a.run(earlier.key_principal(pair.primary))
    assert principal is not None and principal.kind == ACCESS_KEY
    session = pair.a.run(earlier.start(principal))  # began an hour ago, for an hour
    assert pair.a.run(earlier.check(session.token)) == session
    hour_ago[0] += 1800
    renewed = pair.a.run(earlier.renew(session, principal))  # as after a rotation: a new token, the same end
    assert renewed.token != session.token and renewed.expires_at == session.expires_at
    assert pair.a.run(earlier.check(session.token)) is None
    assert earlier.seconds_left(renewed) == 1800
    hour_ago[0] += 1799
    assert pair.a.run(earlier.check(renewed.token)) == renewed
    session = renewed
    with clients((pair.a, "198.51.100.5"), (pair.b, "198.51.100.5")) as (on_a, on_b):
        for client in (on_a, on_b):
            client.use_session(session.token)
            assert client.get("/console/").status_code == 303  # expired now, on both
        assert token_hash(session.token) in [row[0] for row in pair.rows("console_sessions")]
        assert on_b.sign_in(pair.secondary).status_code == 303  # a sign-in deletes the expired sessions
        stored = [row[0] for row in pair.rows("console_sessions")]
        assert token_hash(session.token) not in stored and on_b.session and token_hash(on_b.session) in stored


def test_forged_and_unknown_tokens_are_refused(pair: Pair) -> None:
    with clients((pair.a, "198.51.100.6"), (pair.b, "198.51.100.6")) as (on_a, on_b):
        assert on_a.sign_in(pair.primary).status_code == 303
        token = on_a.session
        assert token is not None
        forged = [
            "",
            token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # one character changed
            token + "x",
            token_hash(token),  # what the database holds: no session
            hashlib.sha256(token.encode()).hexdigest().upper(),
            "x" * 10_000,
            "' OR 1=1 --",
        ]
        for value in forged:
            on_b.use_session(value)
            assert on_b.get("/console/").status_code == 303, value
            assert on_b.post("/console/rooms", {"ids": "", "csrf": on_a.csrf}, csrf=False).status_code == 401
        assert on_a.get("/console/").status_code == 200  # the real one still works


def test_the_table_keeps_no_token_in_clear(pair: Pair) -> None:
    with clients((pair.a, "198.51.100.7")) as (client,):
        assert client.sign_in(pair.secondary).status_code == 303
        token = client.session
        assert token is not None
        rows = pair.rows("console_sessions")
        mine = [row for row in rows if row[0] == hashlib.sha256(token.encode()).hexdigest()]
        assert len(mine) == 1
        assert mine[0][1:4] == (ACCESS_KEY, "the secondary access key",
                                hashlib.sha256(b"openrooms console key " + keys.decode(pair.secondary)).hexdigest())
        everything = repr(rows) + repr(pair.rows("console_sign_in_failures"))
        assert token not in everything and client.csrf not in everything


@pytest.mark.parametrize("store", STORES)
def test_rotating_a_key_ends_its_sessions_on_every_app(tmp_path: Path, store: str) -> None:
    with pair_of_apps(store, tmp_path) as apps, clients(
            (apps.a, "198.51.100.8"), (apps.a, "198.51.100.9"), (apps.b, "198.51.100.10"),
            (apps.b, "198.51.100.11"), (apps.b, "198.51.100.12")) as (rotating, secondary, on_b, copy, oidc):
        assert rotating.sign_in(apps.primary).status_code == 303
        before = rotating.session
        assert secondary.sign_in(apps.secondary).status_code == 303
        assert on_b.sign_in(apps.primary).status_code == 303
        session = apps.b.run(apps.console(apps.b).sessions.start(Principal(OIDC, "alice@example.test")))
        oidc.use_session(session.token)

        rotated = rotating.post("/console/keys/rotate", {"name": "primary", "confirm": "yes"})
        assert rotated.status_code == 200 and "Rotated" in rotated.text
        rotating.csrf = csrf_of(rotated)
        assert rotating.session != before  # this session goes on, signed in anew with the new primary key
        renewed = apps.a.run(apps.store.get_console_session(token_hash(rotating.session or "")))
        assert before is not None and renewed is not None
        ended = [row for row in apps.rows("console_sessions") if row[0] == token_hash(before)]
        assert not ended  # the old one was deleted
        assert rotating.get("/console/keys").status_code == 200
        copy.use_session(before)
        assert copy.get("/console/").status_code == 303  # its old token ended
        copy.use_session(rotating.session or "")
        assert copy.get("/console/").status_code == 200  # the new one works on the other app

        # The other app sees the new keys within its key ring's refresh (a second): then the session signed in with
        # the primary key it replaced ends there too.
        deadline = time.monotonic() + 10 * keys.REFRESH_SECONDS
        while on_b.get("/console/").status_code == 200:
            assert time.monotonic() < deadline, "the session of the rotated key still works"
            time.sleep(0.1)
        for client in (secondary, oidc):  # the secondary key is still in force; an OIDC session has no key
            assert client.get("/console/").status_code == 200, client.session
        stored = apps.a.run(apps.store.get_access_keys())
        assert stored["secondary"] == apps.secondary and stored["primary"] != apps.primary
        assert on_b.sign_in(stored["primary"]).status_code == 303


def test_without_the_database_the_console_answers_503_and_lets_no_one_in() -> None:
    """PostgreSQL holding the sessions' table locked (its statements give up after 200 ms): every console request
    that needs a session, and sign-in, answer 503 with Retry-After; then it answers again by itself."""
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url, Emulator(
            serve=False, database_url=postgres_schema.with_options(url, "lock_timeout=200")) as emulator, clients(
            (emulator, "198.51.100.13"), (emulator, "198.51.100.13")) as (signed_in, other):
        assert signed_in.sign_in(emulator.access_key).status_code == 303
        form = other.get("/console/sign-in")
        with postgres_schema.admin(url) as db, db.transaction():
            db.execute("LOCK TABLE console_sessions, console_sign_in_failures IN ACCESS EXCLUSIVE MODE")
            for response in (signed_in.get("/console/"), signed_in.post("/console/rooms", {"ids": ""}),
                             other.request("POST", "/console/sign-in", data={
                                 "csrf": csrf_of(form), "access_key": emulator.access_key})):
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                assert "database cannot be reached" in response.text
            assert other.session is None
        assert signed_in.get("/console/").status_code == 200
