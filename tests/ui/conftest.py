"""Browser fixtures: Debian's chromium, headless, driven by Playwright; a screenshot on failure.

The browser is Debian's ``/usr/bin/chromium`` (``scripts/bootstrap`` installs
it); Playwright never downloads one. Each test gets a fresh context (its own
profile: no cookies, storage or cache shared between tests). When a test fails,
a full-page screenshot of every page it opened is saved under
``$UI_ARTIFACTS`` (default ``.artifacts/ui/``) and its path printed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    expect,
    sync_playwright,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("UI_ARTIFACTS", ROOT / ".artifacts" / "ui"))
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Playwright's own waits (expect, wait_for_*) give up after this long.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


# Module scope, not session: Playwright's sync API keeps its event loop set on
# the main thread while it runs, which breaks every asyncio test after it; it
# must be stopped before pytest moves on to other modules.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./scripts/bootstrap (installs Debian's chromium)")
    with sync_playwright() as pw:
        # Playwright starts chromium with a fresh temporary --user-data-dir of its own
        # (and refuses one in args); it is removed when the browser closes.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        for i, page in enumerate(ctx.pages):
            path = ARTIFACTS / f"{name}-{i}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
                print(f"\nscreenshot of the failed test: {path} ({page.url})")
            except Exception as exc:  # the page may be gone; the failure matters more
                print(f"\nno screenshot of {page.url}: {exc}")
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page
