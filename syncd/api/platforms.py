"""``GET /platforms`` and ``GET /platforms/{name}``: every loaded platform with its capabilities,
its credential and settings schema (secrets marked) and what to configure at the platform.

Everything here is read from the manifests and the connector classes bound to them, so an
operator's manifest in ``SYNCD_MAPPINGS_DIR`` is described like a built-in platform.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, params
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from syncd.api.auth import GuardedRoute
from syncd.config import Settings
from syncd.engine.connectors import Connectors
from syncd.kit.connector import Connector
from syncd.kit.loader import Loaded


def credential_fields(cls: type[Connector], loaded: Loaded) -> list[dict[str, Any]]:
    """The credentials a platform takes, in the order it declares them."""
    declared = loaded.manifest.credentials
    model: type[BaseModel] = cls.Credentials
    out = []
    for name, info in model.model_fields.items():
        alias = info.alias or name
        spec = declared.get(alias)
        out.append({
            "name": alias,
            "required": info.is_required(),
            "secret": spec.secret if spec else info.repr is False,
            "generated": bool(spec and spec.generate),
            "aliases": list(spec.aliases) if spec else [],
            "description": (spec.description if spec else None) or info.description,
        })
    return out


def describe(name: str, cls: type[Connector], loaded: Loaded, settings: Settings) -> dict[str, Any]:
    manifest = loaded.manifest
    return {
        "name": name,
        "title": manifest.title or name,
        "aliases": list(manifest.aliases),
        "docs": manifest.docs,
        "custom": loaded.custom,
        "capabilities": {
            "history": cls.has_history, "poll": cls.can_poll, "edit": cls.can_edit, "delete": cls.can_delete,
            "send": manifest.capabilities.send, "webhooks": manifest.capabilities.webhooks,
            "listChats": manifest.capabilities.list_chats, "listUsers": manifest.capabilities.list_users,
            "oauth": cls.oauth is not None, "listen": cls.can_listen,
        },
        "credentials": credential_fields(cls, loaded),
        "settings": {key: spec.model_dump(by_alias=True, exclude_none=True) for key, spec in manifest.settings.items()},
        "webhook": {
            "url": settings.webhook_url(name, "{integrationId}"),
            "setup": manifest.webhook.setup,
            "generated": [f["name"] for f in credential_fields(cls, loaded) if f["generated"]],
        },
    }


def platforms_router(connectors: Connectors, settings: Settings, guard: list[params.Depends]) -> APIRouter:
    router = APIRouter(route_class=GuardedRoute, tags=["platforms"], dependencies=guard)

    @router.get("/platforms")
    async def list_platforms() -> dict[str, Any]:
        return {"platforms": [describe(name, connectors.classes[name], connectors.loaded[name], settings)
                              for name in connectors.platforms()]}

    @router.get("/platforms/{name}")
    async def get_platform(name: str) -> dict[str, Any]:
        found = connectors.resolve(name)
        if found is None:
            raise HTTPException(404, f"no platform {name!r}; loaded: {', '.join(connectors.platforms())}")
        return {"platform": describe(found, connectors.classes[found], connectors.loaded[found], settings)}

    return router
