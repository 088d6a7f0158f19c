"""Smooch-compatible integration management: ``/v1/apps/{appId}/integrations``.

An app that used Smooch's Create Integration moves to syncd by changing its base URL: the body
is Smooch's ``{"type", ...arguments}`` unchanged, ``appId`` is the customerId, and the answer is
Smooch's ``{"integration": {"_id", "type", ...}}`` with the non-secret fields only.

This layer is generic: ``type`` is a platform name or one of a manifest's ``aliases``, and the
arguments are the manifest's credential names or their ``aliases`` (Smooch's names). A creation
goes through the engine exactly as ``POST /integrations`` does (the same checks, refusals and
once-only ``setup``); only the shapes of the body and the answer are Smooch's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncd.api.auth import GuardedRoute, admin_dependency
from syncd.api.bodies import SmoochIntegration
from syncd.api.errors import ApiError
from syncd.api.integrations import with_setup
from syncd.api.platforms import credential_fields
from syncd.engine.engine import Engine
from syncd.models import MAX_ID_LENGTH, Integration

#: Smooch's channels that deliver push notifications to an app's own users: syncd syncs
#: conversations with messaging platforms and has nothing to send them.
PUSH_CHANNELS = {"apn": "Apple Push Notification", "fcm": "Firebase Cloud Messaging"}

PREFIX = "/v1/apps/{app_id}/integrations"
AppId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\x00]+$",
                            description="Smooch's app id: the customerId of the integrations")]


class SmoochAnswer(BaseModel):
    """One integration as Smooch shows it (documentation only: answers are built by hand)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str = Field(alias="_id")
    type: str = Field(description="the platform")
    status: str
    display_name: str | None = Field(default=None, alias="displayName")
    webhook_url: str = Field(alias="webhookUrl", description="where the platform must send its webhooks")
    setup: dict[str, Any] | None = Field(default=None, description="in the creation answer only: what to "
                                         "paste at the platform, with the credentials syncd generated")


class SmoochOne(BaseModel):
    integration: SmoochAnswer


class SmoochList(BaseModel):
    integrations: list[SmoochAnswer]


def smooch_router(engine: Engine) -> APIRouter:
    settings, store, connectors = engine.ctx.settings, engine.store, engine.ctx.connectors
    router = APIRouter(route_class=GuardedRoute, tags=["smooch-compatible"],
                       dependencies=[Depends(admin_dependency(settings))])

    def platform_of(kind: str) -> str:
        if kind in PUSH_CHANNELS:
            raise ApiError(422, "push_channel", f"{kind!r} ({PUSH_CHANNELS[kind]}) is a push channel, not a "
                           "message platform: syncd syncs conversations with messaging platforms")
        platform = connectors.resolve(kind)
        if platform is None:
            raise ApiError(422, "unknown_type", f"unknown integration type {kind!r}; known types: "
                           + ", ".join(connectors.platforms()))
        return platform

    async def public_credentials(integration: Integration) -> dict[str, Any]:
        """Every non-secret credential that is set, by the name the platform declares."""
        cls = connectors.connector_class(integration.platform)
        public = {f["name"] for f in credential_fields(cls, connectors.loaded[integration.platform])
                  if not f["secret"]}
        try:
            stored = cls.Credentials.model_validate(await store.get_credentials(integration.id))
        except ValidationError:
            return {}  # wiped (a disconnect) or from an older schema: nothing to show
        values = stored.model_dump(by_alias=True, exclude_none=True, mode="json")
        return {name: value for name, value in values.items() if name in public}

    async def view(integration: Integration) -> dict[str, Any]:
        out: dict[str, Any] = {"_id": integration.id, "type": integration.platform, "status": integration.status}
        if integration.name and integration.name != integration.platform:
            out["displayName"] = integration.name
        out.update(await public_credentials(integration))
        out["webhookUrl"] = settings.webhook_url(integration.platform, integration.id)
        return out

    async def owned(app_id: str, integration_id: str) -> Integration:
        integration = await store.get_integration(integration_id)
        if integration is None or integration.status == "deleted" or integration.customer_id != app_id:
            raise ApiError(404, "not_found", f"no integration {integration_id!r} in app {app_id!r}")
        return integration

    def wanted_platforms(types: str) -> set[str]:
        wanted = set()
        for kind in (t.strip() for t in types.split(",")):
            if not kind or kind in PUSH_CHANNELS:
                continue  # Smooch's own types that syncd never has: they match nothing
            platform = connectors.resolve(kind)
            if platform is None:
                # A typo must not look like "no integrations".
                raise ApiError(422, "unknown_type", f"unknown integration type {kind!r} in types; known types: "
                               + ", ".join(connectors.platforms()))
            wanted.add(platform)
        return wanted

    @router.post(PREFIX, status_code=201, response_model=None,
                 responses={201: {"model": SmoochOne, "description": "created"}})
    async def create_smooch_integration(app_id: AppId, body: SmoochIntegration) -> dict[str, Any]:
        integration = await engine.create_integration(
            platform=platform_of(body.type), customer_id=app_id, name=body.display_name,
            credentials=body.arguments, settings=None)
        return {"integration": with_setup(await view(integration), integration)}

    @router.get(PREFIX, response_model=None, responses={200: {"model": SmoochList, "description": "the app's integrations"}})
    async def list_smooch_integrations(
        app_id: AppId,
        types: Annotated[str | None, Query(max_length=2000, description="comma-separated types")] = None,
    ) -> dict[str, Any]:
        wanted = wanted_platforms(types) if types and types.strip(", ") else None
        found = await store.list_integrations(customer_id=app_id)
        return {"integrations": [await view(i) for i in found
                                 if i.status != "deleted" and (wanted is None or i.platform in wanted)]}

    @router.get(PREFIX + "/{integration_id}", response_model=None,
                responses={200: {"model": SmoochOne, "description": "the integration"}})
    async def get_smooch_integration(app_id: AppId, integration_id: str) -> dict[str, Any]:
        return {"integration": await view(await owned(app_id, integration_id))}

    @router.delete(PREFIX + "/{integration_id}", responses={200: {"description": "deleted: an empty object"}})
    async def delete_smooch_integration(app_id: AppId, integration_id: str) -> dict[str, Any]:
        await owned(app_id, integration_id)
        await engine.delete_integration(integration_id)
        return {}

    return router
