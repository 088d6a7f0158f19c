"""One connector per integration: workers that ask for it at the same moment, while its
credentials are still being read (a MongoDB call yields to the event loop), share one build."""

from __future__ import annotations

import asyncio

import pytest

from syncd.config import Settings
from syncd.engine.connectors import Connectors
from syncd.kit.loader import load_all
from syncd.models import Integration

CREDENTIALS = {"botToken": "xoxb-connectors-test", "signingSecret": "s" * 32}


@pytest.fixture
def connectors() -> Connectors:
    return Connectors(Settings(mongodb_uri="mongomock://"), {"slack": load_all()["slack"]})


def slow_store(reads: list[int], credentials: dict = CREDENTIALS, fail: int = 0):
    """``read_credentials`` that takes a few event-loop turns, as a real driver's round-trip
    does; the first ``fail`` reads raise."""

    async def read() -> dict:
        reads.append(1)
        for _ in range(3):
            await asyncio.sleep(0)
        if len(reads) <= fail:
            raise ConnectionError("no primary")
        return dict(credentials)

    return read


async def test_workers_that_miss_together_share_one_connector_built_from_one_read(connectors):
    integration, reads = Integration(customer_id="c", platform="slack"), []
    got = await asyncio.gather(*(connectors.get(integration, slow_store(reads)) for _ in range(5)))
    assert len({id(c) for c in got}) == 1 and len(reads) == 1
    assert connectors.cached(integration.id) is got[0]
    assert await connectors.get(integration, slow_store(reads)) is got[0] and len(reads) == 1
    await connectors.close()


async def test_a_failed_read_caches_nothing_and_the_next_worker_builds_it(connectors):
    integration, reads = Integration(customer_id="c", platform="slack"), []
    first, second = await asyncio.gather(connectors.get(integration, slow_store(reads, fail=1)),
                                         connectors.get(integration, slow_store(reads, fail=1)),
                                         return_exceptions=True)
    assert isinstance(first, ConnectionError) and connectors.cached(integration.id) is second
    assert len(reads) == 2
    await connectors.close()


async def test_a_forgotten_connector_is_built_again_from_the_credentials_stored_since(connectors):
    integration, reads = Integration(customer_id="c", platform="slack"), []
    old = await connectors.get(integration, slow_store(reads))
    await connectors.forget(integration.id)
    new = await connectors.get(integration, slow_store(reads, {**CREDENTIALS, "botToken": "xoxb-new"}))
    assert new is not old and new.credentials.bot_token == "xoxb-new" and len(reads) == 2
    await connectors.close()


async def test_a_built_connector_keeps_no_lock_and_its_errors_leave_without_its_secrets(connectors):
    integration, reads = Integration(customer_id="c", platform="slack"), []
    first, second = await asyncio.gather(connectors.get(integration, slow_store(reads)),
                                         connectors.get(integration, slow_store(reads)))
    assert first is second and connectors._building == {}
    # Guarded once per platform (a subclass), not with wrappers on each connector.
    other = connectors.build(Integration(customer_id="d", platform="slack"), dict(CREDENTIALS))
    assert type(other) is type(first) and "list_chats" not in vars(first)

    async def failing(*args, **kwargs):
        raise RuntimeError(f"platform said: bad token {CREDENTIALS['botToken']}")

    type(first).__mro__[1].list_chats, original = failing, type(first).__mro__[1].list_chats
    try:
        with pytest.raises(RuntimeError) as caught:
            await first.list_chats()
    finally:
        type(first).__mro__[1].list_chats = original
    assert CREDENTIALS["botToken"] not in str(caught.value)
    await connectors.close()
