"""An integration's life after its creation: periodic full syncs, pause and resume, and the
disconnect that undoes at the platform what syncd set up there.

- **Full syncs** re-read every imported chat from its first page on a schedule (the platform's
  declared ``full_sync_every_s``, or ``settings.fullSyncEveryS``; ``0`` turns them off), so what
  increments cannot see (messages gone at the platform, edits no event announced) is found.
  Each run is claimed in the store (replicas race for it), planned as ordinary full resyncs
  marked ``background``, and run by the importer under the integration's import lease, in the
  HTTP client's background lane. The due times carry jitter, so integrations created together
  do not sync together.
- **Pause** stops polls, imports, full syncs, maintenance and outbox deliveries (each checks the
  status before its next page or call); webhooks and app events are still accepted and wait in
  the inbox and outbox, which **resume** makes due at once.
- **Disconnect** (on delete) asks the connector to ``unsubscribe``; one attempt is bounded by
  ``SYNCD_DISCONNECT_TIMEOUT_S`` and the rest are retried in the background. The credentials are
  wiped once it is done or given up.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import structlog

from syncd import metrics
from syncd.engine.connectors import UnknownPlatform
from syncd.engine.context import EngineContext, connector_for
from syncd.engine.errors import NotFound
from syncd.engine.importer import Importer
from syncd.engine.leases import hold
from syncd.kit.connector import Connector
from syncd.kit.errors import AuthError
from syncd.models import Disconnect, Integration

log = structlog.get_logger(__name__)

#: The first full sync of an integration comes this share of a period (or more) after the
#: schedule first sees it, each next one a period later give or take ``JITTER``.
FIRST_AT = 0.5
JITTER = 0.1
#: How long a delivery for a paused integration is put back before it is looked at again
#: (a resume makes it due at once, on whichever replica it happens).
PAUSED_RECHECK_S = 30.0


def full_sync_period(cls: type[Connector], integration: Integration) -> float | None:
    """Seconds between the integration's full syncs; None when it has none."""
    if not cls.has_history:
        return None
    value = integration.settings.get("fullSyncEveryS", cls.full_sync_every_s)
    return float(value) if value else None


def check_every(period: float) -> float:
    """How often a scheduler asks whether a full sync is due: often enough that a run starts
    within a quarter of its period, at most hourly and at least every second."""
    return min(3600.0, max(1.0, period / 4))


