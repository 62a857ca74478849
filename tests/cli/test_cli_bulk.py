"""Bulk work through the real command: a large roster from a CSV file, and export/import between servers."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli, roster_of
from tests.support import Server, running_server, user_id

ROLES = ["Presenter", "Attendee", "Consumer", "Collaborator"]


def test_create_with_a_large_roster_file(cli: Cli, sdk: Any, tmp_path: Path) -> None:
    expected = {user_id(1000 + n): ROLES[n % 4] for n in range(1234)}  # three parts of at most 500
    lines = ["rawId,role", "# a comment line", ""]
    lines += [f"{raw_id},{role.lower() if n % 3 else role}" for n, (raw_id, role) in enumerate(expected.items())]
    lines.append(f"{user_id(9999)},")  # no role: Attendee
    expected[user_id(9999)] = "Attendee"
    roster = tmp_path / "roster.csv"
    roster.write_text("\n".join(lines) + "\n")

    room = cli.json("rooms", "create", "--participants-file", str(roster),
                    "--presenter-participants", user_id(1001))  # the flags win over the file
    expected[user_id(1001)] = "Presenter"
    assert roster_of(sdk, room["id"]) == expected
    assert len(cli.json("rooms", "participant", "get", "--room", room["id"])) == len(expected)


def test_a_refused_part_of_the_roster_leaves_no_room(cli: Cli, sdk: Any, tmp_path: Path) -> None:
    lines = [f"{user_id(2000 + n)},Attendee" for n in range(700)]
    lines[600] = "8:acs:123456c,Attendee"  # in the second part: the room exists by then
    roster = tmp_path / "roster.csv"
    roster.write_text("\n".join(lines))
    before = {room.id for room in sdk.list_rooms()}
    stderr = cli.fails("rooms", "create", "--participants-file", str(roster))
    assert "Communication identifier 8:acs:123456c is not supported." in stderr
    assert {room.id for room in sdk.list_rooms()} == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("rawId,role\n8:acs:x,Kafka\n", "roster.csv:2: expected `rawId,role` with a role among"),
        ("8:acs:x,Presenter,extra\n", "roster.csv:1: expected `rawId,role`"),
    ],
)
def test_roster_file_errors(cli: Cli, tmp_path: Path, content: str, message: str) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(content)
    assert message in cli.fails("rooms", "create", "--participants-file", str(roster), code=2)


def test_missing_roster_file(cli: Cli, tmp_path: Path) -> None:
    assert "No such file or directory" in cli.fails("rooms", "create", "--participants-file", str(tmp_path / "no.csv"),
                                         code=2)


# --- export / import --------------------------------------------------------------------------

# Three pages of the servers' page size each way (and the roster sizes, windows and flags below, mixed).
ROOM_COUNT = 300


@pytest.fixture(scope="module")
def big_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    flags = ("--in-memory", "--page-size", str(ROOM_COUNT // 3), "--silent")
    with running_server(tmp_path_factory.mktemp("export-a"), *flags) as first, \
            running_server(tmp_path_factory.mktemp("export-b"), *flags, tls=False) as second:
        yield first, second


def generated_rooms(count: int) -> list[dict[str, Any]]:
    """Rooms with varied windows (down to 100 ns), flags and rosters, as `rooms export` writes them."""
    generator = random.Random(20261121)
    now = datetime.now(UTC)
    rooms = []
    for n in range(count):
        start = now + timedelta(days=generator.uniform(-30, 60))
        end = max(start, now + timedelta(days=2)) + timedelta(days=generator.uniform(0, 100))
        ticks = generator.randrange(1, 10)  # a seventh fractional digit Python's datetime cannot hold
        roster_size = generator.choice([0, 0, 1, 3, 12])
        rooms.append({
            "id": f"old-{n}",
            "createdAt": "2020-01-01T00:00:00+00:00",
            "validFrom": start.isoformat().replace("+00:00", f"{ticks}+00:00") if start.microsecond
            else start.isoformat(),
            "validUntil": end.replace(microsecond=0).isoformat(),
            "pstnDialOutEnabled": generator.random() < 0.3,
            "participants": [{"rawId": user_id(generator.randrange(100_000)), "role": generator.choice(ROLES)}
                             for _ in range(roster_size)],
        })
    for room in rooms:  # one rawId once per room
        room["participants"] = list({p["rawId"]: p for p in room["participants"]}.values())
    return rooms


def comparable(room: dict[str, Any]) -> tuple[Any, ...]:
    """A room apart from what the server makes (id, createdAt); rosters in any order."""
    return (room["validFrom"], room["validUntil"], room["pstnDialOutEnabled"],
            sorted((p["rawId"], p["role"]) for p in room["participants"]))


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_and_import_round_trip(big_servers: tuple[Server, Server], tmp_path: Path) -> None:
    first, second = Cli(big_servers[0]), Cli(big_servers[1])
    source = generated_rooms(ROOM_COUNT)
    source_file = tmp_path / "source.jsonl"
    source_file.write_text("".join(json.dumps(room) + "\n" for room in source))

    # Fill the first server through the command itself.
    mapping = first.json("rooms", "import", "--file", str(source_file), "--concurrency", "16")
    assert [pair["oldId"] for pair in mapping] == [room["id"] for room in source]
    first_ids = {pair["oldId"]: pair["newId"] for pair in mapping}
    assert len(set(first_ids.values())) == ROOM_COUNT

    exported = tmp_path / "first.jsonl"
    result = first.run("rooms", "export", "--file", str(exported))
    assert result.returncode == 0, result.stderr
    assert f"exported {ROOM_COUNT} rooms" in result.stderr
    first_rooms = {room["id"]: room for room in read_lines(exported)}
    assert set(first_rooms) == set(first_ids.values())
    for room in source:  # the import kept every field exactly
        assert comparable(first_rooms[first_ids[room["id"]]]) == comparable(room)

    # Through stdin into a plain-HTTP server, and back out through stdout.
    second_mapping = second.json("rooms", "import", "--file", "-", stdin=exported.read_text())
    second_ids = {pair["oldId"]: pair["newId"] for pair in second_mapping}
    assert set(second_ids) == set(first_rooms)
    second_rooms = {room["id"]: room for room in map(json.loads, second.ok("rooms", "export").splitlines())}
    assert len(second_rooms) == ROOM_COUNT
    for old_id, room in first_rooms.items():
        copy = second_rooms[second_ids[old_id]]
        assert list(copy) == list(room)
        assert comparable(copy) == comparable(room)


def test_import_reports_refused_rooms_and_imports_the_rest(cli: Cli, sdk: Any, tmp_path: Path) -> None:
    good = generated_rooms(2)
    past = {**good[0], "id": "expired", "validFrom": "2020-01-01T00:00:00+00:00",
            "validUntil": "2020-02-01T00:00:00+00:00"}
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join(json.dumps(room) for room in [good[0], past, good[1]]) + "\n")
    result = cli.run("rooms", "import", "--file", str(source))
    assert result.returncode == 1
    assert "error: room expired: BadRequest" in result.stderr and "The time range end is in the past." in result.stderr
    assert "1 of 3 rooms were not imported" in result.stderr
    mapping = json.loads(result.stdout)
    assert [pair["oldId"] for pair in mapping] == [good[0]["id"], good[1]["id"]]
    for pair, room in zip(mapping, good, strict=True):
        assert sdk.get_room(pair["newId"]).valid_until == room["validUntil"]
        assert roster_of(sdk, pair["newId"]) == {p["rawId"]: p["role"] for p in room["participants"]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "bad.jsonl:1: not JSON"),
        ('{"id": "a", "validFrom": "x"}\n', "bad.jsonl:1: needs string id, validFrom and validUntil"),
        ('\n[1, 2]\n', "bad.jsonl:2: expected a JSON object per line"),
        ('{"id": "a", "validFrom": "x", "validUntil": "y", "participants": [{"rawId": "8:acs:a", "role": "Boss"}]}\n',
         "bad.jsonl:1: bad participant"),
    ],
)
def test_import_checks_the_whole_file_first(cli: Cli, sdk: Any, tmp_path: Path, content: str,
                                            message: str) -> None:
    valid = json.dumps(generated_rooms(1)[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content + valid + "\n")
    before = {room.id for room in sdk.list_rooms()}
    assert message in cli.fails("rooms", "import", "--file", str(bad), code=2)
    assert {room.id for room in sdk.list_rooms()} == before  # not even the valid line was imported


def test_import_table_output(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps(generated_rooms(1)[0]) + "\n")
    table = cli.ok("rooms", "import", "--file", str(source), "-o", "table")
    assert "oldId" in table and "newId" in table and "old-0" in table
