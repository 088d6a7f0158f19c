"""The HTTP API (docs/architecture.md, README "HTTP API"): admin endpoints behind a bearer token, provider webhooks
authenticated by each platform's own signature, and app events signed with HMAC.

Every error is ``{"error": {"code", "message"}}`` with a fitting status.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from syncd import metrics
from syncd.api_platforms import platforms_router
from syncd.api_smooch import smooch_router
from syncd.connect import connect_router
from syncd.engine.engine import Engine, IntegrationError
from syncd.engine.exporter import EventRejected
from syncd.engine.notifier import message_view, sign
from syncd.kit.errors import HandshakeRefused, MalformedDelivery, SignatureError
from syncd.models import AppEvent, Chat, Integration, UserPlatform
from syncd.universal import WebhookRequest


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
                 422: "invalid", 429: "rate_limited", 503: "unavailable"}


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    class TooLarge(Exception):
        pass

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await self._answer(send, 400, "bad_request", "invalid Content-Length")
                return
            if int(length) > self.max_bytes:
                await self._answer(send, 413, "too_large", f"body over {self.max_bytes} bytes")
                return
        seen = 0
        started = too_large = answered = False

        async def answer_413() -> None:
            nonlocal answered
            if not answered:
                answered = True
                await self._answer(send, 413, "too_large", f"body over {self.max_bytes} bytes")

        async def limited() -> dict:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyLimit.TooLarge()
            return message

        async def tracking(message: dict) -> None:
            nonlocal started
            if too_large and not started:
                # FastAPI turns any failure while parsing a body into its own 400; the client
                # must hear why the body was refused.
                await answer_413()
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except BodyLimit.TooLarge:
            if not started:
                await answer_413()

    @staticmethod
    async def _answer(send: Any, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# -- request bodies (they also document the API in /docs) --------------------------------------
class _In(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class CreateIntegration(_In):
    platform: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=512)
    name: str | None = Field(default=None, max_length=512)
    credentials: dict[str, Any]
    settings: dict[str, Any] | None = None


class UpdateCredentials(_In):
    credentials: dict[str, Any]


class ImportChats(_In):
    external_chat_ids: list[str] = Field(min_length=1, max_length=1000)


class Resync(_In):
    chat_ids: list[str] | None = Field(default=None, max_length=10000)
    full: bool = False


class UserPlatformIn(_In):
    customer_id: str = Field(min_length=1, max_length=512)
    platform: str = Field(min_length=1, max_length=64)
    external_user_id: str = Field(min_length=1, max_length=512)
    external_email: str | None = Field(default=None, max_length=512)
    display_name: str | None = Field(default=None, max_length=512)
    integration_id: str | None = None
    is_self: bool = False


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "credentials", "botToken")`` -> ``credentials.botToken``; the body itself is ``body``."""
    inner = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(inner) or "body"


def _view(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json")


WEBHOOK_PATH = "/webhooks/{platform}/{integration_id}"


def _error_answer(description: str) -> dict[str, Any]:
    error = {"type": "object", "required": ["code", "message"],
             "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"], "properties": {"error": error}}}}}


def _webhook_operations() -> dict[str, Any]:
    """The webhook route is a plain Starlette route, which FastAPI does not document: its two
    operations, as FastAPI described them, plus the errors they answer."""
    return {
        method.lower(): {
            "tags": ["webhooks"], "summary": f"Provider webhook ({method})", "operationId": f"webhook_{method.lower()}",
            "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": title}}
                           for name, title in (("platform", "Platform"), ("integration_id", "Integration Id"))],
            "responses": {
                "200": {"description": "The answer the platform expects",
                        "content": {"application/json": {"schema": {}}}},
                "401": _error_answer("The platform's signature is missing or wrong (bad_signature)"),
                "404": _error_answer("No such integration of this platform (not_found)"),
            },
        }
        for method in ("GET", "POST")
    }


