"""Console sign-in with the OpenID Connect issuer, the whole flow in Chromium: a real `openrooms serve` whose
`--oidc-issuer` is panva's certified OpenID Provider (npm `oidc-provider`, pinned in tests/e2e/node) on loopback,
with the console as its one confidential client. The person signs in on the provider's own login and consent
pages, lands on the console's overview, and signs out.

The issuer is named `localhost` and the console `127.0.0.1`: two sites, so the browser treats the way back from
the issuer as the cross-site navigation it is in real life (the flow cookie must be Lax, the session cookie is
Strict). The rules (state, nonce, audience, expiry, who may sign in, an issuer down) are checked in process by
test_console_oidc_rules.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Route, expect, sync_playwright

from openrooms.console import session as sessions
from tests.console.browser import check_accessibility, launch, new_context, screenshot
from tests.support import Server, free_port, running_server, stop_process

pytestmark = pytest.mark.e2e
NODE_PROJECT = Path(__file__).parents[1] / "e2e" / "node"
PROVIDER = NODE_PROJECT / "oidc_provider.mjs"
CLIENT_ID = "openrooms-console"
CLIENT_SECRET = "a secret: of the tests & only theirs"
ROLE = "Console.Admin"


@pytest.fixture(scope="module")
def issuer() -> str:
    """Where the provider will listen: the server fetches its discovery document only at the first sign-in."""
    return f"http://localhost:{free_port()}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, issuer: str) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("console-oidc"), "--in-memory", "--silent",
                        "--oidc-issuer", issuer, "--console-oidc-client-id", CLIENT_ID,
                        "--console-oidc-client-secret", CLIENT_SECRET, "--console-oidc-required-role", ROLE,
                        tls=False) as started:
        yield started


@pytest.fixture(scope="module")
def provider(issuer: str, server: Server) -> Iterator[str]:
    """The OpenID Provider (a node process, stopped by its pid), its client's redirect URI the server's callback;
    its issuer URL."""
    node = shutil.which("node")
    if node is None or not (NODE_PROJECT / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("node and tests/e2e/node's packages are required: `make test` installs them (npm ci)")
    callback = f"http://127.0.0.1:{server.port}/console/sign-in/oidc/callback"
    process = subprocess.Popen([node, str(PROVIDER), issuer, callback, CLIENT_ID, CLIENT_SECRET, ROLE],
                               cwd=NODE_PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        output = []
        for line in process.stdout:  # warnings about its development-only defaults, then "listening"
            output.append(line)
            if line.strip() == "listening":
                break
        else:
            pytest.fail(f"oidc-provider did not start:\n{''.join(output)}")
        yield issuer
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


def test_a_person_signs_in_with_the_issuer_and_out_again(server: Server, provider: str) -> None:
    console = f"http://127.0.0.1:{server.port}/console/"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = new_context(browser, viewport={"width": 1200, "height": 900})
            # Nothing leaves the machine: the provider's pages ask for a web font, which is refused here.
            elsewhere: list[str] = []

            def refuse(route: Route) -> None:
                elsewhere.append(route.request.url)
                route.abort()

            context.route(re.compile(r"^(?!https?://(127\.0\.0\.1|localhost)[:/])"), refuse)
            page = context.new_page()
            page.goto(f"{console}rooms")
            check_accessibility(page)
            screenshot(page, "sign-in-oidc")
            page.get_by_role("link", name="Sign in with localhost").click()

            # The provider's own pages: any login and password, then the consent to the console's scopes.
            page.wait_for_url(f"{provider}/interaction/**")
            page.get_by_placeholder("Enter any login").fill("ada")
            page.get_by_placeholder("and password").fill("anything")
            page.get_by_role("button", name="Sign-in").click()
            page.get_by_role("button", name="Continue").click()

            page.wait_for_url(f"{console}rooms")  # where the person was going, through the callback
            expect(page.get_by_role("heading", level=1)).to_have_text("Rooms")
            page.get_by_role("link", name="Overview").click()
            page.wait_for_url(console)
            expect(page.get_by_text("Ada Lovelace (ada@example.com)")).to_be_visible()
            check_accessibility(page)
            cookies = {cookie["name"]: cookie for cookie in context.cookies()}
            assert cookies[sessions.COOKIE]["sameSite"] == "Strict" and cookies[sessions.COOKIE]["httpOnly"]
            assert "openrooms_console_oidc" not in cookies  # the flow's cookie is gone with the flow

            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{console}sign-in?signed-out=issuer")
            check_accessibility(page)
            page.goto(console)
            page.wait_for_url(f"{console}sign-in?next=%2Fconsole%2F")  # the session has ended

            # Signed out at the issuer too (RP-initiated logout): the next sign-in asks for the login again.
            page.go_back()
            page.get_by_role("link", name="sign out at localhost too").click()
            page.get_by_role("button", name="Yes, sign me out").click()
            expect(page.get_by_role("heading", name="Sign-out Success")).to_be_visible()
            page.goto(console)
            page.get_by_role("link", name="Sign in with localhost").click()
            page.wait_for_url(f"{provider}/interaction/**")
            expect(page.get_by_placeholder("Enter any login")).to_be_visible()
            context.close()
            assert {url.split("/")[2] for url in elsewhere} <= {"fonts.googleapis.com"}
        finally:
            browser.close()
