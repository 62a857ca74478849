"""openrooms.testing in process: the emulator's endpoint, CA and clients, its fixed clock, its clean starts (the
plugin as a user's pytest loads it: tests/e2e/test_testing_plugin.py)."""

from __future__ import annotations

import ssl
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError

from openrooms.testing import Emulator, emulator, sign_headers
from openrooms.testing.__main__ import environment


def emulator_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("openrooms-emulator")]


def test_the_session_fixture_serves_https_trusted_by_its_ca(openrooms: Emulator) -> None:
    assert openrooms.endpoint == f"https://127.0.0.1:{openrooms.port}/"
    assert openrooms.connection_string == f"endpoint={openrooms.endpoint};accesskey={openrooms.access_key}"
    path = "/rooms?api-version=2025-03-13"
    request = urllib.request.Request(openrooms.endpoint.rstrip("/") + path,
                                     headers=sign_headers("GET", path, f"127.0.0.1:{openrooms.port}"))
    with urllib.request.urlopen(request, context=openrooms.ssl_context) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.URLError) as untrusted:  # not without its CA
        urllib.request.urlopen(openrooms.endpoint + "healthz", context=ssl.create_default_context())
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)


async def test_sync_and_async_clients_share_the_session_emulator(openrooms: Emulator) -> None:
    user = openrooms.identity_client().create_user()  # the sync identity client of SDK 1.5.0 has no close()
    with openrooms.rooms_client(api_version="2024-04-15") as rooms:
        room_id = rooms.create_room().id
    async with openrooms.async_identity_client() as async_identity, openrooms.async_rooms_client() as async_rooms:
        await async_identity.get_token(user, ["chat"])
        assert (await async_rooms.get_room(room_id)).id == room_id


def test_each_fresh_emulator_starts_clean(openrooms: Emulator, openrooms_fresh: Emulator) -> None:
    with openrooms.rooms_client() as shared:
        shared.create_room()
    with openrooms_fresh.rooms_client() as fresh:
        assert list(fresh.list_rooms()) == []
    assert openrooms_fresh.port != openrooms.port and openrooms_fresh.clock is None


@pytest.mark.openrooms(clock=datetime(2030, 1, 1, 12, tzinfo=UTC), page_size=2)
def test_a_fixed_clock_and_settings_from_the_mark(openrooms_fresh: Emulator) -> None:
    clock = openrooms_fresh.clock
    assert clock is not None and clock.time == datetime(2030, 1, 1, 12, tzinfo=UTC)
    with openrooms_fresh.rooms_client() as rooms:
        first = rooms.create_room()
        assert first.created_at == first.valid_from == "2030-01-01T12:00:00+00:00"
        assert first.valid_until == "2030-06-30T12:00:00+00:00"
        clock.advance(timedelta(days=200))  # far past a day: the SDK's Repeatability-First-Sent is still recent
        second = rooms.create_room()
        assert second.created_at == "2030-07-20T12:00:00+00:00"
        with pytest.raises(HttpResponseError, match="The time range end is in the past"):
            rooms.update_room(room_id=first.id, valid_from=clock.time - timedelta(days=2),
                              valid_until=clock.time - timedelta(days=1))
        clock.set(datetime(2031, 5, 5, tzinfo=UTC))
        assert rooms.create_room().created_at == "2031-05-05T00:00:00+00:00"
        rooms.create_room()
        # The listing shows the rooms valid now, by the fixed clock (the first two have ended), two a page.
        assert [len(list(page)) for page in rooms.list_rooms().by_page()] == [2]
        rooms.create_room()
        assert [len(list(page)) for page in rooms.list_rooms().by_page()] == [2, 1]


def test_a_fixed_clock_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        Emulator(clock=datetime(2030, 1, 1))


def test_the_context_manager_stops_and_removes_its_ca() -> None:
    with emulator(tls=False) as plain:
        assert plain.endpoint.startswith("http://") and environment(plain) == {
            "OPENROOMS_CONNECTION_STRING": plain.connection_string, "OPENROOMS_ENDPOINT": plain.endpoint}
        with plain.rooms_client() as rooms:
            assert rooms.create_room().id
    with Emulator() as secure:
        ca = Path(secure.ca)
        assert environment(secure)["NODE_EXTRA_CA_CERTS"] == str(ca) and ca.exists()
        running = emulator_threads()
    assert not ca.parent.exists()
    assert f"openrooms-emulator-{secure.port}" in running
    assert f"openrooms-emulator-{secure.port}" not in emulator_threads()
