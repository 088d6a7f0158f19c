"""Routes that platforms declare (``syncd/providers/<p>/plugin.py``, see ``syncd.kit.plugins``),
mounted under the paths they choose, and ``EngineHost``: what those routes may do, implemented
over the engine and the store. Nothing here names a platform."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from fastapi import APIRouter

from syncd import providers
from syncd.engine.engine import Engine
from syncd.models import Chat, Integration, UserPlatform
from syncd.universal import WebhookAnswer, WebhookRequest


class EngineHost:
    """``syncd.kit.plugins.PluginHost`` over the engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def integration(self, platform: str, integration_id: str) -> tuple[Integration, dict[str, Any]] | None:
        found = await self.live(platform, integration_id)
        if found is None:
            return None
        return found, await self.engine.store.get_credentials(integration_id)

    async def live(self, platform: str, integration_id: str) -> Integration | None:
        found = await self.engine.store.get_integration(integration_id)
        if found is None or found.platform != platform or found.status == "deleted":
            return None
        return found

    async def contacts(self, customer_id: str) -> tuple[list[UserPlatform], list[Chat]]:
        store = self.engine.store
        return await store.list_user_platforms(customer_id), await store.list_chats(customer_id=customer_id)

    async def configure(self, integration_id: str, credentials: dict[str, Any]) -> Integration:
        return await self.engine.update_credentials(integration_id, credentials)

    async def deliver(self, integration: Integration, request: WebhookRequest) -> WebhookAnswer:
        return await self.engine.inbox.receive(integration, request)


def _plugins(engine: Engine) -> dict[str, ModuleType]:
    found = {p: providers.part(p, "plugin") for p in engine.ctx.connectors.platforms()}
    return {p: module for p, module in found.items() if module is not None}


def plugins_router(engine: Engine) -> APIRouter:
    """Every platform's plugin routes, in one router."""
    host, router = EngineHost(engine), APIRouter()
    for module in _plugins(engine).values():
        router.include_router(module.router(host))
    return router
