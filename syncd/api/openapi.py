"""The OpenAPI document: FastAPI's, plus what it cannot see. The webhook route (a plain
Starlette route), the hand-declared ``AppEvent`` body, the event signature scheme, and the one
error body every 4xx and 5xx answer has (FastAPI would document 422 as its own ``detail``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "title": "Error",
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "description": "a stable word for programs, e.g. not_found"},
        "message": {"type": "string", "description": "what went wrong, for people"},
        "details": {"description": "more about it where there is more, e.g. the invalid fields"},
    }}},
}
#: The event signature, declared for ``POST /events`` (the admin bearer scheme comes from
#: ``syncd.api.auth``'s ``HTTPBearer`` dependency).
SIGNATURE_SECURITY = {"type": "apiKey", "in": "header", "name": "X-Syncd-Signature",
                      "description": "sha256=<hex HMAC-SHA256 of the raw body, keyed with SYNCD_APP_WEBHOOK_SECRET>"}


def error_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _with_error_answers(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in list(responses):
        if status[0] in "45":
            responses[status] = error_answer(responses[status].get("description") or "Error")
    responses.setdefault("4XX", error_answer("Refused: the error says why (see its code)"))
    responses.setdefault("5XX", error_answer("Not available now, or an internal error"))


def _route_paths(routes: list[Any]) -> list[str]:
    """Every route's path in the app's order, routers included (none here has a prefix)."""
    paths: list[str] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            paths += _route_paths(included.routes)
        else:
            paths.append(getattr(route, "path_format", ""))
    return paths


def _in_route_order(paths: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """The schema's paths in the order of the routes (so /docs lists them in that order)."""
    order: dict[str, int] = {}
    for n, path in enumerate(_route_paths(routes)):
        order.setdefault(path, n)
    return dict(sorted(paths.items(), key=lambda item: order.get(item[0], len(order))))


def openapi_builder(app: FastAPI, *, extra_paths: dict[str, Any], extra_schemas: dict[str, Any],
                    extra_security: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The ``app.openapi`` replacement: built once, on first read."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            schemas.update({**extra_schemas, "Error": ERROR_SCHEMA})
            components.setdefault("securitySchemes", {}).update(extra_security)
            paths = {**schema["paths"], **extra_paths}
            for operations in paths.values():
                for operation in operations.values():
                    _with_error_answers(operation)
            schema["paths"] = _in_route_order(paths, app.routes)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
