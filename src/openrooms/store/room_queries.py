"""The room queries' SQL (`RoomStore.query_rooms`), written once for both stores: rooms by the start of their window
then id, each page read in that order from one index, with no lookup of each room in the table.

- All rooms, or by state or id prefix: along `rooms_by_valid_from` (migrations 0008 and 0011), which holds every
  column of a room.
- By participant: along the participant's entries of the roster index `participants_rooms_by_valid_from`
  (migration 0014). Each roster entry holds a copy of its room's row, which every write of the room keeps equal
  to it in the same transaction, and that index orders a participant's entries by the start of the window, then
  the room's id, and holds the rest: the page is the first entries of the participant that meet the conditions.
  (Looked up in `rooms` instead, a participant's rooms lie anywhere in the table: one random read per room, four
  times a page of all rooms at a million of them.)

A condition on the states bounds the index range where it can: upcoming rooms start after `now`, and open and
ended ones at or before it (a window never ends before it starts), so the scan starts or stops there; the end of
the window is in the index, so the rooms of other states are skipped there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openrooms.service.ports import ROOM_STATES, RoomQuery

# A placeholder for the named parameter and its SQL type, in the store's own style.
Placeholder = Callable[[str, str], str]

# The columns of a room that its roster entries copy, under the same names (a roster entry's room id is `room_id`).
COPIED_COLUMNS = ("created_at", "valid_from", "valid_until", "pstn_dial_out_enabled")

_STATES: dict[frozenset[str], str] = {
    frozenset({"upcoming"}): "valid_from > {now}",
    frozenset({"open"}): "valid_from <= {now} AND valid_until > {now}",
    frozenset({"ended"}): "valid_from <= {now} AND valid_until <= {now}",
    frozenset({"upcoming", "open"}): "valid_until > {now}",
    frozenset({"open", "ended"}): "valid_from <= {now}",
    frozenset({"upcoming", "ended"}): "(valid_from > {now} OR valid_until <= {now})",
}


def room_query(
    columns: str, query: RoomQuery, after: tuple[int, str] | None, limit: int, placeholder: Placeholder
) -> tuple[str, dict[str, Any]]:
    """The statement of a page of `query` and its parameters; `columns` are columns of `rooms`, selected under
    their names."""
    # By participant, the same conditions on the participant's roster entries, whose room id is `room_id`.
    table, room_id = ("rooms", "id") if query.participant is None else ("participants", "room_id")
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if query.participant is not None:
        where.append(f"raw_id = {placeholder('participant', 'text')}")
        params["participant"] = query.participant
    states = _STATES.get(query.states or frozenset(ROOM_STATES))
    if states is not None:
        where.append(states.format(now=placeholder("now", "bigint")))
        params["now"] = query.now
    if query.id_prefix:
        # The ids that start with the prefix, as a range of the primary key (ids compare byte-wise in both stores).
        where.append(f"{room_id} >= {placeholder('prefix', 'text')} "
                     f"AND {room_id} < {placeholder('prefix_end', 'text')}")
        params["prefix"] = query.id_prefix
        params["prefix_end"] = query.id_prefix[:-1] + chr(ord(query.id_prefix[-1]) + 1)
    if after is not None:
        where.append(f"(valid_from, {room_id}) > ({placeholder('after_from', 'bigint')}, "
                     f"{placeholder('after_id', 'text')})")
        params["after_from"], params["after_id"] = after
    if query.participant is not None:
        columns = ", ".join(_copied(column.strip()) for column in columns.split(","))
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    statement = (f"SELECT {columns} FROM {table} {condition}ORDER BY valid_from, {room_id} "
                 f"LIMIT {placeholder('limit', 'bigint')}")
    return statement, params


# The rooms open now with a call server stored (`RoomStore.list_call_rooms`): a call in progress. {now} and {limit}
# are the store's placeholders.
# Read along the call table's key (a row per call in progress) with one lookup of each room by its key, however
# many rooms there are.
CALL_ROOMS = ("SELECT c.room_id FROM call_servers c WHERE EXISTS (SELECT 1 FROM rooms r WHERE r.id = c.room_id "
              "AND r.valid_from <= {now} AND r.valid_until > {now}) ORDER BY c.room_id LIMIT {limit}")


def room_count(query: RoomQuery, limit: int, placeholder: Placeholder) -> tuple[str, dict[str, Any]]:
    """The statement that counts the rooms of `query`, up to `limit` of them, and its parameters."""
    statement, params = room_query("id", query, None, limit, placeholder)
    return f"SELECT count(*) FROM ({statement}) AS counted", params


def _copied(column: str) -> str:
    """A column of `rooms` as its copy in `participants`, under the name of the room's."""
    if column == "id":
        return "room_id AS id"
    if column not in COPIED_COLUMNS:
        raise ValueError(f"participants hold no copy of rooms.{column}")
    return column
