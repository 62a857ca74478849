"""`openrooms migrate from-acs` and `verify` against a real openrooms server standing in for the ACS resource."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.communication.rooms import CommunicationUserIdentifier, ParticipantRole, RoomParticipant

from openrooms.service.clock import SystemClock
from openrooms.service.identity import IdentityService
from openrooms.store.sqlite import SqliteStore
from tests.migrate.conftest import Source, migrate, ok
from tests.migrate.proxy import Faults, fault_proxy
from tests.store import postgres_schema, roster_copies
from tests.support import USER_PREFIX, user_id

OTHER_RESOURCE = "0c6d9a55-59cc-4a8b-8a7a-3b0b0a7a1a11"


def rooms_in(location: Path) -> dict[str, tuple[int, int, int, int]]:
    with sqlite3.connect(location / "openrooms.db") as db:
        return {row[0]: row[1:] for row in db.execute(
            "SELECT id, created_at, valid_from, valid_until, pstn_dial_out_enabled FROM rooms")}


def report_of(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    return data


def test_copy_verify_then_a_delta(source: Source, tmp_path: Path) -> None:
    target = tmp_path / "target"
    at = ["--location", str(target), *source.options]
    client = source.client()
    start = datetime.now(UTC) + timedelta(hours=1)
    made = client.create_room(valid_from=start, valid_until=start + timedelta(days=3), pstn_dial_out_enabled=True,
                              participants=[RoomParticipant(communication_identifier=CommunicationUserIdentifier(
                                  user_id(f"role-{role.value}")), role=role) for role in ParticipantRole])
    connection = {"connection_string": source.connection_string}
    users_file = tmp_path / "users.txt"
    users_file.write_text(f"# users on no roster\n{user_id('lonely')}\n\n")

    # --dry-run plans everything and writes nothing
    planned = ok("from-acs", *at, "--dry-run", "--report", str(tmp_path / "dry.json"),
                 **connection)
    assert f"create    {made.id}" in planned.stdout
    assert report_of(tmp_path / "dry.json")["rooms"] == {
        "source": 201, "created": 201, "updated": 0, "deleted": 0, "unchanged": 0, "skipped": 0, "notInSource": 0}
    assert not target.exists()

    ok("from-acs", *at, "--users-file", str(users_file), "--report",
       str(tmp_path / "first.json"), **connection)
    first = report_of(tmp_path / "first.json")
    assert first["rooms"]["created"] == 201  # type: ignore[index]
    assert first["participants"]["added"] == 1004  # type: ignore[index]
    assert first["users"] == {"registered": 1005, "alreadyRegistered": 0}
    assert first["resourceId"] == USER_PREFIX.split(":")[2].rstrip("_")
    copied = rooms_in(target)
    assert set(copied) == {*source.room_ids, made.id}
    verified = ok("verify", *at, **connection)
    assert "201 rooms in the source; 0 differences" in verified.stdout

    # openrooms can issue tokens to an imported user, under the adopted resource id
    async def token_for(raw_id: str) -> str:
        store = SqliteStore.open(target / "openrooms.db")
        try:
            service = IdentityService(store, SystemClock())
            assert await service.resource_id() == first["resourceId"]
            return (await service.issue_token(raw_id, ["voip"])).token
        finally:
            await store.close()

    assert asyncio.run(token_for(user_id("lonely")))
    assert asyncio.run(token_for(user_id("role-Collaborator")))

    # changes on the source: verify lists them, a second run copies only them
    changed, gone = source.room_ids[0], source.room_ids[1]
    client.update_room(room_id=changed, valid_from=start, valid_until=start + timedelta(days=10),
                       pstn_dial_out_enabled=True)
    client.add_or_update_participants(room_id=made.id, participants=[
        RoomParticipant(communication_identifier=CommunicationUserIdentifier(user_id("new")),
                        role=ParticipantRole.PRESENTER),
        RoomParticipant(communication_identifier=CommunicationUserIdentifier(user_id("role-Consumer")),
                        role=ParticipantRole.ATTENDEE)])
    client.remove_participants(room_id=made.id, participants=[CommunicationUserIdentifier(user_id("role-Presenter"))])
    client.delete_room(room_id=gone)
    added = client.create_room(participants=[RoomParticipant(
        communication_identifier=CommunicationUserIdentifier(user_id("late")))])

    differences = migrate("verify", *at, "--report", str(tmp_path / "verify.json"),
                          **connection)
    assert differences.exit_code == 1
    listed = {(d["room"], d["what"]) for d in report_of(tmp_path / "verify.json")["differences"]}  # type: ignore
    assert listed == {
        (changed, "validFrom"), (changed, "validUntil"), (changed, "pstnDialOutEnabled"), (made.id, user_id("new")),
        (made.id, user_id("role-Consumer")), (made.id, user_id("role-Presenter")), (gone, "room"), (added.id, "room"),
        ("-", user_id("new")),  # not registered as an identity yet
    }

    ok("from-acs", *at, "--report", str(tmp_path / "delta.json"), **connection)
    delta = report_of(tmp_path / "delta.json")
    assert delta["rooms"] == {"source": 201, "created": 1, "updated": 2, "deleted": 0, "unchanged": 198,
                              "skipped": 0, "notInSource": 1}
    assert delta["participants"] == {"source": 1000, "added": 2, "roleChanged": 1, "removed": 1, "skipped": 0}
    assert {c["room"]: c.get("fields") for c in delta["changes"]} == {  # type: ignore[attr-defined]
        added.id: ["createdAt", "validFrom", "validUntil", "pstnDialOutEnabled"],
        changed: ["validFrom", "validUntil", "pstnDialOutEnabled"], made.id: None}
    assert delta["notInSource"] == {"kept": [gone]}
    assert delta["users"] == {"registered": 2, "alreadyRegistered": 998}  # the users file was not given again
    copies = roster_copies.sqlite_copies(target / "openrooms.db")  # the roster entries' copies of their rooms
    assert len(copies) == 1005 and roster_copies.stale(copies) == {}
    assert {copy for (room_id, _), (copy, _) in copies.items() if room_id == changed} == {
        (*rooms_in(target)[changed][:3], True)}

    planned = ok("from-acs", *at, "--delete-missing", "--dry-run", **connection)
    assert f"delete    {gone}" in planned.stdout and gone in rooms_in(target)
    ok("from-acs", *at, "--delete-missing", "--report", str(tmp_path / "delete.json"),
       **connection)
    assert report_of(tmp_path / "delete.json")["rooms"]["deleted"] == 1  # type: ignore[index]
    assert report_of(tmp_path / "delete.json")["notInSource"] == {"deleted": [gone]}
    assert gone not in rooms_in(target)
    assert "0 differences" in ok("verify", *at, **connection).stdout
    again = ok("from-acs", *at, "--report", str(tmp_path / "again.json"), **connection)
    assert report_of(tmp_path / "again.json")["rooms"]["unchanged"] == 201  # type: ignore[index]
    assert "0 were created, 0 updated, 0 deleted, 201 unchanged" in again.stdout


def test_a_target_of_another_resource_is_refused(source: Source, tmp_path: Path) -> None:
    target = tmp_path / "target"
    at = ["--location", str(target), *source.options]

    async def prefill(with_data: bool) -> None:
        SqliteStore.upgrade(target / "openrooms.db")
        store = SqliteStore.open(target / "openrooms.db")
        try:
            await store.ensure_resource_id(OTHER_RESOURCE)
            if with_data:
                service = IdentityService(store, SystemClock())
                await service.create_user()
        finally:
            await store.close()

    asyncio.run(prefill(with_data=True))
    refused = migrate("from-acs", *at, connection_string=source.connection_string)
    assert refused.exit_code == 2
    assert f"already serves resource id {OTHER_RESOURCE}" in refused.stderr
    assert rooms_in(target) == {}
    assert source.server.access_key not in refused.stdout + refused.stderr

    # a database that has another resource id but holds nothing yet adopts the source's
    (target / "openrooms.db").unlink()
    asyncio.run(prefill(with_data=False))
    ok("from-acs", *at, connection_string=source.connection_string)
    assert len(rooms_in(target)) == len(source.room_ids)


def test_throttling_and_server_errors_are_retried(source: Source, tmp_path: Path) -> None:
    target = tmp_path / "target"
    with fault_proxy(source.server.endpoint, Faults(), source.server.ca) as proxy:
        through = {"connection_string": proxy.connection_string(source.server.access_key)}
        ok("from-acs", "--location", str(target), "--retry-backoff", "0", **through)
        assert proxy.forwarded == len(source.room_ids) + 2  # each roster, and the two pages of rooms
        # every request was throttled once, then failed once, then answered
        assert proxy.injected[429] == proxy.injected[500] + proxy.injected[503] == proxy.forwarded
        assert "0 differences" in ok("verify", "--location", str(target), "--retry-backoff", "0", **through).stdout
    assert set(rooms_in(target)) == set(source.room_ids)


def test_a_source_that_keeps_failing_stops_the_run_cleanly(source: Source, tmp_path: Path) -> None:
    with fault_proxy(source.server.endpoint, Faults(throttle=False, always_fail=True), source.server.ca) as proxy:
        failed = migrate("from-acs", "--location", str(tmp_path / "target"), "--retries", "2", "--retry-backoff",
                         "0", connection_string=proxy.connection_string(source.server.access_key))
    assert failed.exit_code == 2
    assert "reading the source" in failed.stderr and "Run the command again" in failed.stderr
    assert sum(proxy.injected.values()) == 3  # the request and its two retries
    assert source.server.access_key not in failed.stdout + failed.stderr


def test_the_source_connection_string_is_required_and_never_shown(tmp_path: Path) -> None:
    missing = migrate("from-acs", "--location", str(tmp_path))
    assert missing.exit_code == 2 and "--from-connection-string" in missing.stderr
    secret = "endpoint=https://example.invalid/;accesskey=c2VjcmV0LXNlY3JldC1zZWNyZXQ="
    shown = migrate("from-acs", "--help", connection_string=secret)
    assert "c2VjcmV0" not in shown.stdout


def test_copy_into_postgresql(source: Source) -> None:
    with postgres_schema.fresh_schema(postgres_schema.base_url()) as url:
        at = ["--database-url", url, *source.options]
        first = ok("from-acs", *at, connection_string=source.connection_string)
        assert "200 were created" in first.stdout
        copies = roster_copies.postgres_copies(url)  # the roster entries' copies of their rooms
        assert len(copies) == 1000 and roster_copies.stale(copies) == {}
        assert "200 unchanged" in ok("from-acs", *at, connection_string=source.connection_string).stdout
        assert "0 differences" in ok("verify", *at, connection_string=source.connection_string).stdout
