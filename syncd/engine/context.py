"""What every engine part shares: the settings, the store, the connectors, the lease owner,
a clock, and the stop signal that graceful shutdown sets."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from syncd.config import Settings
from syncd.engine.connectors import Connectors
from syncd.engine.users import Users
from syncd.kit.connector import Connector, Refresh
from syncd.kit.errors import TransientError
from syncd.models import Integration
from syncd.store import Store

log = structlog.get_logger(__name__)


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class EngineContext:
    settings: Settings
    store: Store
    connectors: Connectors
    owner: str = field(default_factory=default_owner)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: The platforms' users each integration knows, for naming senders.
    users: Users = field(default_factory=Users)

    def backoff(self, attempt: int, retry_after: float | None = None) -> datetime:
        """When to try again after ``attempt`` failures (Retry-After wins when longer)."""
        delay = min(self.settings.retry_max_s, self.settings.retry_base_s * (2 ** max(0, attempt - 1)))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return self.now() + timedelta(seconds=delay)

    async def connector(self, integration: Integration) -> Connector:
        return await connector_for(self, integration)


async def connector_for(ctx: EngineContext, integration: Integration) -> Connector:
    """The integration's cached connector, built from its stored credentials on first use (once,
    however many workers ask at the same time); the grants it refreshes are stored, fenced by
    the version it was built from: a refresh made from credentials that were replaced meanwhile
    (new ones put by an operator, another replica's refresh) is not stored, and the connector
    is rebuilt from what is. Token refreshes run under a lease, one replica at a time
    (``refresh_once``)."""
    # The closures below live as long as the connector: they hold the id, not the model.
    integration_id = integration.id
    version = 0

    async def read() -> dict:
        nonlocal version
        credentials, version = await ctx.store.get_versioned_credentials(integration_id)
        return credentials

    async def save(credentials: dict) -> None:
        nonlocal version
        stored = await ctx.store.set_credentials(integration_id, credentials, based_on=version)
        if stored is None:
            log.warning("refreshed credentials not stored: newer ones were stored meanwhile",
                        integration_id=integration_id)
            await ctx.connectors.forget(integration_id, close=False)
            return
        version = stored

    async def refresh_once(refresh: Refresh, usable: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        from syncd.engine.leases import hold  # leases build on this module

        nonlocal version
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * ctx.settings.lease_ttl_s
        while True:
            async with hold(ctx, f"refresh:{integration_id}") as held:
                current, current_version = await ctx.store.get_versioned_credentials(integration_id)
                if current_version != version and usable(current):
                    version = current_version  # another replica refreshed meanwhile: its grant is ours
                    return current
                if held:
                    return await _refresh_stored(ctx, integration_id, refresh, current, current_version)
            if loop.time() > deadline:
                raise TransientError("another replica's token refresh did not finish; retrying later")
            await asyncio.sleep(ctx.settings.worker_poll_s)

    async def _refresh_stored(ctx: EngineContext, id: str, refresh: Refresh, current: dict[str, Any],
                              based_on: int) -> dict[str, Any]:
        nonlocal version
        new = await refresh(current)
        stored = await ctx.store.set_credentials(id, new, based_on=based_on)
        if stored is None:  # an operator put new credentials meanwhile: theirs win
            new, version = await ctx.store.get_versioned_credentials(id)
            return new
        version = stored
        return new

    return await ctx.connectors.get(integration, read, save, refresh_once)
