"""The HTTP API suite drives an in-process daemon (``syncd.testbed``) wired to the Slack and
Gmail simulators and a fake app, through the public API only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from apisupport import SimClock

from syncd.testbed import BASE, Testbed


@pytest.fixture
async def tb():
    tb = await Testbed.start()
    yield tb
    await tb.stop()


@pytest.fixture
async def make_tb():
    """Starts testbeds with settings overrides (``await make_tb(max_body_bytes=2048)``); stops them after."""
    started: list[Testbed] = []

    async def make(**overrides: Any) -> Testbed:
        started.append(await Testbed.start(**overrides))
        return started[-1]

    yield make
    for testbed in started:
        await testbed.stop()


@pytest.fixture
async def anon_client():
    """``anon_client(tb)``: a client of ``tb``'s daemon that carries no bearer token."""
    clients: list[httpx.AsyncClient] = []

    def make(testbed: Testbed) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(testbed.daemon.app), base_url=BASE))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def anon(tb, anon_client):
    """A client of the same daemon that carries no bearer token (what platforms send)."""
    return anon_client(tb)


@pytest.fixture
def sim_clock(tb) -> SimClock:
    """The Slack simulator's clock, moved by the test (edits happen later than their create)."""
    clock = SimClock()
    tb.slack.clock = clock
    return clock


@pytest.fixture
async def slack_ws(tb) -> dict[str, str]:
    """The simulator's seeded workspace: names -> ids."""
    return tb.slack.seed_workspace()


@pytest.fixture
async def slack(tb, slack_ws) -> dict[str, Any]:
    """A Slack integration over the seeded workspace, its initial import finished."""
    return await tb.create_slack()


@pytest.fixture
def gmail_thread(tb) -> str:
    """One thread of two emails in the simulated mailbox; returns its thread id."""
    # Gmail names a thread after its first message.
    thread = tb.gmail.add_incoming(None, "Guilherme Dias <email@domain.com>", "Order #1001", "Where is my order?")
    tb.gmail.add_incoming(thread, "Guilherme Dias <email@domain.com>", "Re: Order #1001", "Any news?")
    return thread


@pytest.fixture
async def gmail(tb, gmail_thread) -> dict[str, Any]:
    """A Gmail integration over a mailbox with one thread, its initial import finished."""
    return await tb.create_gmail()
