"""The room queries' SQL (`RoomStore.query_rooms`), written once for both stores: rooms by the start of their window
then id, read along the index `rooms_by_valid_from` (migrations 0008 and 0011: it holds every column of a room, so
a page is read from the index alone) or, by participant, from the participant's entries in the roster index (then
looked up by id and sorted: a participant's rooms are few next to all of them).

A condition on the states bounds the index range where it can: upcoming rooms start after `now`, and open and
ended ones at or before it (a window never ends before it starts), so the scan starts or stops there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openrooms.service.ports import ROOM_STATES, RoomQuery

# A placeholder for the named parameter and its SQL type, in the store's own style.
Placeholder = Callable[[str, str], str]

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
    """The statement of a page of `query` and its parameters."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    states = _STATES.get(query.states or frozenset(ROOM_STATES))
    if states is not None:
        where.append(states.format(now=placeholder("now", "bigint")))
        params["now"] = query.now
    if query.participant is not None:
        where.append(f"id IN (SELECT room_id FROM participants WHERE raw_id = {placeholder('participant', 'text')})")
        params["participant"] = query.participant
    if query.id_prefix:
        # The ids that start with the prefix, as a range of the primary key (ids compare byte-wise in both stores).
        where.append(f"id >= {placeholder('prefix', 'text')} AND id < {placeholder('prefix_end', 'text')}")
        params["prefix"] = query.id_prefix
        params["prefix_end"] = query.id_prefix[:-1] + chr(ord(query.id_prefix[-1]) + 1)
    if after is not None:
        where.append(f"(valid_from, id) > ({placeholder('after_from', 'bigint')}, {placeholder('after_id', 'text')})")
        params["after_from"], params["after_id"] = after
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    statement = (f"SELECT {columns} FROM rooms {condition}ORDER BY valid_from, id "
                 f"LIMIT {placeholder('limit', 'bigint')}")
    return statement, params
