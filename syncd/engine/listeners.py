"""Listeners: the push channel of platforms that have no webhooks but can hold a connection
open on which they say at once that something changed (``Connector.can_listen``).

A listener reads no data. Its signal wakes the integration's poll, so what it announces is
stored by the one ingest path polls already use. One replica at a time holds an integration's
listener (a lease, renewed while it runs). While it is up, scheduled polls are a safety net
every ``listen_poll_every_s``; when it drops, the usual poll interval takes over at once (on
every replica: the poll turn is given back) and the listener is connected again under backoff.
Listeners follow the integration's life: started when it is created or resumed, stopped when
it is paused, deleted or gets new credentials, and on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from syncd.engine.connectors import UnknownPlatform
from syncd.engine.context import EngineContext, connector_for
from syncd.kit.connector import ListenerUnavailable, Listening
from syncd.logs import KNOWN_SECRETS
from syncd.models import Integration

log = structlog.get_logger(__name__)

#: How long a wake waits before asking again when a poll of the integration is running already
#: (it may have read the platform before the change it was woken for).
BUSY_RETRY_S = 0.2
BUSY_ATTEMPTS = 300
#: How long a listener that stopped is given to end before shutdown goes on without it.
STOP_WAIT_S = 2.0


@dataclass
class Listener(Listening):
    """One integration's listener, as the engine sees it."""

    integration_id: str
    is_up: bool = False
    #: How many times it came up, and how often it dropped.
    connects: int = 0
    drops: int = 0
    last_error: str | None = None
    #: When the integration was last polled while this listener ran (monotonic seconds).
    polled_at: float = 0.0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def up(self) -> None:
        self.is_up = True
        self.connects += 1
        self._changed.set()  # catch up with what arrived while it was down

    def changed(self) -> None:
        self._changed.set()


