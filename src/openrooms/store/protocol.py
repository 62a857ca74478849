"""What a store implements and raises: the service's port (`openrooms.service.ports`), by the names the store
modules use."""

from openrooms.service.ports import (
    AccessKeyStore,
    IdentityStore,
    RoomIdTaken,
    RoomQuery,
    RoomStore,
    RosterFull,
    RosterPage,
    StoreUnavailable,
    UserIdTaken,
)

__all__ = [
    "AccessKeyStore", "IdentityStore", "RoomIdTaken", "RoomQuery", "RoomStore", "RosterFull", "RosterPage",
    "StoreUnavailable", "UserIdTaken",
]
