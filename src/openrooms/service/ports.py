"""The store interface: the port the service reads and writes through. Implementations:
`openrooms.store.sqlite.SqliteStore` (embedded default) and `openrooms.store.postgres.PostgresStore`.

The service owns this interface and the records it carries (`openrooms.service.model`); the stores implement it.
So the service imports nothing from `openrooms.store`, and the store imports only these two modules of the
service: the store sits below the service, and the import graph has no cycle.

Every method is one transaction: it either happens whole or not at all. Methods return plain service
types and raise `StoreUnavailable` when the database cannot be reached; they never know about HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import NamedTuple, Protocol

from openrooms.events.subscriptions import BatchEnd, Claimed, Delivery, DeliveryState, Outcome, Subscription
from openrooms.events.types import NewEvent, StoredEvent
from openrooms.service.model import (
    ROLES,
    CallServer,
    CommunicationUser,
    CreateRecord,
    Participant,
    Role,
    Room,
    SigningKey,
)


class StoreUnavailable(Exception):
    """The database cannot serve the request now (down, locked for too long, disk full, read-only)."""


class RoomIdTaken(Exception):
    """The generated room id was issued before; the caller draws a new one."""


class UserIdTaken(Exception):
    """The generated user id exists already; the caller draws a new one."""


class RosterFull(Exception):
    """`update_participants` would grow a room's roster beyond `max_participants`; nothing was changed."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the roster would have {size} participants")
        self.size = size


class RosterPage(NamedTuple):
    """A page of a roster, in the order of addition."""

    participants: list[Participant]
    # Where the next page starts: the place in the order of addition of the first participant after this page
    # (a later page starts there, or after it if that participant has left since); None for the last page.
    next_start: int | None


# The states of a room's window relative to an instant `now`, as the room queries name them: upcoming
# (valid_from > now), open (valid_from <= now < valid_until), ended (valid_until <= now).
ROOM_STATES = ("upcoming", "open", "ended")


class RoomQuery(NamedTuple):
    """Which rooms a room query lists: those that meet every condition given (None: no such condition)."""

    now: int  # the instant the states are taken at (ticks)
    states: frozenset[str] | None = None  # some of ROOM_STATES: rooms in any of them
    participant: str | None = None  # a raw id: rooms whose roster holds it
    id_prefix: str | None = None  # rooms whose id starts with it


class RosterChange(NamedTuple):
    """What a roster change did, as the store found the roster: who came in, who changed role, who left."""

    added: list[Participant]
    role_changed: list[tuple[str, Role, Role]]  # raw id, before, after
    removed: list[Participant]  # with the roles they had


def roster_change(found: Mapping[str, str], upserts: Mapping[str, Role], removals: Collection[str]) -> RosterChange:
    """What a roster change did, from the roles (`found`, by raw id) of the participants it names as they were
    before it. An id both upserted and removed ends removed."""
    gone = set(removals)
    kept = [(raw_id, role) for raw_id, role in upserts.items() if raw_id not in gone]
    added = [Participant(raw_id, role) for raw_id, role in kept if raw_id not in found]
    changed = [(raw_id, ROLES[found[raw_id]], role) for raw_id, role in kept
               if raw_id in found and found[raw_id] != role.value]
    removed = [Participant(raw_id, ROLES[found[raw_id]]) for raw_id in dict.fromkeys(removals) if raw_id in found]
    return RosterChange(added, changed, removed)


# The events of a change that depends on what the transaction finds (see `service/events.py`); called inside it.
RoomUpdateEvents = Callable[[Room, Room], Sequence[NewEvent]]  # the room before and after
RosterChangeEvents = Callable[[RosterChange], Sequence[NewEvent]]
UserDeletionEvents = Callable[[Sequence[tuple[str, Role]]], Sequence[NewEvent]]  # the rooms left, with the roles


class EventLog(Protocol):
    """The log of events. Each write method of the stores takes the events of its change and appends them in the
    change's own transaction (a change that fails appends none); `append_events` appends events that come with
    no change of the store's (admissions, calls).

    Positions are pairs of integers that only grow in the order events become readable: an event that becomes
    readable later never sorts before one already read, so a reader that goes on from the last position it read
    misses none (SQLite: (0, sequence number), writers take turns; PostgreSQL: (transaction id, sequence
    number), read up to the oldest transaction still writing events)."""

    async def append_events(self, events: Sequence[NewEvent]) -> None: ...

    async def list_events(
        self, after: tuple[int, int] | None, types: Collection[str] | None, room_id: str | None, limit: int
    ) -> list[StoredEvent]:
        """Up to `limit` events after the position `after` (None: from the oldest kept), in the log's order,
        of the given types (None: all) and room (None: any)."""
        ...

    async def latest_events(
        self, types: Collection[str] | None, room_id: str | None, limit: int
    ) -> tuple[list[StoredEvent], tuple[int, int]]:
        """The last `limit` readable events of the given types and room, in the log's order, and the position of
        the last readable event of any kind ((0, 0) when there is none): a reader that goes on from there with the
        same filters misses none and sees none twice. Read from the end of the log, not from its start."""
        ...

    async def purge_events(self, before: int) -> int:
        """Delete the events older than the instant `before` (ticks); return how many. SQLite deletes in the log's
        order, up to the first event that is not older (the log is in time order but for clock differences
        between instances)."""
        ...


