"""End-to-end fixtures: in-process daemons wired to the simulators (``syncd.testbed``).
Helpers shared by the tests are in ``e2esupport.py``."""

from __future__ import annotations

import pytest

from syncd.providers.slack.connector import SlackConnector
from syncd.testbed import Testbed


@pytest.fixture
async def tb():
    bed = await Testbed.start()
    yield bed
    await bed.stop()


@pytest.fixture
async def idle_tb():
    """A testbed whose daemon accepts webhooks and events but runs no worker (yet)."""
    bed = await Testbed.start(run=False)
    yield bed
    await bed.stop()


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    """Slack history in pages of 5, so a few dozen messages make several pages."""
    monkeypatch.setattr(SlackConnector, "page_limit", 5)
    return 5
