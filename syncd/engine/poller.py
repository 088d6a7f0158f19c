"""Polling: the fallback for missed webhooks and for platforms without them.

Each integration's poll reads everything since its high-water mark (kept in the
integration-level ``sync_status``), with a look-back window so recent edits are seen, under
a lease so two replicas never poll the same integration at once.
"""

from __future__ import annotations

from typing import Any

import structlog

from syncd.engine.context import EngineContext, connector_for
from syncd.engine.importer import Importer, chat_data
from syncd.engine.ingest import IngestResult, ingest
from syncd.engine.leases import hold
from syncd.kit.errors import AuthError, CursorExpired
from syncd.models import Integration, SyncStatus

log = structlog.get_logger(__name__)


#: Back-to-back polls one scheduled poll may make while the connector says more is waiting.
MAX_ROUNDS = 10
#: How old the integration's sync status may get before a poll that found nothing writes its
#: unchanged mark again, only to refresh ``updatedAt`` (the console's "last sync activity").
MARK_REFRESH_S = 300.0


class PollBusy(Exception):
    """Another owner is polling this integration right now."""


class Poller:
    def __init__(self, ctx: EngineContext, importer: Importer):
        self.ctx = ctx
        self.importer = importer
        self._running: set[str] = set()

    async def poll(self, integration_id: str, integration: Integration | None = None, *,
                   turn_s: float | None = None) -> IngestResult | None:
        """Poll once. ``None`` when there is nothing to poll (inactive, import not started).
        Raises ``PollBusy`` when this process or another owner is polling it already, or
        when ``turn_s`` is given and another owner has taken this interval's turn.
        ``integration``: its document as the caller read it a moment ago (a scheduled poll
        reads it to find its interval), instead of reading it again under the lease.
        ``turn_s``: a scheduled poll's turn (``poll-turn:<id>``, left to expire), taken for
        that long in the lease's own round-trip."""
        # The lease is re-entrant for its owner, so it cannot tell this process's scheduled
        # poll from one a webhook asked for.
        if integration_id in self._running:
            raise PollBusy(integration_id)
        self._running.add(integration_id)
        try:
            return await self._poll(integration_id, integration, turn_s)
        finally:
            self._running.discard(integration_id)

    async def _poll(self, integration_id: str, integration: Integration | None,
                    turn_s: float | None) -> IngestResult | None:
        turn = (f"poll-turn:{integration_id}", turn_s) if turn_s is not None else None
        async with hold(self.ctx, f"poll:{integration_id}", turn=turn) as held:
            if not held:
                raise PollBusy(integration_id)
            if integration is None:
                integration = await self.ctx.store.get_integration(integration_id)
            if integration is None or integration.status != "active":
                return None
            top = await self.ctx.store.get_sync_status(integration_id)
            if top is None or top.high_watermark is None:
                return None  # the import sets the first mark
            connector = await connector_for(self.ctx, integration)
            chats = [c for c in await self.ctx.store.list_chats(integration_id=integration_id) if c.imported]
            result, state = IngestResult(), top.high_watermark
            # A connector that read one bounded batch says so with poll_requested; read on
            # (a bounded number of rounds) instead of waiting for the next tick.
            for _ in range(MAX_ROUNDS):
                try:
                    polled = await connector.poll(state, [chat_data(c) for c in chats],
                                                  self.ctx.settings.poll_lookback_s)
                except CursorExpired as exc:
                    log.warning("poll mark expired; resyncing", integration_id=integration_id, error=str(exc))
                    await self.restart(integration_id)
                    return result
                except AuthError as exc:
                    await self.ctx.store.update_integration(integration_id, status="error", status_reason=str(exc))
                    raise
                found = await ingest(self.ctx, integration, polled.changes.messages, polled.changes.chats,
                                     source="poll", known_chats={c.external_chat_id: c for c in chats})
                result.add(found)
                if self._mark_due(top, state, polled.state, found):
                    # Only the mark is written: the importer owns the other fields of this document.
                    top = await self.ctx.store.update_sync_status(integration_id, None, high_watermark=polled.state)
                state = polled.state
                if polled.changes.resync_requested:
                    await self.restart(integration_id)
                    break
                if not polled.changes.poll_requested or self.ctx.stopping.is_set():
                    break
            return result

    def _mark_due(self, top: SyncStatus, before: Any, after: Any, found: IngestResult) -> bool:
        """Whether a round's mark is written: it moved, or the round changed something, or the
        stored status is older than ``MARK_REFRESH_S``. A round that found nothing at an
        unchanged mark (most polls) writes nothing; the refresh keeps the status's
        ``updatedAt``, the console's "last sync activity", within that age."""
        if after != before or found.inserted or found.updated or found.deleted:
            return True
        return (self.ctx.now() - top.updated_at).total_seconds() >= MARK_REFRESH_S

    async def restart(self, integration_id: str) -> None:
        """The platform can no longer say what changed since our mark: take a new mark and
        re-read every imported chat in full (idempotent; marks what is gone as deleted)."""
        integration = await self.ctx.store.get_integration(integration_id)
        if integration is None:
            return  # deleted meanwhile: nothing to re-read
        connector = await connector_for(self.ctx, integration)
        if not connector.has_history:
            # Nothing can be re-read; what was stored from webhooks is all there is.
            log.warning("resync requested by a platform without history; nothing to re-read",
                        integration_id=integration_id)
            return
        chats = [c for c in await self.ctx.store.list_chats(integration_id=integration_id) if c.imported]
        mark = (await connector.poll(None, [chat_data(c) for c in chats], 0)).state
        await self.ctx.store.update_sync_status(integration_id, None, high_watermark=mark)
        await self.importer.plan_chats(integration, [chat_data(c) for c in chats], full=True)
        self.importer.kick(integration_id)
