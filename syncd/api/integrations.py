"""Integrations: create (which starts the initial import), list, read, remove, new credentials,
the platform's chats, importing chats, resync and the sync status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from syncd.api.auth import GuardedRoute, admin_dependency
from syncd.api.bodies import (
    CreateIntegration,
    ImportChats,
    Pause,
    Resync,
    UpdateCredentials,
    view,
)
from syncd.api.errors import ApiError
from syncd.config import Settings
from syncd.engine.engine import Engine
from syncd.logs import is_secret_key
from syncd.models import Integration


def integration_view(settings: Settings, integration: Integration, hidden: tuple[str, ...] = ()) -> dict[str, Any]:
    """An integration as answered: never its credentials nor a secret setting, always where its
    webhooks go."""
    answer = view(integration)
    # Integrations stored before their secret settings moved to the credentials.
    if isinstance(answer.get("settings"), dict):
        answer["settings"] = {k: v for k, v in answer["settings"].items()
                              if k not in hidden and not (is_secret_key(k) and isinstance(v, str))}
    answer["webhookUrl"] = settings.webhook_url(integration.platform, integration.id)
    return answer


def with_setup(answer: dict[str, Any], integration: Integration) -> dict[str, Any]:
    """The creation answer: ``answer`` with what the user must paste at the platform. Shown this
    once, since it may carry a secret syncd generated (the URL it pushes to, with its token)."""
    if integration.setup:
        answer["setup"] = integration.setup
        # The URLs to paste (the webhook URL with its token, a plugin URL), at the top too.
        answer.update({k: v for k, v in integration.setup.items() if k.endswith("Url") and isinstance(v, str)})
    return answer


def integrations_router(engine: Engine) -> APIRouter:
    settings, store = engine.ctx.settings, engine.store
    router = APIRouter(route_class=GuardedRoute, tags=["integrations"], dependencies=[Depends(admin_dependency(settings))])

    def shown(integration: Integration) -> dict[str, Any]:
        try:
            hidden = engine.ctx.connectors.connector_class(integration.platform).secret_settings
        except KeyError:
            hidden = ()
        return integration_view(settings, integration, hidden)

    @router.post("/integrations", status_code=201)
    async def create_integration(body: CreateIntegration) -> dict[str, Any]:
        integration = await engine.create_integration(
            platform=body.platform, customer_id=body.customer_id, name=body.name,
            credentials=body.credentials, settings=body.settings,
        )
        return {"integration": with_setup(shown(integration), integration)}

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
    async def delete_integration(integration_id: str, purge: str | None = None) -> dict[str, Any]:
        if purge not in (None, "true", "false", "1", "0"):
            raise ApiError(422, "invalid", "purge must be true or false")
        done = await engine.delete_integration(integration_id, purge=purge in ("true", "1"))
        disconnect = done["disconnect"]
        return {"deleted": {
            "integrationId": integration_id,
            "disconnect": disconnect.model_dump(by_alias=True, mode="json", exclude={"maintenance"}),
            "leftAtPlatform": disconnect.left_at_platform,
            "purged": done["purged"],
        }}

    @router.post("/integrations/{integration_id}/pause")
    async def pause_integration(integration_id: str, body: Pause | None = None) -> dict[str, Any]:
        reason = body.reason if body is not None else None
        return {"integration": shown(await engine.pause_integration(integration_id, reason))}

    @router.post("/integrations/{integration_id}/resume")
    async def resume_integration(integration_id: str) -> dict[str, Any]:
        return {"integration": shown(await engine.resume_integration(integration_id))}

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
        statuses = await store.list_sync_status(integration_id)
        return {
            "status": [view(s) for s in statuses],
            "integration": shown(integration),
            "fullSync": engine.full_sync_view(integration, next((s for s in statuses if s.chat_id is None), None)),
            "listener": await engine.listeners.view(integration),
            "inbox": await store.inbox_counts(integration_id),
            "deadLetters": await store.dead_letter_counts(integration_id),
            "failedDeliveries": [
                {"id": f.id, "deliveryId": f.delivery_id, "attempts": f.attempts, "error": f.error} for f in failed
            ],
        }

    return router
