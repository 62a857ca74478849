"""Webhook subscriptions on the wire (an openrooms extension, under `/events/subscriptions`; docs/events.md), and
the HTTP client that delivers to receivers (`HttpSender`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openrooms.events.subscriptions import Delivery, DeliveryState
from openrooms.http.context import context_of
from openrooms.http.wire import decode, json_response
from openrooms.service import timestamps
from openrooms.service.webhooks import Answer, NewSubscription, SendFailed, SubscriptionView, WebhooksService

SUBSCRIPTIONS_ROUTE = "/events/subscriptions"
_UNSET = msgspec.UNSET


class CreateSubscriptionRequest(msgspec.Struct):
    endpoint: str
    types: list[str] | None = None
    roomId: str | None = None
    schema: str | None = None
    secret: str | None = None
    maxEventsPerBatch: int | None = None
    preferredBatchSizeInKilobytes: int | None = None


class UpdateSubscriptionRequest(msgspec.Struct):
    """A merge patch: what is left out stays; `types` or `roomId` null: every type, every room."""

    endpoint: str | msgspec.UnsetType = _UNSET
    types: list[str] | msgspec.UnsetType | None = _UNSET
    roomId: str | msgspec.UnsetType | None = _UNSET
    schema: str | msgspec.UnsetType = _UNSET
    secret: str | msgspec.UnsetType = _UNSET
    maxEventsPerBatch: int | msgspec.UnsetType = _UNSET
    preferredBatchSizeInKilobytes: int | msgspec.UnsetType = _UNSET


class RedeliverRequest(msgspec.Struct):
    eventIds: list[str] | None = None  # None: every dead letter


class DeliveryStateBody(msgspec.Struct):
    lastSuccessDateTime: str | None
    consecutiveFailures: int
    backlog: int
    deadLettered: int


class SubscriptionBody(msgspec.Struct, omit_defaults=True):
    id: str
    endpoint: str
    types: list[str] | None
    roomId: str | None
    schema: str
    maxEventsPerBatch: int
    preferredBatchSizeInKilobytes: int
    createdDateTime: str
    updatedDateTime: str
    delivery: DeliveryStateBody
    secret: str | None = None  # in the answer to a create only


class SubscriptionsPage(msgspec.Struct):
    value: list[SubscriptionBody]


class DeadLetterBody(msgspec.Struct):
    id: str
    cursor: str
    eventType: str
    subject: str
    eventTime: str
    attempts: int
    lastError: str | None
    deadLetteredDateTime: str | None
    data: dict[str, Any]


class DeadLettersPage(msgspec.Struct):
    value: list[DeadLetterBody]


class RedeliveredBody(msgspec.Struct):
    redelivered: int


def _time(ticks: int | None) -> str | None:
    return None if ticks is None else timestamps.format(ticks)


def state_body(state: DeliveryState) -> DeliveryStateBody:
    return DeliveryStateBody(_time(state.last_success_at), state.consecutive_failures, state.backlog,
                             state.dead_lettered)


def subscription_body(view: SubscriptionView, *, with_secret: bool = False) -> SubscriptionBody:
    s = view.subscription
    return SubscriptionBody(s.id, s.endpoint, None if s.types is None else list(s.types), s.room_id, s.schema,
                            s.max_events_per_batch, s.preferred_batch_kilobytes, timestamps.format(s.created_at),
                            timestamps.format(s.updated_at), state_body(view.state),
                            s.secret if with_secret else None)


def dead_letter_body(event_id: str, cursor: str, d: Delivery) -> DeadLetterBody:
    return DeadLetterBody(event_id, cursor, d.type, d.subject, timestamps.format(d.time), d.attempts, d.last_error,
                          _time(d.dead_at), msgspec.json.decode(d.data))


class WebhooksApi:
    def __init__(self, service: WebhooksService) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        one = SUBSCRIPTIONS_ROUTE + "/{subscription_id}"
        return [
            Route(one + ":redeliver", self.redeliver, methods=["POST"]),
            Route(one + "/deadLetters", self.dead_letters, methods=["GET"]),
            Route(SUBSCRIPTIONS_ROUTE, self.create, methods=["POST"]),
            Route(SUBSCRIPTIONS_ROUTE, self.list_all, methods=["GET"]),
            Route(one, self.get, methods=["GET"]),
            Route(one, self.update, methods=["PATCH"]),
            Route(one, self.delete, methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> Response:
        wire = decode(context_of(request).body, CreateSubscriptionRequest)
        created = await self.service.create(NewSubscription(wire.endpoint, wire.types, wire.roomId, wire.schema,
                                                            wire.secret, wire.maxEventsPerBatch,
                                                            wire.preferredBatchSizeInKilobytes))
        view = SubscriptionView(created, DeliveryState(None, 0, 0, 0))
        return json_response(subscription_body(view, with_secret=True), 201)

    async def list_all(self, request: Request) -> Response:
        views = await self.service.list_all()
        return json_response(SubscriptionsPage([subscription_body(view) for view in views]))

    async def get(self, request: Request) -> Response:
        return json_response(subscription_body(await self.service.get(request.path_params["subscription_id"])))

    async def update(self, request: Request) -> Response:
        wire = decode(context_of(request).body, UpdateSubscriptionRequest)
        subscription_id = request.path_params["subscription_id"]

        def given(value: Any) -> Any:
            return None if value is _UNSET else value

        await self.service.update(
            subscription_id, given(wire.endpoint), given(wire.types), given(wire.roomId), given(wire.schema),
            given(wire.secret), all_types=wire.types is None, all_rooms=wire.roomId is None,
            max_events_per_batch=given(wire.maxEventsPerBatch),
            preferred_batch_kilobytes=given(wire.preferredBatchSizeInKilobytes))
        return json_response(subscription_body(await self.service.get(subscription_id)))

    async def delete(self, request: Request) -> Response:
        await self.service.delete(request.path_params["subscription_id"])
        return Response(status_code=204)

    async def dead_letters(self, request: Request) -> Response:
        letters = await self.service.dead_letters(request.path_params["subscription_id"])
        return json_response(DeadLettersPage([dead_letter_body(*letter) for letter in letters]))

    async def redeliver(self, request: Request) -> Response:
        wire = decode(context_of(request).body, RedeliverRequest)
        count = await self.service.redeliver(request.path_params["subscription_id"], wire.eventIds)
        return json_response(RedeliveredBody(count))


class HttpSender:
    """Sends webhook requests with aiohttp: one connection pool per process, no redirects followed (a receiver
    answers itself, as Event Grid expects)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> Answer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        try:
            async with self._session.request(method, url, headers=dict(headers), data=body, allow_redirects=False,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as answer:
                content = await answer.read()
                return Answer(answer.status, {k.lower(): v for k, v in answer.headers.items()}, content)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SendFailed(str(exc) or type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
