"""Who may call what: the admin bearer token (``SYNCD_ADMIN_TOKEN``), as a FastAPI dependency."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from syncd.api.errors import ApiError
from syncd.bodies import MAX_JSON_DEPTH, too_deep
from syncd.config import Settings

#: The OpenAPI name of the admin bearer scheme (declared by ``syncd.api.openapi``).
ADMIN_SCHEME = "adminToken"


def admin_token_matches(settings: Settings, header: str) -> bool:
    """Whether an ``Authorization`` header carries one of the admin tokens.

    Several comma-separated tokens let an operator rotate: add the new one, move the clients,
    remove the old one. Every candidate is compared, in constant time. Raises 503 when no token
    is configured (admin endpoints are then off, which must not look like a wrong token)."""
    token = settings.admin_token
    if token is None:
        raise ApiError(503, "not_configured", "SYNCD_ADMIN_TOKEN is not set; admin endpoints are disabled")
    scheme, _, value = header.partition(" ")
    candidates = [t.strip() for t in token.get_secret_value().split(",") if t.strip()]
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(value.encode(), candidate.encode())
    return scheme.lower() == "bearer" and matched


#: Declares the scheme in the OpenAPI document; the check itself is ``admin_token_matches``.
_BEARER = HTTPBearer(auto_error=False, scheme_name=ADMIN_SCHEME,
                     description="SYNCD_ADMIN_TOKEN (any one of its comma-separated tokens)")


def admin_dependency(settings: Settings) -> Callable[..., None]:
    """``Depends(...)`` for every admin route."""

    def admin(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if not admin_token_matches(settings, request.headers.get("authorization", "")):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    admin.checks_admin = True  # type: ignore[attr-defined]
    return admin


def refuse_deep(body: bytes) -> None:
    if too_deep(body):
        raise ApiError(400, "bad_request", f"the body nests deeper than {MAX_JSON_DEPTH} levels")


class GuardedRoute(APIRoute):
    """The route class of the API: FastAPI reads and parses a body before it runs a route's
    dependencies, so an admin route checks its bearer token here first (a request without one
    hears 401 whatever its body), and any body is refused if it nests too deep for a parser."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()
        admin = next((d.dependency for d in self.dependencies if getattr(d.dependency, "checks_admin", False)), None)

        async def guarded(request: Request) -> Response:
            if admin is not None:
                admin(request, None)
            if request.method in ("POST", "PUT", "PATCH"):
                refuse_deep(await request.body())
            return await handler(request)

        return guarded
