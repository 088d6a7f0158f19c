"""The engine's push channel (``engine/listeners.py``) with a scripted listener: a signal
polls at once, a signal during a running poll is not lost, scheduled polls are a safety net
while the listener is up and the usual ones while it is down, a drop reconnects under
backoff, an account that cannot listen is left to polls, one replica listens at a time, and
stopping never waits for the platform."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from syncd.config import Settings
from syncd.engine.context import EngineContext
from syncd.engine.listeners import Listeners
from syncd.kit.connector import ListenerUnavailable, Listening
from syncd.models import Integration
from syncd.store import Store


class ScriptedConnector:
    """Its ``listen`` comes up, then waits until the test drops it (or forever)."""

    can_listen = True

    def __init__(self, unavailable: bool = False):
        self.unavailable = unavailable
        self.signals: Listening | None = None
        self.drop = asyncio.Event()
        self.sessions = 0

    async def listen(self, signals: Listening) -> None:
        if self.unavailable:
            raise ListenerUnavailable("the server has no push")
        self.sessions += 1
        self.signals = signals
        self.drop = asyncio.Event()
        signals.up()
        await self.drop.wait()
        raise ConnectionError("connection reset")


class FakeConnectors:
    def __init__(self, connector: ScriptedConnector):
        self.connector = connector

    def connector_class(self, platform: str) -> Any:
        return self.connector

    async def get(self, integration: Integration, *how: Any) -> ScriptedConnector:
        return self.connector


class Polls:
    """The engine's poll: records each one; ``gate`` holds a poll open while it is cleared."""

    def __init__(self) -> None:
        self.count = 0
        self.running = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, integration_id: str) -> bool:
        if self.running:
            return False  # busy: as the engine answers
        self.running = True
        try:
            await self.gate.wait()
            self.count += 1
        finally:
            self.running = False
        return True


