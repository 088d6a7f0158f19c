"""What the console knows about a platform: one description per platform, of the shape
``GET /platforms/{name}`` serves, so every platform-specific part of a page (the credentials
form, which buttons make sense) is generated from declared data.

:func:`describe` is the one place that builds it; it reads the connector class today and can
read the platform's manifest instead without any page changing.
"""

from __future__ import annotations

from typing import Any

from syncd.engine.engine import Engine


def describe(engine: Engine, name: str) -> dict[str, Any]:
    """``{"name", "title", "capabilities": {...}, "credentials": [{"name", "required",
    "secret", "generated", "description"}]}``; ``KeyError`` for an unknown platform."""
    connectors = engine.ctx.connectors
    try:
        cls = connectors.connector_class(name)
    except KeyError:
        raise KeyError(name) from None
    model = cls.Credentials
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required") or [])
    # What syncd fills in by itself when absent (a webhook secret, a verify token) is optional
    # on the form; ``prepare_credentials`` does no I/O, so asking it is free.
    generated = set(cls.prepare_credentials({}, {})[0])
    secret = {info.alias or field: not info.repr for field, info in model.model_fields.items()}
    client = engine.ctx.settings.oauth_client(name)
    return {
        "name": name,
        "title": name.replace("_", " ").title(),
        "capabilities": {
            "history": cls.has_history, "poll": cls.can_poll, "edit": cls.can_edit,
            "delete": cls.can_delete,
            "oauth": cls.oauth is not None and client.client_id is not None and client.client_secret is not None,
        },
        "credentials": [
            {"name": key, "required": key in required and key not in generated,
             "secret": secret.get(key, True), "generated": key in generated,
             "description": prop.get("description")}
            for key, prop in (schema.get("properties") or {}).items()
        ],
    }


def names(engine: Engine) -> list[str]:
    """The loaded platforms that have a connector, in name order."""
    found = []
    for name in engine.ctx.connectors.platforms():
        try:
            engine.ctx.connectors.connector_class(name)
        except KeyError:
            continue
        found.append(name)
    return found
