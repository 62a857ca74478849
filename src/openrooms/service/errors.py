"""The error catalogue: one named constructor per error the service can answer.

Errors are data (status, code, message, target, details); the HTTP layer turns them into the ACS error
envelope in exactly one place (`openrooms.http.errors`). Messages are the real service's, word for word,
where the real service is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MALFORMED_REQUEST = "The request could not be understood by the server due to malformed syntax."


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    code: str
    message: str
    target: str | None = None


@dataclass(slots=True)
class ServiceError(Exception):
    status: int
    code: str
    message: str
    target: str | None = None
    details: Sequence[ErrorDetail] = field(default_factory=tuple)
    headers: dict[str, str] = field(default_factory=dict)
    # An ACS call-end sub-code (`CallEndReason.subCode`) for refusals of a room call (see docs/admission.md).
    call_end_sub_code: int | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def bad_request(message: str, target: str | None = None) -> ServiceError:
    return ServiceError(400, "BadRequest", message, target)


def bad_arguments(*details: ErrorDetail) -> ServiceError:
    """The real service's envelope for argument errors: a generic message, the specifics in details."""
    return ServiceError(400, "BadRequest", MALFORMED_REQUEST, details=details)


def bad_argument(message: str, target: str | None) -> ErrorDetail:
    return ErrorDetail("BadArgument", message, target)


# Validity window -------------------------------------------------------------------------------------------
def valid_until_in_past() -> ErrorDetail:
    return bad_argument("The time range end is in the past.", "ValidUntil")


def time_range_incorrect() -> ErrorDetail:
    return bad_argument("The time range is incorrect, or larger than 180 days.", "ValidUntil")


def valid_from_too_far() -> ErrorDetail:
    return bad_argument("Value is incorrect or more than 180 days in the future.", "ValidFrom")


def window_bounds_not_together() -> ErrorDetail:
    return bad_argument("validFrom and validUntil should be set together.", "")


# Rooms and participants ------------------------------------------------------------------------------------
def invalid_identifier_format() -> ServiceError:
    return bad_request("Invalid format for communication identifier.")


def identifier_not_supported(raw_id: str) -> ServiceError:
    return bad_request(f"Communication identifier {raw_id} is not supported.")


def invalid_role(raw_id: str, valid_roles: Sequence[str]) -> ServiceError:
    return bad_arguments(
        bad_argument(
            f"Invalid participant role. The valid roles are: {', '.join(valid_roles)}.",
            f"$.participants.{raw_id}.role",
        )
    )


def invalid_room_id_length() -> ServiceError:
    return bad_request("Invalid room ID length.")


def invalid_room_id() -> ServiceError:
    return bad_request("Invalid room ID.")


def not_found() -> ServiceError:
    return ServiceError(404, "NotFound", "The server cannot find the requested resource.")


def invalid_page_token() -> ServiceError:
    return bad_request("The continuation token (skipToken) is invalid or has expired; list again from the start.",
                       "skipToken")


# Idempotent create -----------------------------------------------------------------------------------------
def repeatability_conflict(request_id: str) -> ServiceError:
    return ServiceError(
        409,
        "RepeatabilityConflict",
        f"Repeatability-Request-ID {request_id} was already used for a different request.",
        "Repeatability-Request-ID",
        headers={"Repeatability-Result": "rejected"},
    )


def repeatability_expired(request_id: str, window_seconds: int) -> ServiceError:
    return ServiceError(
        400,
        "BadRequest",
        f"Repeatability-First-Sent of request {request_id} is older than the {window_seconds // 3600}-hour "
        "window in which repeated requests are recognised; send it as a new request with a new "
        "Repeatability-Request-ID.",
        "Repeatability-First-Sent",
        headers={"Repeatability-Result": "rejected"},
    )


# Infrastructure --------------------------------------------------------------------------------------------
def store_unavailable(reason: str) -> ServiceError:
    return ServiceError(503, "ServiceUnavailable", f"The room store is unavailable: {reason}. Retry later.",
                        headers={"Retry-After": "1"})


# Identities and access tokens ------------------------------------------------------------------------------
def validation_error(message: str, target: str) -> ServiceError:
    return ServiceError(400, "ValidationError", message, target)


def expires_in_minutes_out_of_range(value: int, low: int, high: int) -> ServiceError:
    return validation_error(
        f"ExpiresInMinutes value {value} is invalid. Value must be within the [{low}, {high}] interval.",
        "ExpiresInMinutes",
    )


def scopes_required(field_name: str) -> ServiceError:
    return validation_error(f"{field_name}: The {field_name} field is required.", field_name)


def scopes_empty(field_name: str) -> ServiceError:
    return validation_error(f"{field_name}: At least one scope is required.", field_name)


def issue_scopes_empty() -> ServiceError:
    """`{"scopes": []}` on issue: the real service's words, which differ from those for a missing `scopes`."""
    return validation_error("Invalid scopes - Scopes field is required.", "scopes")