def valid_period(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


class Lifecycle:
    def __init__(self, ctx: EngineContext, importer: Importer):
        self.ctx = ctx
        self.importer = importer

    # -- periodic full syncs ---------------------------------------------------------------
    async def full_sync(self, integration_id: str) -> bool:
        """Start the integration's full sync if it is due; True if this call started it."""
        if self.ctx.stopping.is_set():
            return False
        integration = await self.ctx.store.get_integration(integration_id)
        if integration is None or integration.status != "active":
            return False
        try:
            period = full_sync_period(self.ctx.connectors.connector_class(integration.platform), integration)
        except UnknownPlatform:
            return False
        top = await self.ctx.store.get_sync_status(integration_id)
        if not period or top is None or top.phase != "done":
            return False  # none wanted, or the first import has not listed the chats yet
        now = self.ctx.now()
        if top.next_full_sync_at is None:
            first = now + timedelta(seconds=period * random.uniform(FIRST_AT, 1.0))
            await self.ctx.store.update_sync_status(integration_id, None, next_full_sync_at=first)
            return False
        if top.next_full_sync_at > now:
            return False
        following = now + timedelta(seconds=period * random.uniform(1 - JITTER, 1 + JITTER))
        if await self.importer.plan_full_sync(integration, following) is None:
            return False
        self.importer.kick(integration_id)
        return True

    # -- pause and resume ------------------------------------------------------------------
    async def pause(self, integration: Integration, reason: str | None) -> Integration:
        if integration.status == "paused":
            return integration
        updated = await self.ctx.store.update_integration(
            integration.id, status="paused", status_reason=reason, paused_at=self.ctx.now())
        if updated is None:
            raise NotFound("not_found", f"no integration {integration.id!r}")
        log.info("integration paused", integration_id=integration.id, reason=reason)
        return updated

    async def resume(self, integration: Integration) -> Integration:
        """Active again; what waited while paused is due now, not after its backoff."""
        if integration.status == "active":
            return integration
        updated = await self.ctx.store.update_integration(
            integration.id, status="active", status_reason=None, paused_at=None)
        if updated is None:
            raise NotFound("not_found", f"no integration {integration.id!r}")
        now = self.ctx.now()
        await self.ctx.store.inbox_wake(integration.id, now)
        await self.ctx.store.outbox_wake(integration.id, now)
        log.info("integration resumed", integration_id=integration.id)
        return updated

    # -- disconnect ------------------------------------------------------------------------
    async def start_disconnect(self, integration: Integration) -> Disconnect:
        """Mark the integration deleted, with what its disconnect must undo, and try once."""
        try:
            cls: type[Connector] | None = self.ctx.connectors.connector_class(integration.platform)
        except UnknownPlatform:
            cls = None
        top = await self.ctx.store.get_sync_status(integration.id)
        disconnect = Disconnect(
            maintenance=top.maintenance if top else None, next_attempt_at=self.ctx.now(),
            left_at_platform=[cls.manual_teardown] if cls is not None and cls.manual_teardown else [],
        )
        await self.ctx.store.update_integration(integration.id, status="deleted", disconnect=disconnect)
        if cls is None:  # its platform is no longer loaded: nothing can be undone
            return await self._finish(integration, disconnect, "given_up", "the platform is not loaded")
        return await self.disconnect(integration, disconnect)

    async def retry_disconnects(self) -> int:
        """Another attempt for every deleted integration whose disconnect is due; how many."""
        due = await self.ctx.store.due_disconnects(self.ctx.now())
        for integration in due:
            if self.ctx.stopping.is_set():
                break
            if integration.disconnect is not None:
                await self.disconnect(integration, integration.disconnect)
        return len(due)

    async def disconnect(self, integration: Integration, disconnect: Disconnect) -> Disconnect:
        """One attempt at ``unsubscribe``, under a lease (one replica at a time)."""
        async with hold(self.ctx, f"disconnect:{integration.id}") as held:
            if not held:
                return disconnect
            disconnect = disconnect.model_copy(update={"attempts": disconnect.attempts + 1})
            try:
                connector = await connector_for(self.ctx, integration)
                await asyncio.wait_for(connector.unsubscribe(disconnect.maintenance),
                                       self.ctx.settings.disconnect_timeout_s)
            except AuthError as exc:
                # The platform no longer accepts these credentials: nothing can be undone with them.
                return await self._finish(integration, disconnect, "given_up", str(exc))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if disconnect.attempts >= self.ctx.settings.disconnect_max_attempts:
                    return await self._finish(integration, disconnect, "given_up", error)
                disconnect = disconnect.model_copy(update={
                    "last_error": error, "next_attempt_at": self.ctx.backoff(disconnect.attempts)})
                await self.ctx.store.update_integration(integration.id, disconnect=disconnect)
                metrics.DISCONNECTS.labels(integration.platform, "retrying").inc()
                log.warning("disconnect failed; will retry", integration_id=integration.id, error=error)
                return disconnect
            finally:
                await self.ctx.connectors.forget(integration.id)
            return await self._finish(integration, disconnect, "done", None)

    async def _finish(self, integration: Integration, disconnect: Disconnect, state: str,
                      error: str | None) -> Disconnect:
        left = list(disconnect.left_at_platform)
        if state == "given_up":
            left.append(f"what syncd set up at {integration.platform} (webhooks, subscriptions) could "
                        f"not be removed ({error}); remove it in the platform's settings")
        disconnect = disconnect.model_copy(update={
            "state": state, "last_error": error, "next_attempt_at": None, "finished_at": self.ctx.now(),
            "left_at_platform": left, "maintenance": None})
        await self.ctx.store.wipe_credentials(integration.id)
        await self.ctx.store.update_integration(integration.id, disconnect=disconnect)
        metrics.DISCONNECTS.labels(integration.platform, state).inc()
        log.info("integration disconnected", integration_id=integration.id, state=state)
        return disconnect
