"""`GET /events` on the wire (an openrooms extension): the event log, in pages, in the Event Grid event schema.

Each event is an Event Grid event (`id`, `subject`, `eventType`, `eventTime`, `data`, `dataVersion`,
`metadataVersion`) with one more field, `cursor`: its place in the log. A page is `{"value": [...], "nextLink":
...}`; the stream has no end, so `nextLink` is always there: it reads on after the page's last event (after the
request's own cursor when the page is empty), with the same filters.
"""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openrooms.events.types import DATA_VERSION
from openrooms.http.auth import undoubled_host
from openrooms.http.context import context_of
from openrooms.http.wire import json_response, query_int, query_of
from openrooms.service import timestamps
from openrooms.service.event_log import EventsService, LoggedEvent

EVENTS_ROUTE = "/events"


def _event_json(logged: LoggedEvent) -> bytes:
    event = logged.event
    head = msgspec.json.encode({
        "id": logged.id, "subject": event.subject, "eventType": event.type,
        "eventTime": timestamps.format(event.time), "dataVersion": DATA_VERSION, "metadataVersion": "1",
        "cursor": logged.cursor,
    })
    return head[:-1] + b',"data":' + event.data + b"}"


class EventsApi:
    def __init__(self, service: EventsService, public_url: str | None = None) -> None:
        self._service = service
        self._public_url = public_url

    def routes(self) -> list[Route]:
        return [Route(EVENTS_ROUTE, self.events_list, methods=["GET"])]

    async def events_list(self, request: Request) -> Response:
        query = query_of(request.scope["query_string"])
        types_text = query.get("types")
        types = None if not types_text else [name.strip() for name in types_text.split(",") if name.strip()]
        room_id = query.get("roomId") or None
        after = query.get("after") or None
        page = await self._service.read(
            after, types, room_id, query_int(query.get("maxpagesize"), "maxpagesize"),
            query_int(query.get("wait"), "wait") or 0,
        )
        next_after = page[-1].cursor if page else after
        version = context_of(request).api_version
        assert version is not None  # the pipeline's api-version step sets it for /events
        link: dict[str, str] = {"api-version": version.name}
        if next_after is not None:
            link["after"] = next_after
        for name in ("types", "roomId", "maxpagesize", "wait"):
            if query.get(name):
                link[name] = query[name]
        next_link = f"{self._origin(request)}{EVENTS_ROUTE}?{urlencode(link)}"
        body = (b'{"value":[' + b",".join(_event_json(event) for event in page) + b'],"nextLink":'
                + msgspec.json.encode(next_link) + b"}")
        return json_response(body, headers={"Cache-Control": "no-store"})

    def _origin(self, request: Request) -> str:
        if self._public_url:
            return self._public_url
        host = context_of(request).headers.get("host") or request.url.netloc
        return f"{request.scope['scheme']}://{undoubled_host(host)}"
