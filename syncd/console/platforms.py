"""What the console knows about a platform: exactly what ``GET /platforms/{name}`` serves
(``syncd.api.platforms.describe``, read from the manifests), so every platform-specific part of a
page (the credentials form, which buttons make sense) is generated from declared data."""

from __future__ import annotations

from typing import Any

from syncd.api.platforms import describe as describe_platform
from syncd.engine.engine import Engine


def describe(engine: Engine, name: str) -> dict[str, Any]:
    """The platform's description, ``oauth`` true only where its OAuth app is configured;
    ``KeyError`` for an unknown platform."""
    connectors = engine.ctx.connectors
    found = connectors.resolve(name)
    if found is None:
        raise KeyError(name)
    settings = engine.ctx.settings
    described = describe_platform(found, connectors.classes[found], connectors.loaded[found], settings)
    client = settings.oauth_client(found)
    configured = client.client_id is not None and client.client_secret is not None
    described["capabilities"]["oauth"] = described["capabilities"]["oauth"] and configured
    for field in described["credentials"]:
        field["required"] = field["required"] and not field["generated"]
    return described


def names(engine: Engine) -> list[str]:
    """The loaded platforms, in name order."""
    return engine.ctx.connectors.platforms()
