"""One structured log line per HTTP request (``SYNCD_ACCESS_LOG``, on by default).

``http.request`` carries the method, the route template (``/webhooks/{platform}/{integration_id}``,
not the path a client sent), the route's path parameters whose names are not secret, the status,
the duration in milliseconds, the request id and the client's address. Nothing else of the
request is logged: no query string (some platforms put a shared token there), no header, no
body. A path parameter with a secret-looking name (a secret in a webhook path) is masked, and a
path that matched no route is logged with its long segments masked, since it may be a
mistyped secret URL.

The request id is the caller's ``X-Request-ID`` when it is a short plain token, or a new one;
it is sent back in ``X-Request-ID`` and bound to every line the request logs.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import structlog

from syncd.logs import REDACTED, is_secret_key

_LOGGER = "syncd.access"
log = structlog.get_logger(_LOGGER)

#: Requests of health probes and scrapers, every few seconds per replica: logged at DEBUG
#: unless they fail, so they do not drown the lines that matter.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: A segment this long, in a path that matched no route, may be a token: it is not logged.
_LONG_SEGMENT = 16


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return os.urandom(16).hex()  # as unguessable as a UUID4's hex, without building a UUID


def _writes_info() -> bool:
    """Whether an INFO line of this logger is written. Where structlog filters by the stdlib
    level (``configure_logging``), a filtered line would still have its fields built first;
    anywhere else (``capture_logs`` in tests, no configuration) every line is kept."""
    if structlog.stdlib.filter_by_level not in structlog.get_config()["processors"]:
        return True
    return logging.getLogger(_LOGGER).isEnabledFor(logging.INFO)


def _unmatched_path(path: str) -> str:
    return "/".join(REDACTED if len(part) >= _LONG_SEGMENT else part for part in path.split("/"))


def _route(scope: dict[str, Any]) -> Any:
    """The route that answered: the router names its routes in the scope, except plain Starlette
    routes (the webhook route), which are found by the endpoint they put there."""
    if "route" in scope or "endpoint" not in scope:
        return scope.get("route")
    routes = getattr(scope.get("router"), "routes", ())
    return next((r for r in routes if getattr(r, "endpoint", None) is scope["endpoint"]), None)


def route_fields(scope: dict[str, Any]) -> dict[str, Any]:
    """``route`` (the template) and ``params`` of the route that handled the request, secrets masked."""
    return _fields(getattr(_route(scope), "path_format", None), scope)


def _fields(template: Any, scope: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(template, str):
        return {"route": None, "path": _unmatched_path(scope.get("path", ""))}
    params = {k: REDACTED if is_secret_key(k) else v for k, v in (scope.get("path_params") or {}).items()}
    return {"route": template, **({"params": params} if params else {})}


class AccessLog:
    """ASGI middleware: the outermost layer of the API, so refused bodies and errors are logged too."""

    def __init__(self, app: Any, enabled: bool = True):
        self.app = app
        self.enabled = enabled
        #: Endpoint -> route template, for the routes found by their endpoint (a scan of every
        #: route on each webhook delivery otherwise).
        self._templates: dict[Any, Any] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope.get("headers") or [])
        status = 500  # what the server answers when the app raises before it starts an answer

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        started = time.perf_counter()
        # Bound and reset by token: ``bound`` reads the whole context first, on every request.
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
            # Access lines are INFO (DEBUG for quiet routes): with INFO filtered, none is written.
            if self.enabled and _writes_info():
                self._log(scope, status, started, request_id)

    def _template(self, scope: dict[str, Any]) -> Any:
        endpoint = scope.get("endpoint")
        if "route" in scope or endpoint is None:
            return getattr(scope.get("route"), "path_format", None)
        if endpoint not in self._templates:
            self._templates[endpoint] = getattr(_route(scope), "path_format", None)
        return self._templates[endpoint]

    def _log(self, scope: dict[str, Any], status: int, started: float, request_id: str) -> None:
        fields = _fields(self._template(scope), scope)
        client = scope.get("client")
        level = "debug" if fields["route"] in QUIET_ROUTES and status < 400 else "info"
        getattr(log, level)(
            "http.request", method=scope["method"], **fields, status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1), request_id=request_id,
            client=client[0] if client else None,
        )