class Listeners:
    """Every listener of this process. ``poll(integration_id)`` polls once and answers False
    when a poll of that integration is running already."""

    def __init__(self, ctx: EngineContext, poll: Callable[[str], Awaitable[bool]]):
        self.ctx = ctx
        self._poll = poll
        self._running: dict[str, tuple[Listener, asyncio.Task[None]]] = {}
        #: Set when the engine starts its workers: an engine wired but not started (a tool,
        #: a test of stored state) opens no connection to any platform.
        self.enabled = False
        #: Integrations whose account cannot have a listener: not asked again at every
        #: ``keep`` (a server without the extension), only after a pause, resume or new
        #: credentials (``stop``).
        self._unavailable: set[str] = set()

    # -- what the engine asks --------------------------------------------------------------
    def get(self, integration_id: str) -> Listener | None:
        running = self._running.get(integration_id)
        return running[0] if running else None

    def is_up(self, integration_id: str) -> bool:
        listener = self.get(integration_id)
        return bool(listener and listener.is_up)

    def safety_poll_due(self, integration_id: str, every_s: float) -> bool:
        """Whether a scheduled poll should run: always without a listener that is up, else
        once every ``every_s``."""
        listener = self.get(integration_id)
        if listener is None or not listener.is_up:
            return True
        if time.monotonic() - listener.polled_at < every_s:
            return False
        listener.polled_at = time.monotonic()
        return True

    @property
    def count(self) -> int:
        return len(self._running)

    async def view(self, integration: Integration) -> dict[str, Any] | None:
        """The integration's listener for its status: None where its platform has none; the
        replica holding it (from the lease, so any replica answers), and where that is this
        one, whether it is connected, how often it connected and dropped, and why it last did."""
        try:
            if not self.ctx.connectors.connector_class(integration.platform).can_listen:
                return None
        except UnknownPlatform:
            return None
        holder = await self.ctx.store.lease_holder(f"listen:{integration.id}")
        listener = self.get(integration.id)
        # A listener here that waits for another replica's lease is that replica's to show;
        # one between two connections (the lease given back) is still this one's.
        if listener is None or holder not in (None, self.ctx.owner):
            return {"replica": holder, "here": False, "up": None, "connects": None, "drops": None,
                    "lastError": None, "unavailable": integration.id in self._unavailable or None}
        return {"replica": self.ctx.owner, "here": True, "up": listener.is_up, "connects": listener.connects,
                "drops": listener.drops, "lastError": listener.last_error, "unavailable": False}

    # -- the integration's life ------------------------------------------------------------
    def start(self, integration: Integration) -> None:
        """Run the integration's listener if its platform has one and none runs here yet."""
        if (not self.enabled or integration.status != "active" or integration.id in self._running
                or integration.id in self._unavailable or self.ctx.stopping.is_set()):
            return
        try:
            if not self.ctx.connectors.connector_class(integration.platform).can_listen:
                return
        except UnknownPlatform:
            return
        listener = Listener(integration.id)
        task = asyncio.create_task(self._run(listener), name=f"listen:{integration.id}")
        self._running[integration.id] = (listener, task)
        task.add_done_callback(lambda _: self._forget(listener))

    def _forget(self, listener: Listener) -> None:
        running = self._running.get(listener.integration_id)
        if running and running[0] is listener:
            del self._running[listener.integration_id]

    async def stop(self, integration_id: str) -> None:
        self._unavailable.discard(integration_id)
        running = self._running.pop(integration_id, None)
        if running is not None:
            await self._end([running[1]])

    async def keep(self, active: list[Integration]) -> None:
        """Listeners for exactly these integrations (a resume, a pause or a delete made on
        another replica is followed here)."""
        wanted = {i.id for i in active}
        for integration_id in [i for i in self._running if i not in wanted]:
            await self.stop(integration_id)
        for integration in active:
            self.start(integration)

    async def close(self) -> None:
        """Stop every listener (shutdown)."""
        tasks = [task for _, task in self._running.values()]
        self._running.clear()
        await self._end(tasks)

    async def _end(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
        if late:
            log.warning("listeners did not stop in time; left behind", listeners=sorted(t.get_name() for t in late))

    # -- one listener ----------------------------------------------------------------------
    async def _run(self, listener: Listener) -> None:
        """Connect, listen until it drops, wait out the backoff, again; until stopped or the
        integration is no longer active."""
        integration_id, failures = listener.integration_id, 0
        ttl = self.ctx.settings.lease_ttl_s
        while not self.ctx.stopping.is_set():
            integration = await self.ctx.store.get_integration(integration_id)
            if integration is None or integration.status != "active":
                return
            if not await self.ctx.store.acquire_lease(f"listen:{integration_id}", self.ctx.owner, ttl):
                await asyncio.sleep(ttl / 2)  # another replica listens; take over if it dies
                continue
            connects = listener.connects
            try:
                await self._session(listener, integration)
                listener.last_error = "the connection was closed"
            except ListenerUnavailable as exc:
                log.info("no listener for this integration; polling serves it", integration_id=integration_id,
                         reason=str(exc))
                self._unavailable.add(integration_id)
                return
            except Exception as exc:  # any failure of the platform's connection is a drop
                # Scrubbed: it is shown in the integration's status, and a server may quote a secret.
                text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                listener.last_error = KNOWN_SECRETS.scrub(text)
            finally:
                await self._dropped(listener)
            failures = 1 if listener.connects > connects else failures + 1
            delay = (self.ctx.backoff(failures) - self.ctx.now()).total_seconds()
            log.warning("listener dropped; polling at the usual interval until it is back",
                        integration_id=integration_id, error=listener.last_error, retry_in_s=round(delay, 2))
            await asyncio.sleep(max(0.0, delay))

    async def _session(self, listener: Listener, integration: Integration) -> None:
        """The connector's listener, the polls it wakes and the lease, until one of them ends."""
        connector = await connector_for(self.ctx, integration)
        parts = [asyncio.create_task(connector.listen(listener), name=f"listen:{integration.id}:connection"),
                 asyncio.create_task(self._wake(listener), name=f"listen:{integration.id}:wake"),
                 asyncio.create_task(self._renew(integration.id), name=f"listen:{integration.id}:lease")]
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
            for part in done:
                part.result()  # a listener's failure is the drop's reason
        finally:
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)

    async def _wake(self, listener: Listener) -> None:
        while True:
            await listener._changed.wait()
            listener._changed.clear()
            listener.polled_at = time.monotonic()
            await self._poll_once(listener.integration_id)

    async def _poll_once(self, integration_id: str) -> None:
        """Poll; when one is running already, poll again after it (it may have read the
        platform before the change)."""
        for _ in range(BUSY_ATTEMPTS):
            if await self._poll(integration_id):
                return
            await asyncio.sleep(BUSY_RETRY_S)
        log.warning("a woken poll found the integration busy throughout; the next one catches up",
                    integration_id=integration_id)

    async def _renew(self, integration_id: str) -> None:
        ttl = self.ctx.settings.lease_ttl_s
        while True:
            await asyncio.sleep(ttl / 3)
            if not await self.ctx.store.renew_lease(f"listen:{integration_id}", self.ctx.owner, ttl):
                raise LeaseLost(f"the listener's lease of {integration_id} was taken over")

    async def _dropped(self, listener: Listener) -> None:
        was_up, listener.is_up = listener.is_up, False
        if was_up:
            listener.drops += 1
        integration_id = listener.integration_id
        with contextlib.suppress(Exception):
            # Shielded: a listener stopped by cancellation still gives these back at once.
            await asyncio.shield(self.ctx.store.release_lease(f"listen:{integration_id}", self.ctx.owner))
            # The poll turn taken for the long safety-net interval: the usual interval again.
            await asyncio.shield(self.ctx.store.release_lease(f"poll-turn:{integration_id}", self.ctx.owner))


class LeaseLost(Exception):
    """Another replica holds the integration's listener now."""
