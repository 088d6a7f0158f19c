"""Provider webhooks: ``GET|POST /webhooks/{platform}/{integration_id}``, and
``POST /webhooks/{platform}`` where a platform declares one URL for all its integrations;
authenticated by each platform's own signature (no bearer token).

Every platform delivery comes through here, so it is a plain Starlette route: no dependency
solving for its path segments (their operations are documented by hand, see
``webhook_operations`` and ``shared_webhook_operations``). The request URL is built only if a connector reads it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Route

from syncd.api.auth import refuse_deep
from syncd.api.errors import ApiError
from syncd.api.openapi import error_answer
from syncd.engine.engine import Engine
from syncd.kit.errors import HandshakeRefused, MalformedDelivery, SignatureError
from syncd.kit.templates import lookup
from syncd.models import Integration
from syncd.universal import WebhookRequest

WEBHOOK_PATH = "/webhooks/{platform}/{integration_id}"
#: ``JSONResponse``'s encoding, built once: ``json.dumps`` with these options builds an
#: encoder on every call, and every acknowledgement is a small JSON document.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
#: One URL for every integration of a platform that declares it (routed by the account named).
SHARED_WEBHOOK_PATH = "/webhooks/{platform}"


def _delivery(request: Request, body: bytes, *, shared: bool = False) -> WebhookRequest:
    scope = request.scope
    return WebhookRequest(
        method=scope["method"], url=lambda: str(request.url),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        query=dict(request.query_params) if scope.get("query_string") else {}, body=body, shared=shared,
        raw_query=scope.get("query_string", b"").decode(),  # as the request URL has it
    )


async def _owner(engine: Engine, platform: str, body: bytes) -> Integration:
    """The integration a delivery to the shared URL belongs to: the one whose own account the
    delivery names (its signature is checked after, with the platform-level secret)."""
    try:
        path = engine.ctx.connectors.connector_class(platform).shared_webhook_account
    except KeyError:
        path = None
    if path is None:
        raise ApiError(404, "not_found", f"{platform} has no shared webhook URL")
    try:
        account = lookup(json.loads(body), path)
    except ValueError:
        raise ApiError(400, "bad_request", "the delivery is not JSON") from None
    if account in (None, "") or isinstance(account, (dict, list)):
        raise ApiError(400, "bad_request", f"the delivery names no account ({path})")
    for found in await engine.store.self_accounts(platform, str(account)):
        integration = await engine.store.get_integration(found.integration_id or "")
        if integration is not None and integration.platform == platform and integration.status != "deleted":
            return integration
    raise ApiError(404, "not_found", f"no {platform} integration of account {account!r}")


def add_webhook_route(app: FastAPI, engine: Engine) -> None:
    store = engine.store

    async def shared_webhook(request: Request) -> Response:
        platform = engine.ctx.connectors.resolve(request.path_params["platform"]) or request.path_params["platform"]
        body = await request.body()
        refuse_deep(body)
        integration = await _owner(engine, platform, body)
        return await answered(integration, _delivery(request, body, shared=True))

    async def webhook(request: Request) -> Response:
        platform, integration_id = request.path_params["platform"], request.path_params["integration_id"]
        platform = engine.ctx.connectors.resolve(platform) or platform
        integration = await store.get_integration(integration_id)
        if integration is None or integration.platform != platform or integration.status == "deleted":
            raise ApiError(404, "not_found", f"no {platform} integration {integration_id!r}")
        body = await request.body()
        refuse_deep(body)
        return await answered(integration, _delivery(request, body))

    async def answered(integration: Integration, delivery: WebhookRequest) -> Response:
        try:
            answer = await engine.inbox.receive(integration, delivery)
        except HandshakeRefused as exc:
            raise ApiError(403, "forbidden", str(exc)) from None
        except SignatureError as exc:
            raise ApiError(401, "bad_signature", str(exc) or "signature verification failed") from None
        except MalformedDelivery as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        # An echoed handshake value (a validationToken, a hub.challenge) is the sender's text:
        # a browser must never sniff it into HTML.
        headers = {**answer.headers, "x-content-type-options": "nosniff"}
        if isinstance(answer.body, dict):
            return Response(_JSON.encode(answer.body).encode(), status_code=answer.status_code,
                            media_type="application/json", headers=headers)
        return Response(answer.body or b"", status_code=answer.status_code, media_type=answer.media_type,
                        headers=headers)

    route = Route(WEBHOOK_PATH, webhook, methods=["GET", "POST"])
    if route.methods is not None:  # Starlette adds HEAD to every GET route; a platform never sends it
        route.methods.discard("HEAD")
    app.router.routes.append(route)
    app.router.routes.append(Route(SHARED_WEBHOOK_PATH, shared_webhook, methods=["POST"]))


def webhook_operations() -> dict[str, Any]:
    """The webhook route's two operations, as FastAPI would describe them, plus their errors."""
    return {
        method.lower(): {
            "tags": ["webhooks"], "summary": f"Provider webhook ({method})", "operationId": f"webhook_{method.lower()}",
            "parameters": [_path_parameter(name, title)
                           for name, title in (("platform", "Platform"), ("integration_id", "Integration Id"))],
            "responses": {
                "200": _platform_answer(),
                "401": error_answer("The platform's signature is missing or wrong (bad_signature)"),
                "404": error_answer("No such integration of this platform (not_found)"),
            },
        }
        for method in ("GET", "POST")
    }


def shared_webhook_operations() -> dict[str, Any]:
    """The shared webhook route's one operation: a delivery routed by the account it names."""
    return {"post": {
        "tags": ["webhooks"], "summary": "Provider webhook shared by a platform's integrations",
        "description": "One URL for every integration of a platform that declares a shared webhook "
                       "(a vendor's reusable app): the delivery names the account, which names the "
                       "integration, and is verified with the platform-level secret.",
        "operationId": "shared_webhook_post",
        "parameters": [_path_parameter("platform", "Platform")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "responses": {
            "200": _platform_answer(),
            "400": error_answer("The delivery is not JSON or names no account (bad_request)"),
            "401": error_answer("The platform's signature is missing or wrong (bad_signature)"),
            "404": error_answer("The platform has no shared URL, or no integration of the account named (not_found)"),
        },
    }}


def _path_parameter(name: str, title: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": title}}


def _platform_answer() -> dict[str, Any]:
    return {"description": "The answer the platform expects", "content": {"application/json": {"schema": {}}}}