class IdentityStore(Protocol):
    """ACS users, the server's resource id and the keys that sign access tokens."""

    async def ensure_resource_id(self, candidate: str) -> str:
        """The stored resource id; `candidate` is stored (and returned) if there is none yet."""
        ...

    async def adopt_resource_id(self, candidate: str, *, write: bool = True) -> str:
        """`candidate` becomes the resource id unless another is stored and the database holds rooms or users
        already; the resource id stored afterwards (`openrooms migrate` adopting the source's). With `write`
        False: what it would be, and nothing is written."""
        ...

    async def get_signing_keys(self) -> list[SigningKey]:
        """Every token signing key, newest first (the first one signs)."""
        ...

    async def ensure_signing_key(self, candidate: SigningKey) -> SigningKey:
        """The newest stored signing key; `candidate` is stored (and returned) if there is none yet."""
        ...

    async def insert_user(self, user: CommunicationUser, events: Sequence[NewEvent] = ()) -> None:
        """Raises `UserIdTaken` if a user with that raw id exists."""
        ...

    async def insert_users(self, users: Sequence[CommunicationUser]) -> int:
        """Insert, in one transaction, the users that do not exist yet; how many were new (`openrooms migrate`
        registering the users it copies)."""
        ...

    async def get_user(self, raw_id: str) -> CommunicationUser | None: ...

    async def revoke_tokens(self, raw_id: str, revoked_before: int, events: Sequence[NewEvent] = ()) -> bool:
        """Record that the user's tokens issued before `revoked_before` are revoked; False if no such user."""
        ...

    async def delete_user(self, raw_id: str, events: UserDeletionEvents | None = None) -> bool:
        """Delete the user and remove it from every room's roster, in one transaction; False if no such user."""
        ...


class AccessKeyStore(Protocol):
    """The access keys that sign API requests, by name ("primary", "secondary"), base64 as in connection
    strings. Servers re-read them every second, so a change reaches every instance without a restart."""

    async def get_access_keys(self) -> dict[str, str]:
        """Every stored key by name; empty if none was stored yet."""
        ...

    async def set_access_keys(
        self, keys: Mapping[str, str], now: int, *, replace: bool = True, events: Sequence[NewEvent] = ()
    ) -> dict[str, str]:
        """Store the given keys in one transaction and return every stored key afterwards. With `replace`
        False, a name that has a key already keeps it (seeding on first start)."""
        ...

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the database answers a trivial query (GET /readyz)."""
        ...


class CallStore(Protocol):
    async def append_events(self, events: Sequence[NewEvent]) -> None:
        """As `EventLog.append_events`: a participant's joining and leaving, which change no stored state."""
        ...

    async def claim_call_server(self, candidate: CallServer, events: Sequence[NewEvent] = ()) -> CallServer:
        """Store `candidate` unless the room has one already; answer the one stored. `events` (the call's start)
        are appended in the same transaction, only when `candidate` went in."""
        ...

    async def get_call_server(self, room_id: str) -> CallServer | None: ...

    async def list_call_rooms(self, now: int, limit: int) -> list[str]:
        """The ids of up to `limit` rooms open at `now` (ticks) with a call server stored (a call in progress),
        in id order."""
        ...

    async def release_call_server(
        self, room_id: str, server_call_id: str, events: Sequence[NewEvent] = ()
    ) -> bool:
        """Forget the room's call server if it is still that call's; True when this call removed it. `events` (the
        call's end) are appended in the same transaction, only when it did."""
        ...

    def listen_changes(self) -> AsyncIterator[str]:
        """The store's change notifications, from any instance: first `""` once listening, then `room:<id>` or
        `user:<raw id>` per change; a store without notifications never yields."""
        ...


class WindowInstant(NamedTuple):
    """A room's window instant that fell due: its opening (`validFrom`) or its closing (`validUntil`)."""

    room_id: str
    closing: bool
    instant: int  # ticks
    valid_from: int
    valid_until: int


WindowEvents = Callable[[Sequence[WindowInstant]], Sequence[NewEvent]]


