"""Every api-version openrooms speaks, and what differs between them. The one place that knows versions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from openrooms.service import errors
from openrooms.service.model import Role

_BASE_ROLES = (Role.PRESENTER, Role.ATTENDEE, Role.CONSUMER)


@dataclass(frozen=True, slots=True)
class ApiVersion:
    name: str
    # Rooms: whether rooms carry pstnDialOutEnabled, and which roles a request may name.
    pstn_dial_out: bool = False
    roles: tuple[Role, ...] = ()
    # The room list's queries (openrooms extension): `participant`, `state`, `idPrefix`, `orderby` (docs/rooms.md).
    room_queries: bool = False


@dataclass(frozen=True, slots=True)
class ApiFamily:
    title: str
    path_prefixes: tuple[str, ...]
    versions: tuple[ApiVersion, ...]
    # Set: the family owns only the paths under its prefixes that end with this (an action like `:join`).
    path_suffix: str | None = None
    # Set: the family owns only the paths that match this (e.g. a room's call and its actions).
    path_pattern: str | None = None
    # Set: the family owns only requests of these methods.
    methods: tuple[str, ...] | None = None
    # The family owns a request only at its own api-versions; at any other, the next family that owns the path does.
    by_version: bool = False
    supported: str = field(init=False, compare=False)  # the versions, as the api-supported-versions header lists them
    supported_header: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, ApiVersion] = field(init=False, repr=False, compare=False)
    _under: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        supported = ", ".join(v.name for v in self.versions)
        object.__setattr__(self, "supported", supported)
        object.__setattr__(self, "supported_header", (b"api-supported-versions", supported.encode()))
        object.__setattr__(self, "_by_name", {v.name.lower(): v for v in self.versions})
        object.__setattr__(self, "_under", tuple(prefix + "/" for prefix in self.path_prefixes))

    def owns(self, path: str) -> bool:
        if self.path_pattern is not None and re.fullmatch(self.path_pattern, path) is None:
            return False
        if self.path_suffix is not None and not path.endswith(self.path_suffix):
            return False
        return path.startswith(self._under) or path in self.path_prefixes

    def claims(self, path: str, method: str | None, requested: str | None) -> bool:
        """Whether the family answers a request of `method` on `path` at the api-version `requested`."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.by_version and (not requested or _normalise(requested) not in self._by_name):
            return False
        return self.owns(path)

    def resolve(self, requested: str | None) -> ApiVersion:
        if not requested:
            raise errors.missing_api_version(self.title, self.supported)
        version = self._by_name.get(_normalise(requested))
        if version is None:
            raise errors.unsupported_api_version(requested, self.title, self.supported)
        return version


def _normalise(requested: str) -> str:
    # The Python Rooms SDK on Python 3.11 follows nextLink with the str() of its enum:
    # `ApiVersion.V2025_03_13` means 2025-03-13.
    if requested.startswith("ApiVersion.V"):
        requested = requested.removeprefix("ApiVersion.V").replace("_", "-")
    return requested.lower()


ROOMS = ApiFamily(
    "Rooms",
    ("/rooms",),
    (
        ApiVersion("2023-03-31-preview", roles=_BASE_ROLES),
        ApiVersion("2023-06-14", roles=_BASE_ROLES),
        ApiVersion("2023-10-30-preview", pstn_dial_out=True, roles=_BASE_ROLES),
        ApiVersion("2024-04-15", pstn_dial_out=True, roles=_BASE_ROLES),
        ApiVersion("2025-02-28-preview", pstn_dial_out=True, roles=(*_BASE_ROLES, Role.COLLABORATOR)),
        ApiVersion("2025-03-13", pstn_dial_out=True, roles=(*_BASE_ROLES, Role.COLLABORATOR)),
    ),
)
ROOMS_GA = ("2023-06-14", "2024-04-15", "2025-03-13")

IDENTITY = ApiFamily(
    "Identity",
    ("/identities", "/teamsUser"),
    (ApiVersion("2023-10-01"), ApiVersion("2025-06-30")),
)

# openrooms' own extension: admission to a room's call (`POST /rooms/{roomId}:join`, see docs/admission.md).
# Its versions are ours alone, so that the Rooms versions stay exactly the published ones.
ADMISSION = ApiFamily(
    "Admission (openrooms extension)",
    ("/rooms",),
    (ApiVersion("2026-11-01-openrooms"),),
    path_suffix=":join",
)

# openrooms' own extension too: a room's call (`/rooms/{roomId}/call...`, see docs/calls.md), same version.
CALLS = ApiFamily(
    "Calls (openrooms extension)",
    ("/rooms",),
    ADMISSION.versions,
    path_pattern=r"/rooms/[^/]+/call(?::end|/ws|/participants/[^/]+)?",
)

# openrooms' own extension: the event log (`GET /events`, see docs/events.md).
EVENTS = ApiFamily(
    "Events (openrooms extension)",
    ("/events",),
    ADMISSION.versions,
)

# openrooms' own extension: the room list's queries (`GET /rooms?participant=...&state=...`, see docs/rooms.md), at
# the extension's version only. At the Rooms versions, the list is exactly ACS's (a query parameter it does not know
# is ignored, as ever).
ROOM_QUERIES = ApiFamily(
    "Room queries (openrooms extension)",
    ("/rooms",),
    (ApiVersion(ADMISSION.versions[0].name, pstn_dial_out=True, roles=(*_BASE_ROLES, Role.COLLABORATOR),
                room_queries=True),),
    path_pattern=r"/rooms",
    methods=("GET",),
    by_version=True,
)

# The first family that claims a request answers for it: the narrower extension families before Rooms.
FAMILIES = (ADMISSION, CALLS, ROOM_QUERIES, ROOMS, IDENTITY, EVENTS)


def family_for_path(path: str, method: str | None = None, requested: str | None = None) -> ApiFamily | None:
    """The family that answers a request of `method` on `path` at the api-version `requested` (without them: the
    family that owns the path for any method and version)."""
    for family in FAMILIES:
        if family.claims(path, method, requested):
            return family
    return None
