"""App change events: ``POST /events``, signed with ``X-Syncd-Signature`` and kept in the
outbox before the 202 answer. The body is read raw (the signature covers its bytes), so its
schema is declared by hand (``event_schemas``)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from syncd.api.auth import GuardedRoute, refuse_deep
from syncd.api.errors import ApiError, field_name
from syncd.engine.engine import Engine
from syncd.engine.notifier import sign
from syncd.models import AppEvent, OutboxItem

#: The OpenAPI name of the event signature scheme (declared by ``syncd.api.openapi``).
SIGNATURE_SCHEME = "eventSignature"


def event_schemas() -> dict[str, Any]:
    """``AppEvent`` and the schemas it refers to, for the OpenAPI components."""
    schema = AppEvent.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "AppEvent": schema}


def _signed_event(secret: str, body: bytes, signature: str) -> AppEvent:
    """The event in ``body`` once its signature, JSON and fields are checked."""
    # Hex is case-insensitive, as everywhere a signature is checked.
    if not hmac.compare_digest(signature.strip().lower().encode(), sign(secret, body).encode()):
        raise ApiError(401, "bad_signature", "X-Syncd-Signature is missing or does not match the body")
    refuse_deep(body)
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "bad_request", "body is not valid JSON") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "bad_request", "body must be a JSON object")
    try:
        return AppEvent.model_validate(raw)
    except ValidationError as exc:
        details = [{"field": field_name(e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        raise ApiError(422, "invalid", "event is invalid", details) from None


def event_answer(event_id: str, item: OutboxItem) -> dict[str, Any]:
    """What an event post answers; a repeated id answers with what became of the first post."""
    answer: dict[str, Any] = {"eventId": event_id, "status": {"sending": "queued"}.get(item.status, item.status)}
    if item.status == "sent" and item.result is not None:
        answer["result"] = item.result
    elif item.status == "dead" and item.error:
        answer["error"] = item.error
        answer["deadLetterId"] = item.id
    return answer


def events_router(engine: Engine) -> APIRouter:
    settings = engine.ctx.settings
    router = APIRouter(route_class=GuardedRoute, tags=["events"])
    body_schema = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/AppEvent"}}}}

    @router.post("/events", status_code=202, openapi_extra={
        "requestBody": body_schema, "security": [{SIGNATURE_SCHEME: []}]})
    async def events(request: Request) -> JSONResponse:
        secret = settings.app_webhook_secret
        if secret is None:
            raise ApiError(503, "not_configured", "SYNCD_APP_WEBHOOK_SECRET is not set; events are disabled")
        event = _signed_event(secret.get_secret_value(), await request.body(),
                              request.headers.get("x-syncd-signature", ""))
        item, _ = await engine.exporter.accept(event)
        engine.outbox.events.wake()
        return JSONResponse(event_answer(event.id, item), status_code=202)

    return router