class WindowStore(Protocol):
    """The time-driven events of the rooms' windows (see store/windows.py)."""

    async def claim_window_instants(self, now: int, events: WindowEvents, limit: int) -> int | None:
        """In one transaction: the instants due since the last claim up to `now` (at most about `limit`), their
        events appended, and the claim's watermark moved past them. Answers how many were claimed, or None when
        another instance's claim holds the watermark right now (PostgreSQL). The first claim ever only sets the
        watermark (to `now`). A claim that answers `limit` or more may have left due instants for the next."""
        ...

    async def next_window_instant(self, after: int) -> int | None:
        """The earliest window instant after `after` of any room (an opening only if after its creation)."""
        ...


class WebhookStore(Protocol):
    """Webhook subscriptions, their delivery queues (one per subscription and room) and dead letters; see
    `openrooms.events.subscriptions`. Leases are until an instant in ticks, owned by a name per dispatcher."""

    async def insert_subscription(self, subscription: Subscription) -> Subscription:
        """Store it, its cursor at the log's end now (it gets the events after); answer it with that cursor."""
        ...

    async def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    async def list_subscriptions(self) -> list[Subscription]:
        """Every subscription, oldest first."""
        ...

    async def update_subscription(self, subscription: Subscription) -> bool:
        """Replace its endpoint, types, room, schema, secret and `updated_at`; False if no such subscription."""
        ...

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Delete it with its deliveries, queued and dead; False if no such subscription."""
        ...

    async def lease_subscription(self, subscription_id: str, owner: str, now: int, lease_until: int,
                                 replacing: str | None = None) -> bool:
        """Lease the subscription to `owner` until `lease_until` if `owner` holds it already, no live lease does
        (expired at `now`), or `replacing` (a holder known to be gone) does; False (and nothing done) if another
        dispatcher's lease is live or the subscription is gone."""
        ...

    async def parked_rooms(self, subscription_id: str) -> set[str]:
        """The room keys of the subscription's queues with a pending delivery: their new events queue behind.
        Reads the pending deliveries only (an index of them), however many dead letters the subscription has."""
        ...

    async def finish_batch(self, batch: BatchEnd) -> bool:
        """In one transaction, if `batch.owner` holds the subscription's lease and its cursor is still
        `batch.expected`: move the cursor to `batch.cursor`, keep the lease until `batch.lease_until`, record the
        batch's successes and failures, and queue `batch.parked` (in their order, behind what their rooms have
        queued; each queue due when its first pending delivery is). False, and nothing done, otherwise."""
        ...

    async def claim_deliveries(self, owner: str, now: int, lease_until: int, limit: int,
                               replacing: Collection[str] = ()) -> Claimed:
        """Lease up to `limit` queues that are due and that no live lease holds but one of `replacing` (holders
        known to be gone), and answer the first pending delivery of each, with when the next queue is due once
        they are leased (what `next_due` would answer then, in the same transaction)."""
        ...

    async def queue_holders(self, now: int) -> set[str]:
        """The holders of the live leases of queues due at `now`, among the queues `next_due` looks at: the
        holders a dispatcher may find gone, to name them as `replacing` to a claim."""
        ...

    async def finish_delivery(self, delivery: Delivery, owner: str, outcome: Outcome, now: int,
                              lease_until: int) -> Delivery | None:
        """Record an attempt's outcome (delivered: the delivery is deleted; else retried or dead-lettered) and
        the subscription's state; then, if `owner` still holds the queue's lease, the queue's next delivery if it
        is due (the lease kept until `lease_until`), else None (the lease let go)."""
        ...

    async def next_due(self) -> int | None:
        """When the next queue is due (ticks), leased or not, among the first few hundred by their next attempt (a
        dispatcher's poll finds the rest); None if no delivery is pending."""
        ...

    async def delivery_states(self) -> dict[str, DeliveryState]:
        """Every subscription's delivery state, by id."""
        ...

    async def list_dead_letters(self, subscription_id: str, limit: int) -> list[Delivery]:
        """Up to `limit` of the subscription's dead-lettered deliveries, in the log's order."""
        ...

    async def redeliver(self, subscription_id: str, seqs: Collection[int] | None, now: int) -> int:
        """Queue the given dead-lettered deliveries (None: every one) again, due at `now`; how many."""
        ...

    def listen_events(self) -> AsyncIterator[None]:
        """Once listening, then once per commit that appended events (PostgreSQL: from any instance, through
        LISTEN/NOTIFY; SQLite: of this process). Ends when the connection it listens on fails."""
        ...


class ConsoleSessionRecord(NamedTuple):
    """A web console session as stored: never its token, only the token's hash (`service.console_sessions`)."""

    token_hash: str  # SHA-256 of the session token, hex
    kind: str  # how its principal signed in: "access-key" or "oidc"
    principal: str  # the principal's name, as the console shows it
    key_id: str | None  # access-key sessions: the fingerprint of the key signed in with; else None
    created_at: int  # seconds since the epoch
    expires_at: int  # seconds since the epoch


