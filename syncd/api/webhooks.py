"""Provider webhooks: ``GET|POST /webhooks/{platform}/{integration_id}``, authenticated by each
platform's own signature (no bearer token).

Every platform delivery comes through here, so it is a plain Starlette route: no dependency
solving for its two path segments (its operations are documented by hand, see
``webhook_operations``). The request URL is built only if a connector reads it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.api.auth import refuse_deep
from syncd.api.errors import ApiError
from syncd.api.openapi import error_answer
from syncd.engine.engine import Engine
from syncd.kit.errors import HandshakeRefused, MalformedDelivery, SignatureError
from syncd.universal import WebhookRequest

WEBHOOK_PATH = "/webhooks/{platform}/{integration_id}"


def add_webhook_route(app: FastAPI, engine: Engine) -> None:
    store = engine.store

    async def webhook(request: Request) -> Response:
        platform, integration_id = request.path_params["platform"], request.path_params["integration_id"]
        platform = engine.ctx.connectors.resolve(platform) or platform
        integration = await store.get_integration(integration_id)
        if integration is None or integration.platform != platform or integration.status == "deleted":
            raise ApiError(404, "not_found", f"no {platform} integration {integration_id!r}")
        body = await request.body()
        refuse_deep(body)
        scope = request.scope
        delivery = WebhookRequest(
            method=scope["method"], url=lambda: str(request.url),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            query=dict(request.query_params) if scope.get("query_string") else {}, body=body,
        )
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
        headers = {"x-content-type-options": "nosniff"}
        if isinstance(answer.body, dict):
            return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)
        return Response(answer.body or b"", status_code=answer.status_code, media_type=answer.media_type,
                        headers=headers)

    route = Route(WEBHOOK_PATH, webhook, methods=["GET", "POST"])
    if route.methods is not None:  # Starlette adds HEAD to every GET route; a platform never sends it
        route.methods.discard("HEAD")
    app.router.routes.append(route)


def webhook_operations() -> dict[str, Any]:
    """The webhook route's two operations, as FastAPI would describe them, plus their errors."""
    return {
        method.lower(): {
            "tags": ["webhooks"], "summary": f"Provider webhook ({method})", "operationId": f"webhook_{method.lower()}",
            "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": title}}
                           for name, title in (("platform", "Platform"), ("integration_id", "Integration Id"))],
            "responses": {
                "200": {"description": "The answer the platform expects",
                        "content": {"application/json": {"schema": {}}}},
                "401": error_answer("The platform's signature is missing or wrong (bad_signature)"),
                "404": error_answer("No such integration of this platform (not_found)"),
            },
        }
        for method in ("GET", "POST")
    }
