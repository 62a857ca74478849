"""service/ids.py: the room ids this server makes (17 digits, by the time they were made, a fresh draw per forked
worker). The checks of ids a client sends run through the service: test_rooms_service.py."""

from __future__ import annotations

import os
import time

import pytest

from openrooms.service import ids


def test_room_ids_are_17_digits_and_a_forked_worker_draws_its_own() -> None:
    drawn = [ids.new_room_id() for _ in range(2000)]
    assert all(len(room_id) == 17 and room_id.isdigit() and room_id[0] != "0" for room_id in drawn)
    assert len(set(drawn)) == len(drawn)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(writer, ids.new_room_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    in_child = os.read(reader, 64).decode()
    os.close(reader)
    # Without a fresh draw after fork, the child would repeat the parent's next id from the shared buffer.
    assert in_child != ids.new_room_id()


def test_an_id_made_for_a_given_time_sorts_with_the_ids_the_server_made_around_it() -> None:
    # What a bulk loader uses: an id for a room made at a given time, as the generator would have made it then.
    before = time.time_ns()
    drawn = ids.new_room_id()
    after = time.time_ns() + 20_000_000  # the generator may run a window ahead of the clock
    assert ids.room_id_made_at(before, 0) <= drawn <= ids.room_id_made_at(after, 99_999)
    assert ids.room_id_made_at(before - 10_000_000, 99_999) < ids.room_id_made_at(before, 0)
    with pytest.raises(ValueError, match="suffix"):
        ids.room_id_made_at(before, 100_000)


def test_room_ids_sort_by_the_time_they_were_made_and_a_busy_window_never_repeats_one() -> None:
    # The first 12 digits count 10 ms windows: ids made apart in time sort apart, whatever their random digits.
    earlier = ids.new_room_id()
    time.sleep(0.011)
    later = ids.new_room_id()
    assert earlier < later and int(earlier[:12]) < int(later[:12])
    # More ids than half a window's 10**5 suffixes, at once: the draws move on to the next windows, none repeats.
    burst = [ids.new_room_id() for _ in range(120_000)]
    assert len(set(burst)) == len(burst) and all(len(room_id) == 17 for room_id in burst)
    assert len({room_id[:12] for room_id in burst}) >= 3
