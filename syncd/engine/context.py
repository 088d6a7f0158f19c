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

from syncd.config import Settings
from syncd.engine.connectors import Connectors
from syncd.engine.users import Users
from syncd.kit.connector import Connector
from syncd.models import Integration
from syncd.store import Store


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
    however many workers ask at the same time); the grants it refreshes are stored."""

    async def save(credentials: dict) -> None:
        await ctx.store.set_credentials(integration.id, credentials)

    return await ctx.connectors.get(integration, lambda: ctx.store.get_credentials(integration.id), save)
