"""The emulator: openrooms in this process, in memory, served over TLS by uvicorn on a thread of its own."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formatdate, parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from openrooms.config import DEV_ACCESS_KEY, DEV_SECONDARY_KEY, Settings
from openrooms.service.clock import TICKS_PER_SECOND

if TYPE_CHECKING:
    import uvicorn
    from azure.communication.identity import CommunicationIdentityClient
    from azure.communication.identity.aio import CommunicationIdentityClient as AsyncCommunicationIdentityClient
    from azure.communication.rooms import RoomsClient
    from azure.communication.rooms.aio import RoomsClient as AsyncRoomsClient
    from starlette.types import ASGIApp, Receive, Scope, Send

    from openrooms.http.pipeline import Pipeline
    from openrooms.store.protocol import RoomStore

T = TypeVar("T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# With a fixed clock the request dates the SDKs sign (the real time) are not held against the emulator's time.
_UNCHECKED_SKEW_SECONDS = 1 << 40
STARTUP_TIMEOUT_SECONDS = 30.0


def sign_headers(
    method: str, path_and_query: str, host: str, body: bytes = b"", key: str = DEV_ACCESS_KEY,
    date: str | None = None,
) -> dict[str, str]:
    """x-ms-date, x-ms-content-sha256 and Authorization, as the ACS SDKs sign a request: the HMAC-SHA256 of the
    method, path and query, date, host and body hash, keyed with the (base64) access key."""
    date = date or formatdate(usegmt=True)
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method}\n{path_and_query}\n{date};{host};{content_hash}"
    signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
    }


def wait_until_healthy(
    url: str, *, alive: Callable[[], str | None] = lambda: None, ca: str | None = None,
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> None:
    """Wait until `url` (e.g. https://127.0.0.1:8765/healthz) answers 200. `alive` returns why the server can no
    longer answer (e.g. its process exited), or None while it may still come up."""
    deadline = time.monotonic() + timeout
    while True:
        gone = alive()
        if gone is not None:
            raise RuntimeError(gone)
        if ca is None or Path(ca).exists():  # a server writes its CA as it starts
            try:
                # No proxy from the environment: the server is on this machine.
                handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
                if ca:  # (a CA being written is not read yet: an SSLError, an OSError)
                    handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca)))
                with urllib.request.build_opener(*handlers).open(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:  # not listening yet (urllib's URLError and ssl's SSLError are OSErrors)
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.02)


class EmulatorClock:
    """The emulator's clock when it is fixed: it moves only when told to (`set`, `advance`).

    What the service sees as now: room defaults and validity windows, token issue and expiry times."""

    def __init__(self, start: datetime) -> None:
        self._ticks = _ticks(start)
        self._lock = threading.Lock()

    def now(self) -> int:
        """Ticks of 100 ns since the Unix epoch (the service's clock protocol)."""
        return self._ticks

    @property
    def time(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self._ticks // 10)

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._ticks = _ticks(moment)

    def advance(self, by: timedelta) -> None:
        with self._lock:
            self._ticks += _ticks(_EPOCH + by)


def _ticks(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone: give an aware datetime (e.g. tzinfo=UTC)")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10


class Emulator:
    """openrooms in memory on a free loopback port, over HTTPS with a CA of its own (or plain HTTP).

    `with Emulator() as emulator:` starts it and stops it; `start()` and `stop()` do the same by hand. Everything
    it keeps (rooms, users, keys) is in memory and gone when it stops; its CA and certificate live in a temporary
    directory removed at stop. `clock` fixes the time the service sees: a datetime (aware), or True for the time
    at start; `emulator.clock` then moves it. `settings` overrides any other setting (e.g. page_size=5).

    With `serve=False` nothing listens: the app runs on the emulator's thread, to be driven in process (`app`,
    `loop`, `run`), e.g. through httpx's ASGI transport.
    """

    def __init__(
        self, *, tls: bool = True, clock: datetime | bool | None = None, access_key: str = DEV_ACCESS_KEY,
        secondary_key: str = DEV_SECONDARY_KEY, store: RoomStore | None = None, serve: bool = True,
        **settings: Any,
    ) -> None:
        self.serve = serve
        self.clock: EmulatorClock | None = None
        if clock is not None and clock is not False:
            self.clock = EmulatorClock(datetime.now(UTC) if clock is True else clock)
        self.tls = tls
        self.access_key = access_key
        self.secondary_key = secondary_key
        self._store = store
        self._extra = settings
        self.host = "127.0.0.1"
        self.port = 0
        self._directory: Path | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._app: Pipeline | None = None
        self._failure: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._served: ASGIApp | None = None

    # -- what a test needs ------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """e.g. https://127.0.0.1:41234/"""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/"

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint};accesskey={self.access_key}"

    @property
    def ca(self) -> str:
        """The path of the CA certificate (PEM) that signed the server's certificate: what clients trust."""
        if self._directory is None or not self.tls or not self.serve:
            raise RuntimeError("the emulator is not running over TLS: it has no CA")
        return str(self._directory / "ca.pem")

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    @property
    def app(self) -> Pipeline:
        """The ASGI app, for driving it in process (on `loop`)."""
        if self._app is None:
            raise RuntimeError("the emulator is not running")
        return self._app

    @property
    def asgi(self) -> ASGIApp:
        """What is served: the app, behind what a fixed clock needs (to be driven in process on `loop`)."""
        if self._served is None:
            raise RuntimeError("the emulator is not running")
        return self._served

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the app runs on (a thread of its own)."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")
        return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the app's event loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def _client(self, cls: Any, options: dict[str, Any]) -> Any:
        if self.tls:  # the connection string, as an application is configured, trusting the CA
            return cls.from_connection_string(self.connection_string, **{"connection_verify": self.ca, **options})
        from azure.core.credentials import AzureKeyCredential

        # The SDKs take the endpoint of a connection string as https: plain HTTP goes through the constructor.
        return cls(self.endpoint, AzureKeyCredential(self.access_key), **options)

    def rooms_client(self, **options: Any) -> RoomsClient:
        """A Rooms client of the official SDK (azure-communication-rooms), trusting the emulator's CA; `options`
        go to its constructor (e.g. api_version)."""
        from azure.communication.rooms import RoomsClient

        client: RoomsClient = self._client(RoomsClient, options)
        return client

    def async_rooms_client(self, **options: Any) -> AsyncRoomsClient:
        from azure.communication.rooms.aio import RoomsClient

        client: AsyncRoomsClient = self._client(RoomsClient, options)
        return client

    def identity_client(self, **options: Any) -> CommunicationIdentityClient:
        """An Identity client of the official SDK (azure-communication-identity), trusting the emulator's CA."""
        from azure.communication.identity import CommunicationIdentityClient

        client: CommunicationIdentityClient = self._client(CommunicationIdentityClient, options)
        return client

    def async_identity_client(self, **options: Any) -> AsyncCommunicationIdentityClient:
        from azure.communication.identity.aio import CommunicationIdentityClient

        client: AsyncCommunicationIdentityClient = self._client(CommunicationIdentityClient, options)
        return client

    def settings(self) -> Settings:
        """The settings the app is built with."""
        base: dict[str, Any] = {
            "host": self.host, "port": self.port, "in_memory": True, "tls": self.tls, "silent": True,
            "access_key": self.access_key, "secondary_key": self.secondary_key, "server": "uvicorn",
        }
        if self._directory is not None:
            base["location"] = self._directory
        if self.clock is not None:
            base["clock_skew_seconds"] = _UNCHECKED_SKEW_SECONDS
        return Settings(**{**base, **self._extra})

    # -- start and stop ---------------------------------------------------------------------------------------
    def start(self) -> Emulator:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._directory = Path(tempfile.mkdtemp(prefix="openrooms-emulator-"))
        listening = None
        if self.serve:  # bound here, so that the port is known (and no other process's) before serving starts
            listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind((self.host, 0))
            self.port = int(listening.getsockname()[1])
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(listening, ready), daemon=True,
            name=f"openrooms-emulator-{self.port or 'in-process'}",
        )
        self._thread.start()
        try:
            ready.result(STARTUP_TIMEOUT_SECONDS)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close the store, and remove the CA's directory."""
        thread, self._thread = self._thread, None
        if self._server is not None:  # at once: connections a test left open are not waited for
            self._server.should_exit = self._server.force_exit = True
        if self._stopping is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stopping.set)
        if thread is not None:
            thread.join(STARTUP_TIMEOUT_SECONDS)
        self._server = self._app = self._loop = self._served = self._stopping = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise RuntimeError("the emulator failed while serving") from failure

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, listening: socket.socket | None, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(listening, ready))
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                self._failure = exc
        finally:
            if listening is not None:
                listening.close()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, listening: socket.socket | None, ready: concurrent.futures.Future[None]) -> None:
        import uvicorn

        from openrooms.http.app import create_app

        settings = self.settings()
        ssl_options: dict[str, Any] = {}
        if self.tls and self.serve:
            from openrooms.tls import ensure_certificates

            assert self._directory is not None
            paths = ensure_certificates(self._directory)
            ssl_options = {"ssl_certfile": str(paths.cert), "ssl_keyfile": str(paths.key)}
        self._app = create_app(settings, store=self._store, clock=self.clock)
        self._served = served = self._app if self.clock is None else _ClientClock(self._app, self.clock)
        config = uvicorn.Config(
            served, log_config=None, log_level="warning", access_log=False, lifespan="on", loop="none",
            timeout_graceful_shutdown=1, **ssl_options,
        )
        if not self.serve:
            await self._run_in_process(config, ready)
            return
        assert listening is not None
        self._server = server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[listening]))
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped it
                raise RuntimeError("the emulator stopped while starting")
            await asyncio.sleep(0.002)
        ready.set_result(None)
        await serving
        # Stopped at once (`force_exit`), uvicorn skips the app's shutdown: run it, so that the store is closed.
        await server.lifespan.shutdown()


    async def _run_in_process(self, config: uvicorn.Config, ready: concurrent.futures.Future[None]) -> None:
        """The app's startup and shutdown (uvicorn's lifespan driver) around a wait for `stop`, serving nothing."""
        from uvicorn.lifespan.on import LifespanOn

        self._stopping = asyncio.Event()
        config.load()
        lifespan = LifespanOn(config)
        await lifespan.startup()
        if lifespan.should_exit:
            raise RuntimeError("the app failed to start")
        ready.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            await lifespan.shutdown()