def _in_route_order(paths: dict[str, Any], routes: list[Any]) -> dict[str, Any]:
    """The schema's paths in the order of the routes (so /docs lists them as before)."""
    order: dict[str, int] = {}
    for n, route in enumerate(routes):
        order.setdefault(getattr(route, "path_format", ""), n)
    return dict(sorted(paths.items(), key=lambda item: order.get(item[0], len(routes))))


def create_app(engine: Engine) -> FastAPI:
    settings = engine.ctx.settings
    store = engine.store
    app = FastAPI(title="syncd", version="0.1.0",
                  description="Two-way message sync between your app and messaging platforms.")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(IntegrationError)
    async def _integration_error(_: Request, exc: IntegrationError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc), exc.details), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            return JSONResponse(error_body("bad_request", "body is not valid JSON"), status_code=400)
        if "json" not in request.headers.get("content-type", "") and any(
                tuple(e["loc"]) == ("body",) and e.get("type") != "missing" for e in errors):
            # FastAPI reads a body as JSON only when it says so (``curl -d`` says it is a form).
            return JSONResponse(error_body("bad_request", "send the body as JSON with "
                                           "Content-Type: application/json"), status_code=400)
        if any(e.get("type") == "missing" and tuple(e["loc"]) == ("body",) for e in errors):
            return JSONResponse(error_body("bad_request", "a JSON body is required"), status_code=400)
        details = [{"field": _field(e["loc"]), "problem": e["msg"]} for e in errors]
        return JSONResponse(error_body("invalid", "request is invalid", details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("internal", "internal error"), status_code=500)

    def admin(request: Request) -> None:
        token = settings.admin_token
        if token is None:
            raise ApiError(503, "not_configured", "SYNCD_ADMIN_TOKEN is not set; admin endpoints are disabled")
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        # Several comma-separated tokens let an operator rotate: add the new one, move the
        # clients, remove the old one. Every candidate is compared, in constant time.
        candidates = [t.strip() for t in token.get_secret_value().split(",") if t.strip()]
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(value.encode(), candidate.encode())
        if scheme.lower() != "bearer" or not matched:
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    def integration_view(integration: Integration) -> dict[str, Any]:
        view = _view(integration)
        view["webhookUrl"] = settings.webhook_url(integration.platform, integration.id)
        return view

    app.include_router(platforms_router(engine.ctx.connectors, settings, [Depends(admin)]))
    app.include_router(smooch_router(engine, settings, [Depends(admin)]))

    # -- health -------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        mongo = await store.ping()
        workers = engine.workers_running
        body: dict[str, Any] = {"status": "ready" if mongo and workers else "not ready",
                                "mongodb": mongo, "workers": workers}
        if not (mongo and workers):
            failing = [name for name, ok in (("MongoDB is not reachable", mongo), ("workers are not running", workers))
                       if not ok]
            body.update(error_body("not_ready", "; ".join(failing)))
        return JSONResponse(body, status_code=200 if mongo and workers else 503)

    @app.get("/metrics", tags=["health"])
    async def metrics_endpoint() -> Response:
        inbox, outbox = await store.inbox_counts(), await store.outbox_counts()
        metrics.INBOX_PENDING.set(inbox.get("pending", 0))
        metrics.INBOX_FAILED.set(inbox.get("failed", 0))
        metrics.OUTBOX_PENDING.set(outbox.get("queued", 0) + outbox.get("sending", 0))
        metrics.OUTBOX_DEAD.set(outbox.get("dead", 0))
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    # -- integrations ---------------------------------------------------------------------------
    @app.post("/integrations", status_code=201, tags=["integrations"], dependencies=[Depends(admin)])
    async def create_integration(body: CreateIntegration) -> dict[str, Any]:
        integration = await engine.create_integration(
            platform=body.platform, customer_id=body.customer_id, name=body.name,
            credentials=body.credentials, settings=body.settings,
        )
        return {"integration": integration_view(integration)}

    @app.get("/integrations", tags=["integrations"], dependencies=[Depends(admin)])
    async def list_integrations(customerId: str | None = None, platform: str | None = None) -> dict[str, Any]:
        found = await store.list_integrations(customer_id=customerId, platform=platform)
        return {"integrations": [integration_view(i) for i in found]}

    @app.get("/integrations/{integration_id}", tags=["integrations"], dependencies=[Depends(admin)])
    async def get_integration(integration_id: str) -> dict[str, Any]:
        return {"integration": integration_view(await engine.get_integration(integration_id))}

    @app.delete("/integrations/{integration_id}", tags=["integrations"], dependencies=[Depends(admin)])
    async def delete_integration(integration_id: str) -> dict[str, Any]:
        await engine.delete_integration(integration_id)
        return {"deleted": {"integrationId": integration_id}}

    @app.put("/integrations/{integration_id}/credentials", tags=["integrations"], dependencies=[Depends(admin)])
    async def put_credentials(integration_id: str, body: UpdateCredentials) -> dict[str, Any]:
        return {"integration": integration_view(await engine.update_credentials(integration_id, body.credentials))}

    @app.get("/integrations/{integration_id}/chats/available", tags=["chats"], dependencies=[Depends(admin)])
    async def available_chats(integration_id: str) -> dict[str, Any]:
        chats = await engine.available_chats(integration_id)
        return {"chats": [c.model_dump(by_alias=True, mode="json") for c in chats]}

    @app.post("/integrations/{integration_id}/chats/import", status_code=202, tags=["chats"],
              dependencies=[Depends(admin)])
    async def import_chats(integration_id: str, body: ImportChats) -> dict[str, Any]:
        chats = await engine.import_chats(integration_id, body.external_chat_ids)
        return {"chats": [_view(c) for c in chats]}

    @app.post("/integrations/{integration_id}/resync", status_code=202, tags=["integrations"],
              dependencies=[Depends(admin)])
    async def resync(integration_id: str, body: Resync | None = None) -> dict[str, Any]:
        body = body or Resync()
        chats = await engine.resync(integration_id, body.chat_ids, body.full)
        return {"resync": {"integrationId": integration_id, "full": body.full, "chatIds": [c.id for c in chats]}}

    @app.get("/integrations/{integration_id}/status", tags=["integrations"], dependencies=[Depends(admin)])
    async def status(integration_id: str) -> dict[str, Any]:
        integration = await engine.get_integration(integration_id)
        statuses = await store.list_sync_status(integration_id)
        failed = await store.list_inbox(status="failed", integration_id=integration_id, limit=20)
        return {
            "status": [_view(s) for s in statuses],
            "integration": integration_view(integration),
            "inbox": await store.inbox_counts(integration_id),
            "failedDeliveries": [
                {"id": f.id, "deliveryId": f.delivery_id, "attempts": f.attempts, "error": f.error} for f in failed
            ],
        }

    # -- chats and messages ---------------------------------------------------------------------
    @app.get("/chats", tags=["chats"], dependencies=[Depends(admin)])
    async def list_chats(customerId: str | None = None, integrationId: str | None = None) -> dict[str, Any]:
        if customerId is None and integrationId is None:
            raise ApiError(400, "bad_request", "give customerId or integrationId")
        chats = await store.list_chats(customer_id=customerId, integration_id=integrationId)
        return {"chats": [_view(c) for c in chats]}

    async def _chat(chat_id: str) -> Chat:
        chat = await store.get_chat(chat_id)
        if chat is None:
            raise ApiError(404, "not_found", f"no chat {chat_id!r}")
        return chat

    @app.get("/chats/{chat_id}/messages", tags=["chats"], dependencies=[Depends(admin)])
    async def list_messages(
        chat_id: str, cursor: str | None = None, limit: int = Query(default=50, ge=1, le=500)
    ) -> dict[str, Any]:
        await _chat(chat_id)
        try:
            messages, next_cursor = await store.list_messages(chat_id, cursor=cursor, limit=limit)
        except ValueError:
            raise ApiError(400, "bad_request", "invalid cursor") from None
        return {"messages": [message_view(m) for m in messages], "nextCursor": next_cursor}

    @app.delete("/chats/{chat_id}", tags=["chats"], dependencies=[Depends(admin)])
    async def delete_chat(chat_id: str) -> dict[str, Any]:
        await _chat(chat_id)
        removed = await store.delete_chat(chat_id)
        return {"deleted": {"chatId": chat_id, "messages": removed}}

    # -- user platforms -------------------------------------------------------------------------
    @app.put("/user-platforms", tags=["user platforms"], dependencies=[Depends(admin)])
    async def put_user_platform(body: UserPlatformIn) -> dict[str, Any]:
        stored = await store.upsert_user_platform(UserPlatform(**body.model_dump()))
        return {"userPlatform": _view(stored)}

    @app.get("/user-platforms", tags=["user platforms"], dependencies=[Depends(admin)])
    async def list_user_platforms(customerId: str, platform: str | None = None) -> dict[str, Any]:
        found = await store.list_user_platforms(customerId, platform)
        return {"userPlatforms": [_view(u) for u in found]}

    # -- provider webhooks ----------------------------------------------------------------------
    # Every platform delivery comes through here, so it is a plain Starlette route: no
    # dependency solving for its two path segments (its operations are documented by hand, see
    # ``openapi`` below). The request URL is built only if a connector reads it.
    async def webhook(request: Request) -> Response:
        platform, integration_id = request.path_params["platform"], request.path_params["integration_id"]
        platform = engine.ctx.connectors.resolve(platform) or platform
        integration = await store.get_integration(integration_id)
        if integration is None or integration.platform != platform or integration.status == "deleted":
            raise ApiError(404, "not_found", f"no {platform} integration {integration_id!r}")
        body = await request.body()
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
        if isinstance(answer.body, dict):
            return JSONResponse(answer.body, status_code=answer.status_code)
        return Response(answer.body or b"", status_code=answer.status_code, media_type=answer.media_type)

    route = Route(WEBHOOK_PATH, webhook, methods=["GET", "POST"])
    route.methods.discard("HEAD")  # Starlette adds HEAD to every GET route; a platform never sends it
    app.router.routes.append(route)

    # -- app events -----------------------------------------------------------------------------
    # The body is read raw (the signature covers its bytes), so its schema is declared by hand.
    event_schema = AppEvent.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    event_defs = event_schema.pop("$defs", {})

    @app.post("/events", status_code=202, tags=["events"], openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AppEvent"}}}}})
    async def events(request: Request) -> JSONResponse:
        secret = settings.app_webhook_secret
        if secret is None:
            raise ApiError(503, "not_configured", "SYNCD_APP_WEBHOOK_SECRET is not set; events are disabled")
        body = await request.body()
        given = request.headers.get("x-syncd-signature", "")
        if not hmac.compare_digest(given.encode(), sign(secret.get_secret_value(), body).encode()):
            raise ApiError(401, "bad_signature", "X-Syncd-Signature is missing or does not match the body")
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_request", "body is not valid JSON") from None
        if not isinstance(raw, dict):
            raise ApiError(400, "bad_request", "body must be a JSON object")
        try:
            event = AppEvent.model_validate(raw)
        except ValidationError as exc:
            details = [{"field": _field(e["loc"]), "problem": e["msg"]} for e in exc.errors()]
            raise ApiError(422, "invalid", "event is invalid", details) from None
        try:
            item, _ = await engine.exporter.accept(event)
        except EventRejected as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        engine.outbox.events.wake()
        status_word = {"sending": "queued"}.get(item.status, item.status)
        answer: dict[str, Any] = {"eventId": event.id, "status": status_word}
        # A repeated id answers with what became of the first post.
        if item.status == "sent" and item.result is not None:
            answer["result"] = item.result
        elif item.status == "dead" and item.error:
            answer["error"] = item.error
        return JSONResponse(answer, status_code=202)

    app.include_router(connect_router(engine))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.update({**event_defs, "AppEvent": event_schema})
            schema["paths"] = _in_route_order({**schema["paths"], WEBHOOK_PATH: _webhook_operations()}, app.routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