class ConsoleSessionStore(Protocol):
    """The web console's sessions and its failed sign-ins per client address, shared by every worker and instance
    on one database. Times are seconds since the epoch."""

    async def insert_console_session(self, session: ConsoleSessionRecord) -> None: ...

    async def get_console_session(self, token_hash: str) -> ConsoleSessionRecord | None:
        """The session with that token hash (expired or not), by its primary key."""
        ...

    async def delete_console_session(self, token_hash: str) -> bool:
        """End the session; False if there was none."""
        ...

    async def get_sign_in_failures(self, client: str) -> tuple[int, int] | None:
        """The client's failed sign-ins: (failures, start of their window), or None if none is stored."""
        ...

    async def add_sign_in_failure(self, client: str, now: int, window: int) -> None:
        """Count a failed sign-in of `client` (one statement): one more in its window, or the first of a new window
        starting at `now` if its window started `window` seconds ago or more."""
        ...

    async def sweep_console(self, now: int, window: int) -> tuple[int, int]:
        """Delete the sessions expired by `now` and the failed sign-ins whose window started `window` seconds ago
        or more; answer how many of each."""
        ...


class RoomStore(IdentityStore, AccessKeyStore, EventLog, CallStore, WindowStore, WebhookStore, ConsoleSessionStore,
                Protocol):
    async def close(self) -> None: ...

    async def insert_room(
        self, room: Room, participants: Sequence[Participant], record: CreateRecord | None,
        events: Sequence[NewEvent] = (),
    ) -> CreateRecord | None:
        """Insert a room with its roster (and the idempotency record of the create, if any).

        Raises `RoomIdTaken` if the id was ever issued before, even to a deleted room. If `record`'s request
        id is already stored, nothing is inserted and the stored record is returned; otherwise None.
        """
        ...

    async def get_create_record(self, request_id: str) -> CreateRecord | None: ...

    async def get_room(self, room_id: str) -> Room | None: ...

    async def update_room(
        self, room_id: str, window: tuple[int, int] | None, pstn_dial_out_enabled: bool | None,
        events: RoomUpdateEvents | None = None,
    ) -> Room | None:
        """Apply the given changes (None: unchanged) and return the room after them; None if no such room."""
        ...

    async def delete_room(self, room_id: str, events: Sequence[NewEvent] = ()) -> bool: ...

    async def list_rooms(self, valid_after: int, after: tuple[int, str] | None, limit: int) -> list[Room]:
        """Rooms with `valid_until` > `valid_after`, newest `created_at` first then id descending, strictly
        after the `(created_at, id)` keyset cursor."""
        ...

    async def query_rooms(self, query: RoomQuery, after: tuple[int, str] | None, limit: int) -> list[Room]:
        """Up to `limit` rooms that match `query`, by `valid_from` then id, strictly after the `(valid_from, id)`
        keyset cursor `after` (None: from the first). Every room stored counts, ended ones too, until purged."""
        ...

    async def count_rooms(self, query: RoomQuery, limit: int) -> int:
        """How many rooms match `query`, counted up to `limit`: `limit` means that many or more. Read along the
        same index as the query's pages until `limit` match (rooms of other states on the way are read too)."""
        ...

    async def list_participants(self, room_id: str, start: int, limit: int) -> RosterPage | None:
        """Up to `limit` of a room's participants in the order they were added, from place `start` in that order
        (0: the first); None if no such room.

        Each participant added to a room takes the next place in it (the participants of one create or roster
        change in the order given); a role change keeps the place, and a participant removed and added again
        takes a new one. Places only grow, so a listing that goes on from a page's `next_start` sees every
        participant still there exactly once, whatever was added or removed in between.
        """
        ...

    async def get_participant(self, room_id: str, raw_id: str) -> Participant | None:
        """One roster entry; None if the room has no such participant (or there is no such room)."""
        ...

    async def update_participants(
        self, room_id: str, upserts: Mapping[str, Role], removals: Collection[str],
        max_participants: int | None = None, events: RosterChangeEvents | None = None,
    ) -> bool:
        """Upsert and remove in one transaction; False (and nothing changed) if no such room. The participants
        `upserts` adds take their places in its order.

        With `max_participants`: if the change would leave the room with more participants than that AND
        more than it had before, raise `RosterFull(size after the change)` and change nothing (a roster that
        is over a lowered limit can still shrink). The count is taken inside the transaction, so that
        concurrent additions cannot together overshoot the limit.
        """
        ...

    async def purge(self, rooms_valid_before: int, records_created_before: int) -> tuple[int, int]:
        """Delete rooms whose window ended before the first instant, and idempotency records older than the
        second; return how many of each."""
        ...
