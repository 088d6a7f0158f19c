"""Integrations: create (which starts the initial import), list, read, remove, new credentials,
the platform's chats, importing chats, resync and the sync status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from syncd.api.auth import admin_dependency
from syncd.api.bodies import (
    CreateIntegration,
    ImportChats,
    Resync,
    UpdateCredentials,
    view,
)
from syncd.api.errors import ApiError
from syncd.config import Settings
from syncd.engine.engine import Engine
from syncd.models import Integration


def integration_view(settings: Settings, integration: Integration) -> dict[str, Any]:
    """An integration as answered: never its credentials, always where its webhooks go."""
    answer = view(integration)
    answer["webhookUrl"] = settings.webhook_url(integration.platform, integration.id)
    return answer


def integrations_router(engine: Engine) -> APIRouter:
    settings, store = engine.ctx.settings, engine.store
    router = APIRouter(tags=["integrations"], dependencies=[Depends(admin_dependency(settings))])

    def shown(integration: Integration) -> dict[str, Any]:
        return integration_view(settings, integration)

    @router.post("/integrations", status_code=201)
    async def create_integration(body: CreateIntegration) -> dict[str, Any]:
        integration = await engine.create_integration(
            platform=body.platform, customer_id=body.customer_id, name=body.name,
            credentials=body.credentials, settings=body.settings,
        )
        return {"integration": shown(integration)}

    @router.get("/integrations")
    async def list_integrations(customerId: str | None = None, platform: str | None = None) -> dict[str, Any]:
        known = engine.ctx.connectors.platforms()
        if platform is not None and platform not in known:
            # A typo must not look like "no integrations".
            raise ApiError(422, "unknown_platform", f"unknown platform {platform!r}; loaded: {', '.join(known)}")
        found = await store.list_integrations(customer_id=customerId, platform=platform)
        return {"integrations": [shown(i) for i in found]}

    @router.get("/integrations/{integration_id}")
    async def get_integration(integration_id: str) -> dict[str, Any]:
        return {"integration": shown(await engine.get_integration(integration_id))}

    @router.delete("/integrations/{integration_id}")
    async def delete_integration(integration_id: str) -> dict[str, Any]:
        await engine.delete_integration(integration_id)
        return {"deleted": {"integrationId": integration_id}}

    @router.put("/integrations/{integration_id}/credentials")
    async def put_credentials(integration_id: str, body: UpdateCredentials) -> dict[str, Any]:
        return {"integration": shown(await engine.update_credentials(integration_id, body.credentials))}

    @router.get("/integrations/{integration_id}/chats/available", tags=["chats"])
    async def available_chats(integration_id: str) -> dict[str, Any]:
        chats = await engine.available_chats(integration_id)
        return {"chats": [c.model_dump(by_alias=True, mode="json") for c in chats]}

    @router.post("/integrations/{integration_id}/chats/import", status_code=202, tags=["chats"])
    async def import_chats(integration_id: str, body: ImportChats) -> dict[str, Any]:
        chats = await engine.import_chats(integration_id, body.external_chat_ids)
        return {"chats": [view(c) for c in chats]}

    @router.post("/integrations/{integration_id}/resync", status_code=202)
    async def resync(integration_id: str, body: Resync | None = None) -> dict[str, Any]:
        body = body or Resync()
        chats = await engine.resync(integration_id, body.chat_ids, body.full)
        return {"resync": {"integrationId": integration_id, "full": body.full, "chatIds": [c.id for c in chats]}}

    @router.get("/integrations/{integration_id}/status")
    async def status(integration_id: str) -> dict[str, Any]:
        integration = await engine.get_integration(integration_id)
        failed = await store.list_inbox(status="failed", integration_id=integration_id, limit=20)
        return {
            "status": [view(s) for s in await store.list_sync_status(integration_id)],
            "integration": shown(integration),
            "inbox": await store.inbox_counts(integration_id),
            "deadLetters": await store.dead_letter_counts(integration_id),
            "failedDeliveries": [
                {"id": f.id, "deliveryId": f.delivery_id, "attempts": f.attempts, "error": f.error} for f in failed
            ],
        }

    return router
