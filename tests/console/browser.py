"""Driving the console in Debian's Chromium (Playwright, no browser download): sign-in, axe-core's accessibility
checks, and the screenshots of docs/console.md (written when OPENROOMS_CONSOLE_SCREENSHOTS is set)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).parents[2]
AXE = REPO / "tests" / "e2e" / "node" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "docs" / "console"
SCREENSHOTS_ENV = "OPENROOMS_CONSOLE_SCREENSHOTS"
# The WCAG 2.1 A and AA rules axe-core checks (contrast, labels, names, landmarks, keyboard reachability, ...).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def launch(playwright: Playwright) -> Browser:
    if shutil.which(CHROMIUM) is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    if not AXE.is_file():
        pytest.fail(f"axe-core is not installed at {AXE}: `make test` installs it (npm ci in tests/e2e/node)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    """A context (its own cookies) whose pages all have axe-core: injected as an init script, which the pages'
    Content-Security-Policy does not apply to (a script tag would be refused, as it should be)."""
    context = browser.new_context(**options)
    context.add_init_script(path=str(AXE))
    return context


def sign_in(context: BrowserContext, endpoint: str, key: str) -> Page:
    page = context.new_page()
    page.goto(f"{endpoint}console/")
    page.get_by_label("Access key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{endpoint}console/")
    return page


def check_accessibility(page: Page) -> None:
    """axe-core's WCAG 2.1 AA and best-practice rules on the page as it is now: no violation."""
    result: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", AXE_TAGS)
    violations = [{"id": v["id"], "help": v["help"], "nodes": [n["html"] for n in v["nodes"]][:3]}
                  for v in result["violations"]]
    assert violations == [], f"{page.url}: {json.dumps(violations, indent=1)}"


def screenshot(page: Page, name: str) -> None:
    """docs/console/<name>.png, when asked for (OPENROOMS_CONSOLE_SCREENSHOTS=1)."""
    if os.environ.get(SCREENSHOTS_ENV):
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def checked(page: Page, name: str) -> None:
    check_accessibility(page)
    screenshot(page, name)
