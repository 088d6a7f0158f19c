"""The platforms' users: kept in ``user_platforms`` and used to name message senders.

Where a platform can list its users (its connector's ``can_list_users``), an integration's
import lists them and upserts them into ``user_platforms``. They are listed again when a
message names a sender the integration does not know, or when the list has grown old; never
more often than every ``RELIST_AFTER_S`` per integration, so a sender the platform does not
list (a bot, a guest) costs one listing, not one per message.

``Users.name_senders`` fills a message's missing sender name from the integration's users,
held in memory: one store read per integration per process, none per message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from syncd.kit.errors import ProviderError
from syncd.mapping import MappingError
from syncd.models import Integration
from syncd.universal import MessageData

if TYPE_CHECKING:
    from syncd.engine.context import EngineContext
    from syncd.kit.connector import Connector

log = structlog.get_logger(__name__)

#: The least time between two listings of one integration's users.
RELIST_AFTER_S = 300.0
#: A listing older than this is refreshed at the next message that has a sender to name.
MAX_AGE_S = 6 * 3600.0
#: How long a webhook or poll batch waits for a listing it caused; a big workspace's listing
#: (rate-limited pages) goes on in the background, and later messages get the names.
INLINE_WAIT_S = 5.0


@dataclass
class _Known:
    names: dict[str, str] = field(default_factory=dict)
    #: When this process last listed the platform's users (``None``: not yet).
    listed_at: float | None = None


class Users:
    """Each integration's known users (id -> display name), for naming senders."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._known: dict[str, _Known] = {}
        self._listing: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[int]] = set()

    async def known(self, ctx: EngineContext, integration: Integration) -> _Known:
        known = self._known.get(integration.id)
        if known is None:
            stored = await ctx.store.list_user_platforms(integration.customer_id, integration.platform)
            names = {u.external_user_id: u.display_name for u in stored if u.display_name}
            known = self._known.setdefault(integration.id, _Known(names))
        return known

    def _due(self, known: _Known, age_s: float) -> bool:
        return known.listed_at is None or self.clock() - known.listed_at >= age_s

    async def refresh(self, ctx: EngineContext, integration: Integration, connector: Connector | None = None,
                      *, age_s: float = 0.0) -> int:
        """List the platform's users and store them, unless listed less than ``age_s`` (and
        ``RELIST_AFTER_S``) ago; how many were listed. A failure is logged, not raised: names
        are a courtesy, and the sync goes on without them."""
        if not ctx.connectors.connector_class(integration.platform).can_list_users:
            return 0
        async with self._listing.setdefault(integration.id, asyncio.Lock()):
            known = await self.known(ctx, integration)
            if not self._due(known, max(age_s, RELIST_AFTER_S if known.listed_at is not None else 0.0)):
                return 0
            known.listed_at = self.clock()
            try:
                connector = connector or await ctx.connector(integration)
                users = await connector.list_users()
            except (ProviderError, MappingError) as exc:
                log.warning("could not list the platform's users", integration_id=integration.id, error=str(exc))
                return 0
            await ctx.store.upsert_users(integration.customer_id, integration.platform, integration.id, users)
            known.names.update({u.external_user_id: u.display_name for u in users if u.display_name})
            return len(users)

    async def name_senders(self, ctx: EngineContext, integration: Integration,
                           messages: list[MessageData]) -> list[MessageData]:
        """``messages`` with each missing sender name filled from the integration's users;
        an unknown sender (or an old list) has the users listed again first."""
        if not any(m.sender.name is None and m.sender.external_user_id for m in messages):
            return messages
        known = await self.known(ctx, integration)
        unknown = any(m.sender.name is None and m.sender.external_user_id not in known.names
                      for m in messages if m.sender.external_user_id)
        if unknown or self._due(known, MAX_AGE_S):
            task = asyncio.ensure_future(self.refresh(ctx, integration, age_s=RELIST_AFTER_S if unknown else MAX_AGE_S))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            try:
                await asyncio.wait_for(asyncio.shield(task), INLINE_WAIT_S)
            except TimeoutError:
                pass
        return [self._named(m, known.names) for m in messages]

    @staticmethod
    def _named(message: MessageData, names: dict[str, str]) -> MessageData:
        sender = message.sender
        name = names.get(sender.external_user_id or "") if sender.name is None else None
        if name is None:
            return message
        return message.model_copy(update={"sender": sender.model_copy(update={"name": name})})

    async def close(self) -> None:
        """Cancel the listings still running in the background (at shutdown)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def forget(self, integration_id: str) -> None:
        self._known.pop(integration_id, None)
        self._listing.pop(integration_id, None)
