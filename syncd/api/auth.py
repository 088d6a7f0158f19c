"""Who may call what: the admin bearer token (``SYNCD_ADMIN_TOKEN``), as a FastAPI dependency."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from syncd.api.errors import ApiError
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

    return admin
