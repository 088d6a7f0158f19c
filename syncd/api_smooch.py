"""Smooch-compatible integration management (seed 004): ``/v1/apps/{appId}/integrations``.

An app that used Smooch's Create Integration moves to syncd by changing its base URL: the body
is Smooch's ``{"type", ...arguments}`` unchanged, ``appId`` is the customerId, and the answer is
Smooch's ``{"integration": {"_id", "type", ...}}`` with the non-secret fields only.

This layer is generic: ``type`` is a platform name or one of a manifest's ``aliases``, and the
arguments are the manifest's credential names or their ``aliases`` (Smooch's names), which the
credentials model accepts as they are. Errors are syncd's ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, params

from syncd.api_platforms import credential_fields
from syncd.config import Settings
from syncd.engine.engine import Engine, IntegrationError
from syncd.models import Integration

#: Smooch's channels that deliver push notifications to an app's own users: syncd syncs
#: conversations with messaging platforms and has nothing to send them.
PUSH_CHANNELS = {"apn": "Apple Push Notification", "fcm": "Firebase Cloud Messaging"}

#: Smooch's arguments that describe the integration itself rather than the platform account.
_NAME_ARGUMENT = "displayName"


def _error(status: int, code: str, message: str, details: Any = None) -> IntegrationError:
    return IntegrationError(status, code, message, details)


def smooch_router(engine: Engine, settings: Settings, guard: list[params.Depends]) -> APIRouter:
    router = APIRouter(prefix="/v1/apps/{app_id}/integrations", tags=["smooch-compatible"], dependencies=guard)
    connectors = engine.ctx.connectors

    def platform_of(kind: Any) -> str:
        if not isinstance(kind, str) or not kind:
            raise _error(422, "invalid", "type is required: the integration type, e.g. one of "
                         + ", ".join(connectors.platforms()))
        if kind in PUSH_CHANNELS:
            raise _error(422, "push_channel", f"{kind!r} ({PUSH_CHANNELS[kind]}) is a push channel, not a message "
                         "platform: syncd syncs conversations with messaging platforms and has nothing to push")
        platform = connectors.resolve(kind)
        if platform is None:
            raise _error(422, "unknown_type", f"unknown integration type {kind!r}; known types: "
                         + ", ".join(connectors.platforms()))
        return platform

    async def view(integration: Integration) -> dict[str, Any]:
        """Smooch's answer: ids and state, then every non-secret credential that is set."""
        out: dict[str, Any] = {"_id": integration.id, "type": integration.platform, "status": integration.status}
        if integration.name and integration.name != integration.platform:
            out["displayName"] = integration.name
        cls = connectors.connector_class(integration.platform)
        fields = credential_fields(cls, connectors.loaded[integration.platform])
        public = {f["name"] for f in fields if not f["secret"]}
        stored = cls.Credentials.model_validate(await engine.store.get_credentials(integration.id))
        values = stored.model_dump(by_alias=True, exclude_none=True, mode="json")
        out.update({name: value for name, value in values.items() if name in public})
        out["webhookUrl"] = settings.webhook_url(integration.platform, integration.id)
        return out

    async def owned(app_id: str, integration_id: str) -> Integration:
        integration = await engine.store.get_integration(integration_id)
        if integration is None or integration.status == "deleted" or integration.customer_id != app_id:
            raise _error(404, "not_found", f"no integration {integration_id!r} in app {app_id!r}")
        return integration

    @router.post("", status_code=201)
    async def create(app_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        arguments = dict(body)
        platform = platform_of(arguments.pop("type", None))
        name = arguments.pop(_NAME_ARGUMENT, None)
        if name is not None and not isinstance(name, str):
            raise _error(422, "invalid", f"{_NAME_ARGUMENT} must be a string")
        integration = await engine.create_integration(
            platform=platform, customer_id=app_id, name=name, credentials=arguments, settings=None)
        return {"integration": await view(integration)}

    @router.get("")
    async def list_(app_id: str, types: str | None = None) -> dict[str, Any]:
        wanted = None
        if types:
            wanted = {connectors.resolve(t.strip()) or t.strip() for t in types.split(",") if t.strip()}
        found = await engine.store.list_integrations(customer_id=app_id)
        return {"integrations": [await view(i) for i in found
                                 if i.status != "deleted" and (wanted is None or i.platform in wanted)]}

    @router.get("/{integration_id}")
    async def get(app_id: str, integration_id: str) -> dict[str, Any]:
        return {"integration": await view(await owned(app_id, integration_id))}

    @router.delete("/{integration_id}")
    async def delete(app_id: str, integration_id: str) -> dict[str, Any]:
        await owned(app_id, integration_id)
        await engine.delete_integration(integration_id)
        return {}

    return router
