"""Every error the API answers is ``{"error": {"code", "message"[, "details"]}}`` with a fitting
status. This module is where the engine's kinds of refusal become HTTP statuses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from syncd.engine.errors import Conflict, EngineError, Invalid, NotFound, Unavailable


class ApiError(Exception):
    """A refusal decided in the API layer itself, with its status."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
                422: "invalid", 429: "rate_limited", 503: "unavailable"}

#: The status each kind of engine refusal answers with (the first match along its classes).
ENGINE_STATUSES: dict[type[EngineError], int] = {NotFound: 404, Invalid: 422, Conflict: 409, Unavailable: 503}


#: The status logged for a request whose client went away before its body was read whole (a slow
#: client dropped at its read deadline, a caller that gave up): nginx's "client closed request".
#: Nothing reaches the client; it is not a server error, and nothing of the request was stored.
CLIENT_CLOSED = 499


def engine_status(exc: EngineError) -> int:
    for cls in type(exc).__mro__:
        if cls in ENGINE_STATUSES:
            return ENGINE_STATUSES[cls]
    return 422


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "credentials", "botToken")`` -> ``credentials.botToken``; the body itself is ``body``."""
    inner = [str(p) for p in loc[1:]] if loc and loc[0] == "body" else [str(p) for p in loc]
    return ".".join(inner) or "body"


def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
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
    details = [{"field": field_name(e["loc"]), "problem": e["msg"]} for e in errors]
    return JSONResponse(error_body("invalid", "request is invalid", details), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure, expected or not, in the one error shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(EngineError)
    async def _engine_error(_: Request, exc: EngineError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, str(exc), exc.details), status_code=engine_status(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid_request(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(_: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("internal", "internal error"), status_code=500)
