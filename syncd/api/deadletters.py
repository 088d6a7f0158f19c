"""Dead letters: ``GET /deadletters?integrationId=&customerId=`` lists the app events and webhook
deliveries that failed for good, with their errors; ``POST /deadletters/{id}/retry`` puts one
back in its queue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from syncd.api.auth import GuardedRoute, admin_dependency
from syncd.engine.engine import Engine
from syncd.models import OutboxItem
from syncd.store import DeadLetter


def dead_letter_view(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter; the same fields for both kinds where they mean the same thing."""
    _, item = letter
    common = {"id": item.id, "integrationId": item.integration_id, "error": item.error, "attempts": item.attempts}
    if isinstance(item, OutboxItem):
        return {**common, "kind": "event", "customerId": item.customer_id, "platform": item.payload.get("platform"),
                "eventId": item.idempotency_key, "type": item.type, "failedAt": item.updated_at.isoformat()}
    return {**common, "kind": "delivery", "platform": item.platform, "deliveryId": item.delivery_id,
            "failedAt": item.received_at.isoformat()}


def deadletters_router(engine: Engine) -> APIRouter:
    router = APIRouter(route_class=GuardedRoute, tags=["dead letters"], dependencies=[Depends(admin_dependency(engine.ctx.settings))])

    @router.get("/deadletters", summary="App events and webhook deliveries that failed for good")
    async def list_dead_letters(
        integrationId: str | None = None, customerId: str | None = None,
        limit: int = Query(default=100, ge=1, le=1000),
    ) -> dict[str, Any]:
        found = await engine.dead_letters.list(integration_id=integrationId, customer_id=customerId, limit=limit)
        return {"deadLetters": [dead_letter_view(d) for d in found]}

    @router.post("/deadletters/{dead_letter_id}/retry", status_code=202,
                 summary="Put a dead letter back in its queue, with a fresh attempt budget")
    async def retry_dead_letter(dead_letter_id: str) -> dict[str, Any]:
        letter = await engine.dead_letters.retry(dead_letter_id)
        return {"deadLetter": {**dead_letter_view(letter), "status": "queued"}}

    return router