async def eventually(check: Any, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "not in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def store():
    store = await Store.connect("mongomock://", secret_key="k" * 44)
    yield store
    await store.close()


async def setup(store: Store, connector: ScriptedConnector, **settings: Any) -> tuple[Listeners, Polls, Integration]:
    ctx = EngineContext(Settings(mongodb_uri="mongomock://", retry_base_s=0.2, retry_max_s=0.2, **settings),
                        store, FakeConnectors(connector))  # type: ignore[arg-type]
    integration = Integration(customer_id="c", platform="scripted")
    await store.insert_integration(integration, {})
    polls = Polls()
    listeners = Listeners(ctx, polls)
    listeners.enabled = True
    return listeners, polls, integration


async def test_a_signal_polls_at_once_and_one_during_a_poll_polls_again(store):
    connector = ScriptedConnector()
    listeners, polls, integration = await setup(store, connector)
    listeners.start(integration)
    await eventually(lambda: listeners.is_up(integration.id) and polls.count == 1)  # the catch-up poll
    polls.gate.clear()
    connector.signals.changed()
    await eventually(lambda: polls.running)
    connector.signals.changed()  # the running poll may have read the platform before this change
    polls.gate.set()
    await eventually(lambda: polls.count == 3)
    await listeners.close()


async def test_scheduled_polls_are_a_safety_net_while_up_and_the_usual_ones_while_down(store):
    connector = ScriptedConnector()
    listeners, _, integration = await setup(store, connector)
    listeners.start(integration)
    await eventually(lambda: listeners.is_up(integration.id))
    assert not listeners.safety_poll_due(integration.id, every_s=300)
    assert listeners.safety_poll_due(integration.id, every_s=0)

    connector.drop.set()
    await eventually(lambda: not listeners.is_up(integration.id))
    assert listeners.safety_poll_due(integration.id, every_s=300)
    listener = listeners.get(integration.id)
    assert listener.drops == 1 and listener.last_error == "ConnectionError: connection reset"
    await eventually(lambda: listeners.is_up(integration.id))  # after the backoff
    assert connector.sessions == 2 and listener.connects == 2
    await listeners.close()


async def test_an_account_that_cannot_listen_is_left_to_polls(store):
    listeners, polls, integration = await setup(store, ScriptedConnector(unavailable=True))
    with capture_logs() as logs:
        listeners.start(integration)
        await eventually(lambda: listeners.get(integration.id) is None)
    assert any(e["event"].startswith("no listener") and e["reason"] == "the server has no push" for e in logs)
    assert listeners.safety_poll_due(integration.id, every_s=300) and polls.count == 0
    await listeners.keep([integration])  # the periodic reconcile does not ask again
    assert listeners.get(integration.id) is None


async def test_one_replica_listens_at_a_time_and_the_other_takes_over(store):
    connector = ScriptedConnector()
    first, _, integration = await setup(store, connector, lease_ttl_s=0.3)
    second = Listeners(EngineContext(first.ctx.settings, store, first.ctx.connectors), Polls())
    second.enabled = True
    first.start(integration)
    await eventually(lambda: first.is_up(integration.id))
    second.start(integration)
    await asyncio.sleep(0.3)
    assert connector.sessions == 1 and not second.is_up(integration.id)
    await first.close()  # gives the lease back
    await eventually(lambda: second.is_up(integration.id))
    await second.close()


async def test_pause_and_delete_elsewhere_stop_it_and_stopping_never_waits_for_the_platform(store):
    connector = ScriptedConnector()
    listeners, _, integration = await setup(store, connector)
    listeners.start(integration)
    await eventually(lambda: listeners.is_up(integration.id))
    await asyncio.wait_for(listeners.keep([]), 1.0)  # paused or deleted on another replica
    assert listeners.get(integration.id) is None and listeners.count == 0
    listeners.start(integration)
    await eventually(lambda: listeners.is_up(integration.id))
    await asyncio.wait_for(listeners.close(), 1.0)  # its listen() would wait forever
    assert listeners.count == 0
    assert await store.lease_holder(f"listen:{integration.id}") is None


async def test_the_status_view_names_the_replica_that_listens_and_how_it_fared(store):
    connector = ScriptedConnector()
    first, _, integration = await setup(store, connector, lease_ttl_s=5)
    second = Listeners(EngineContext(first.ctx.settings, store, first.ctx.connectors, owner="replica-b"), Polls())
    first.start(integration)
    await eventually(lambda: first.is_up(integration.id))
    here = await first.view(integration)
    assert here == {"replica": first.ctx.owner, "here": True, "up": True, "connects": 1, "drops": 0,
                    "lastError": None, "unavailable": False}
    # Any replica answers the status: the other one names the holder from the lease.
    elsewhere = await second.view(integration)
    assert elsewhere["replica"] == first.ctx.owner and elsewhere["here"] is False and elsewhere["up"] is None

    connector.drop.set()
    await eventually(lambda: first.get(integration.id).drops == 1)
    dropped = await first.view(integration)
    assert dropped["drops"] == 1 and dropped["lastError"] == "ConnectionError: connection reset"
    await first.close()
    assert (await second.view(integration))["replica"] is None


async def test_a_secret_quoted_by_the_server_is_not_in_the_status_view(store):
    from syncd.logs import KNOWN_SECRETS

    secret = "imap-password-9f8e7d6c5b4a"

    class Quoting(ScriptedConnector):
        async def listen(self, signals: Listening) -> None:
            signals.up()
            raise ConnectionError(f"AUTHENTICATE failed for {secret}")

    listeners, _, integration = await setup(store, Quoting())
    KNOWN_SECRETS.add(secret, owner=integration.id)
    try:
        listeners.start(integration)
        await eventually(lambda: (listeners.get(integration.id) or ScriptedConnector()).__dict__.get("drops", 0) >= 1)
        view = await listeners.view(integration)
        assert secret not in str(view) and "AUTHENTICATE failed for" in view["lastError"]
    finally:
        KNOWN_SECRETS.forget(integration.id)
        await listeners.close()


async def test_a_platform_without_a_listener_has_none_in_its_status(store):
    class Polling(ScriptedConnector):
        can_listen = False

    listeners, _, integration = await setup(store, Polling())
    assert await listeners.view(integration) is None
