"""How both stores keep the room of an idempotent create (`CreateRecord.room`): the `created_room` column holds
its values but the id, as a MessagePack array `[created_at, valid_from, valid_until, pstn_dial_out_enabled]`.
"""

from __future__ import annotations

import msgspec

from openrooms.service.model import Room

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(tuple[int, int, int, bool])


def created_room_value(room: Room) -> bytes:
    return _ENCODER.encode((room.created_at, room.valid_from, room.valid_until, room.pstn_dial_out_enabled))


def created_room(room_id: str, value: bytes) -> Room:
    return Room(room_id, *_DECODER.decode(value))
