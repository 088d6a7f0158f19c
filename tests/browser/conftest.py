"""Browser tests: Debian's chromium, driven by Playwright, against a syncd served on a loopback
port (uvicorn) with the in-memory store and the platform simulators of the Testbed.

One browser per module and one HTTP server for the session; each test gets a fresh Testbed (its own
store and simulators) behind that server, and its own browser context (cookies).
The server, the daemon and its workers all run on one event loop in a background thread;
tests hand work to that loop with ``bed.run(coroutine)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browsersupport import Bed, Server, make_bed

CHROMIUM = os.environ.get("SYNCD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    running = Server()
    running.start()
    yield running
    running.stop()


# Per module, not per session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, and the async tests of the suites after this one need that thread.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
                    "the browser tests never skip")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def bed(server: Server) -> Iterator[Bed]:
    made = make_bed(server)
    yield made
    server.run(made.tb.stop())


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(5000)
    opened = context.new_page()
    yield opened
    context.close()
