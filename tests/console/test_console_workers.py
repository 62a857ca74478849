"""The console's sessions and sign-in limit across the worker processes of a real `openrooms serve --workers 2`: each
request below goes out on a connection of its own, which either worker may accept. A session works on whichever
answers and, once signed out, on none; failed sign-ins count on both. (The rules themselves are checked in process,
over two apps on one store, in test_console_sessions.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from openrooms.config import DEV_ACCESS_KEY
from openrooms.console.session import COOKIE, SIGN_IN_COOKIE
from tests.support import Server, running_server

CONNECTIONS = 12  # fresh connections per check: with two workers, all on one worker is a 1 in 2048 chance
WRONG_KEY = "d3Jvbmcgd3Jvbmcgd3Jvbmcgd3Jvbmc="
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def fresh(server: Server, method: str, path: str, cookies: dict[str, str] | None = None,
          data: dict[str, str] | None = None) -> httpx.Response:
    """One request on a new connection (so that either worker may answer it)."""
    with httpx.Client(base_url=server.endpoint.rstrip("/"), cookies=cookies) as client:
        return client.request(method, path, data=data)


def sign_in(server: Server, key: str) -> httpx.Response:
    form = fresh(server, "GET", "/console/sign-in")
    match = _CSRF.search(form.text)
    assert match is not None, form.text
    token = form.cookies[SIGN_IN_COOKIE]
    return fresh(server, "POST", "/console/sign-in", {SIGN_IN_COOKIE: token},
                 {"csrf": match.group(1), "access_key": key})


def test_sessions_and_the_sign_in_limit_are_shared_by_the_workers(tmp_path: Path) -> None:
    with running_server(tmp_path, "--workers", "2", tls=False) as server:
        signed_in = sign_in(server, DEV_ACCESS_KEY)
        assert signed_in.status_code == 303, signed_in.text
        cookies = {COOKIE: signed_in.cookies[COOKIE]}
        overview = [fresh(server, "GET", "/console/", cookies) for _ in range(CONNECTIONS)]
        assert [page.status_code for page in overview] == [200] * CONNECTIONS
        match = _CSRF.search(overview[0].text)
        assert match is not None
        assert fresh(server, "POST", "/console/sign-out", cookies, {"csrf": match.group(1)}).status_code == 303
        after = [fresh(server, "GET", "/console/", cookies).status_code for _ in range(CONNECTIONS)]
        assert after == [303] * CONNECTIONS  # the copy kept from before the sign-out works on no worker

        for _ in range(5):
            assert sign_in(server, WRONG_KEY).status_code == 401
        limited = [sign_in(server, DEV_ACCESS_KEY).status_code for _ in range(CONNECTIONS)]
        assert limited == [429] * CONNECTIONS  # five failures in all, wherever they were answered
