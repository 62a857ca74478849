"""The error catalogue: one named constructor per error the service can answer.

Errors are data (status, code, message, target, details); the HTTP layer turns them into the ACS error
envelope in exactly one place (`openrooms.http.errors`). Messages are the real service's, word for word,
where the real service is known.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field

MALFORMED_REQUEST = "The request could not be understood by the server due to malformed syntax."
# The authorization scheme of access-key requests, named in every 401 Denied as the one to use.
HMAC_SCHEME = "HMAC-SHA256"


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


# Requests: paths, methods, api-versions, authentication, bodies (raised on the way in) ---------------------
def not_found() -> ServiceError:
    """No such resource: an unknown path, or a room that does not exist."""
    return ServiceError(404, "NotFound", "The server cannot find the requested resource.")


def method_not_allowed(allowed: Set[str]) -> ServiceError:
    return ServiceError(405, "MethodNotAllowed", "The HTTP method is not allowed on this resource.",
                        headers={"Allow": ", ".join(sorted(allowed))})


def missing_api_version(api: str, supported: str) -> ServiceError:
    return ServiceError(
        400,
        "MissingApiVersionParameter",
        f"The api-version query parameter (?api-version=) is required for all requests. "
        f"Supported api-versions of the {api} API: {supported}.",
        "api-version",
    )


def unsupported_api_version(requested: str, api: str, supported: str) -> ServiceError:
    return ServiceError(
        400,
        "UnsupportedApiVersion",
        f"The api-version '{requested}' is not supported by the {api} API. Supported api-versions: {supported}.",
        "api-version",
    )


def denied(message: str) -> ServiceError:
    """An access-key request that does not authenticate; `message` says which check failed."""
    return ServiceError(401, "Denied", message, headers={"WWW-Authenticate": HMAC_SCHEME})


def bearer_denied(message: str) -> ServiceError:
    """A Bearer token (of the configured OpenID Connect issuer) that does not authenticate: the access key's 401,
    naming both schemes the request may use."""
    error = denied(message)
    error.headers["WWW-Authenticate"] = f"Bearer, {HMAC_SCHEME}"
    return error


def request_too_large(max_bytes: int) -> ServiceError:
    return ServiceError(
        413, "RequestEntityTooLarge", f"The request body is larger than the {max_bytes} bytes this server accepts."
    )


def body_not_json(reason: str) -> ServiceError:
    return bad_arguments(bad_argument(f"The body is not valid JSON: {reason}", "$"))


def body_invalid(message: str, path: str) -> ServiceError:
    """A body that is JSON but not of the operation's shape; `path` is the JSON path at fault."""
    return bad_arguments(bad_argument(message, path))


def not_a_date_time(value: str, target: str) -> ServiceError:
    return bad_arguments(bad_argument(f"'{value}' is not an RFC 3339 date-time (e.g. 2030-01-31T12:00:00Z).", target))


def not_a_whole_number(name: str) -> ServiceError:
    return bad_request(f"{name} must be a whole number.", name)


def internal_error(request_id: str) -> ServiceError:
    return ServiceError(
        500, "InternalError", f"The server failed to process the request; the log has it under request id {request_id}."
    )


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


def invalid_page_token() -> ServiceError:
    return bad_request("The continuation token (skipToken) is invalid or has expired; list again from the start.",
                       "skipToken")


# Room queries (openrooms extension: docs/rooms.md) ------------------------------------------------------------
def _bad_query_parameter(name: str, value: str, expected: str) -> ServiceError:
    return bad_request(f"The query parameter {name} cannot be '{value}': {expected}.", name)


def invalid_room_state(value: str, states: Sequence[str]) -> ServiceError:
    return _bad_query_parameter("state", value, f"the states are {', '.join(states)} (repeated or comma-separated)")


def invalid_participant_filter(value: str) -> ServiceError:
    return _bad_query_parameter("participant", value, "it is the raw id of a Communication Services user")


def invalid_room_id_prefix(value: str, max_length: int) -> ServiceError:
    return _bad_query_parameter("idPrefix", value, f"it is 1 to {max_length} digits")


def invalid_room_order(value: str, orders: Sequence[str]) -> ServiceError:
    return _bad_query_parameter("orderby", value, f"the orders are {', '.join(orders)}")


# Idempotent create -----------------------------------------------------------------------------------------
def repeatability_request_id_length() -> ServiceError:
    return bad_request("Repeatability-Request-ID must be 1 to 128 characters.", "Repeatability-Request-ID")


def repeatability_first_sent_missing() -> ServiceError:
    return bad_request(
        "Repeatability-First-Sent must accompany Repeatability-Request-ID as an RFC 1123 date "
        "(e.g. Sat, 21 Nov 2026 09:52:51 GMT).",
        "Repeatability-First-Sent",
    )


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


def teams_user_token_invalid() -> ServiceError:
    """The Entra ID token of a Teams user exchange does not verify (or is not of the app and user named): the
    real service's 401, word for word."""
    return ServiceError(401, "InvalidAccessToken", "Provided access token is not valid.")


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


# Room calls (openrooms.calls, docs/calls.md)
def calls_not_configured() -> ServiceError:
    return ServiceError(404, "CallsNotConfigured",
                        "Room calls are not configured on this server (start it with --janus-url).")


def calls_unavailable(reason: str) -> ServiceError:
    return ServiceError(503, "CallsUnavailable", reason)


def call_not_found(room_id: str) -> ServiceError:
    return ServiceError(404, "CallNotFound", f"Room {room_id} has no call right now.", "roomId")


def call_participant_not_found(raw_id: str, room_id: str) -> ServiceError:
    return ServiceError(404, "CallParticipantNotFound", f"{raw_id} is not in the call of room {room_id}.", "rawId")


# Webhook subscriptions (openrooms extension, docs/events.md) -----------------------------------------------
def webhook_endpoint_invalid(endpoint: str) -> ServiceError:
    return bad_request(f"The endpoint {endpoint!r} is not an https URL (http is allowed only for loopback hosts: "
                       "localhost, 127.0.0.0/8, ::1).", "endpoint")


def webhook_host_not_allowed(endpoint: str, hosts: Sequence[str]) -> ServiceError:
    return bad_request(f"The endpoint {endpoint!r} names a host this server does not deliver to. Allowed hosts: "
                       f"{', '.join(hosts)}.", "endpoint")


def webhook_handshake_failed(endpoint: str, reason: str) -> ServiceError:
    return bad_request(f"Webhook validation handshake failed for {endpoint}: {reason}.", "endpoint")


def subscription_not_found(subscription_id: str) -> ServiceError:
    return ServiceError(404, "NotFound", f"There is no event subscription {subscription_id!r}.")


def dead_letter_not_found(event_id: str, subscription_id: str) -> ServiceError:
    return ServiceError(404, "NotFound",
                        f"The event subscription {subscription_id!r} has no dead-lettered event {event_id!r}.",
                        "eventIds")