def unknown_scopes(field_name: str, names: Sequence[str], valid: Sequence[str]) -> ServiceError:
    quoted = ", ".join(f"'{name}'" for name in names)
    return validation_error(
        f"{field_name}: {quoted} {'is not a valid scope' if len(names) == 1 else 'are not valid scopes'}. "
        f"Valid scopes: {', '.join(valid)}.",
        field_name,
    )


def invalid_user_id(raw_id: str) -> ServiceError:
    return bad_request(
        f"'{raw_id}' is not a communication user identifier; expected 8:acs:<resource id>_<user id>.", "id"
    )


def identity_not_found(raw_id: str) -> ServiceError:
    return ServiceError(404, "IdentityNotFound", f"Identity {raw_id} does not exist (or was deleted).", "id")


def identity_not_owned() -> ServiceError:
    """A well-formed user id of another ACS resource (or another cloud's): 401, without a target, as recorded."""
    return ServiceError(401, "IdentityNotOwned", "Provided identity doesn't belong to the resource.")


def teams_token_exchange_unavailable() -> ServiceError:
    return ServiceError(
        501,
        "NotSupported",
        "Teams token exchange is not available in openrooms: exchanging a Teams user's Microsoft Entra ID token "
        "needs Entra ID and Teams. Create users with POST /identities and issue their tokens instead.",
    )


def invalid_access_token(reason: str) -> ServiceError:
    return ServiceError(401, "InvalidAccessToken", f"The access token is not valid: {reason}.")


# Limits ----------------------------------------------------------------------------------------------------
def too_many_participants_in_request(count: int, limit: int) -> ServiceError:
    return bad_arguments(
        ErrorDetail(
            "TooManyParticipants",
            f"The request names {count} participants; one request may name at most {limit}. "
            "Send the roster in several requests.",
            "participants",
        )
    )


def room_roster_full(size: int, limit: int) -> ServiceError:
    return bad_arguments(
        ErrorDetail(
            "TooManyParticipants",
            f"The change would give the room {size} participants; a room may have at most {limit}.",
            "participants",
        )
    )


def body_nested_too_deeply() -> ServiceError:
    return bad_arguments(bad_argument("The body is not valid JSON: it is nested too deeply.", "$"))


def too_many_requests(operation: str, retry_after_seconds: int) -> ServiceError:
    return ServiceError(
        429,
        "TooManyRequests",
        f"Too many {operation} requests with this access key; retry after {retry_after_seconds} seconds.",
        headers={"Retry-After": str(retry_after_seconds)},
    )


# Admission to a room's call (openrooms extension) -----------------------------------------------------------
def admission_bearer_missing() -> ServiceError:
    return ServiceError(
        401,
        "InvalidAccessToken",
        "The access token is not valid: joining a room needs the user's ACS access token as "
        "'Authorization: Bearer <token>' (issued by POST /identities/{id}/:issueAccessToken), not an access key.",
        "Authorization",
    )


def admission_scope_insufficient(scopes: Sequence[str], needed: Sequence[str]) -> ServiceError:
    return ServiceError(
        403,
        "InsufficientScope",
        f"The access token's scopes ({', '.join(scopes) or 'none'}) do not allow joining calls; "
        f"issue a token with the scope {' or '.join(needed)}.",
        "Authorization",
    )


def admission_room_not_found(room_id: str) -> ServiceError:
    return ServiceError(404, "RoomNotFound", f"Room {room_id} does not exist (or was deleted or purged).", "roomId")


# The ACS calling service's call-end sub-codes of a refused room call (with code 403).
SUB_CODE_NOT_ON_ROSTER = 5828
SUB_CODE_OUTSIDE_WINDOW = 5829
SUB_CODE_NOT_ACS_USER = 5830


def admission_not_invited(raw_id: str, room_id: str) -> ServiceError:
    return ServiceError(
        403,
        "NotInvited",
        f"{raw_id} is not a participant of room {room_id}: only users on the room's roster may join its call.",
        "roomId",
        call_end_sub_code=SUB_CODE_NOT_ON_ROSTER,
    )


def admission_room_not_open(room_id: str, valid_from: str) -> ServiceError:
    return ServiceError(
        403, "RoomNotOpenYet", f"Room {room_id} opens at {valid_from} (validFrom); join from then on.", "validFrom",
        call_end_sub_code=SUB_CODE_OUTSIDE_WINDOW,
    )


def admission_room_ended(room_id: str, valid_until: str) -> ServiceError:
    return ServiceError(
        403, "RoomEnded", f"Room {room_id} ended at {valid_until} (validUntil); its call can no longer be joined.",
        "validUntil", call_end_sub_code=SUB_CODE_OUTSIDE_WINDOW,
    )


def admission_not_acs_user(raw_id: str) -> ServiceError:
    return ServiceError(
        403, "NotACommunicationServicesUser",
        f"{raw_id} is not a Communication Services user: only such users join a room's call.",
        "Authorization", call_end_sub_code=SUB_CODE_NOT_ACS_USER,
    )