class _ClientClock:
    """With a fixed clock, reads the time stamps a client sends in Repeatability-First-Sent (from its own, real
    clock) as if that client's clock agreed with the emulator's: a create sent now was sent at the emulator's now.
    (Request dates, x-ms-date, are signed and cannot be moved: with a fixed clock they are not checked at all.)"""

    HEADER = b"repeatability-first-sent"

    def __init__(self, app: ASGIApp, clock: EmulatorClock) -> None:
        self._app = app
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(name == self.HEADER for name, _ in scope["headers"]):
            shift = timedelta(microseconds=(self._clock.now() - time.time_ns() // 100) // 10)
            scope = {**scope, "headers": [(name, self._shift(value, shift) if name == self.HEADER else value)
                                          for name, value in scope["headers"]]}
        await self._app(scope, receive, send)

    @staticmethod
    def _shift(value: bytes, shift: timedelta) -> bytes:
        try:
            sent = parsedate_to_datetime(value.decode("latin-1"))
        except (TypeError, ValueError):
            return value  # the app answers a malformed stamp as it always does
        if sent.tzinfo is None:
            return value
        return format_datetime((sent + shift).astimezone(UTC), usegmt=True).encode()


@contextlib.contextmanager
def emulator(**options: Any) -> Iterator[Emulator]:
    """`with emulator() as e:` an Emulator(**options), started and stopped."""
    with Emulator(**options) as running:
        yield running
