"""Dead letters: what the outbox and the inbox gave up on, found by integration or customer,
and put back in their queue on request (``GET /deadletters``, ``POST /deadletters/{id}/retry``)."""

from __future__ import annotations

import structlog

from syncd.engine.context import EngineContext
from syncd.engine.errors import NotFound
from syncd.engine.workers import Worker
from syncd.store import DeadLetter

log = structlog.get_logger(__name__)


class DeadLetters:
    def __init__(self, ctx: EngineContext, *, events: Worker, deliveries: Worker):
        self.ctx = ctx
        self._workers = {"event": events, "delivery": deliveries}

    async def list(self, *, integration_id: str | None = None, customer_id: str | None = None,
                   limit: int = 100) -> list[DeadLetter]:
        store = self.ctx.store
        mine = None
        if customer_id is not None:
            mine = [i.id for i in await store.list_integrations(customer_id=customer_id)]
        return await store.list_dead_letters(integration_id=integration_id, customer_id=customer_id,
                                             customer_integrations=mine, limit=limit)

    async def retry(self, id: str) -> DeadLetter:
        """Put dead letter ``id`` back in its queue with a fresh attempt budget; the letter as it
        was. ``NotFound`` when there is no such dead letter (or it was already retried)."""
        letter = await self.ctx.store.get_dead_letter(id)
        if letter is None or not await self.ctx.store.revive_dead_letter(id, self.ctx.now()):
            raise NotFound("not_found", f"no dead letter {id!r} (it may have been retried already)")
        kind, item = letter
        log.info("dead letter retried", dead_letter_id=id, kind=kind, integration_id=item.integration_id)
        self._workers[kind].wake()
        return letter
