"""The OAuth connect flow: a customer's browser is sent to a platform's consent page and comes
back with a code that syncd exchanges for credentials, creating the integration.

    GET /connect/{platform}?customerId=…           302 to the platform's authorize URL
    GET /connect/{platform}/callback?code=&state=  201 {"integration": …} (or 302 to
                                                   SYNCD_CONNECT_SUCCESS_URL?integrationId=…)

A platform whose manifest declares a creation token (``connect.creationToken``) is connected
by the same ``GET /connect/{platform}``, which the platform itself opens with ``?token=``: the
token is the credential, and the answer is the callback's (``creation``).

Nothing here knows a platform: everything comes from the connector's ``oauth`` spec
(``OAuthSpec``), its ``credentials_from_oauth`` and its ``Credentials`` model, and from the
operator's OAuth app configuration (``Settings.oauth_client``).

Who may start a flow: the admin bearer token, or a link the app signed for one customer,
``signature`` = hex HMAC-SHA256(SYNCD_APP_WEBHOOK_SECRET, "{platform}:{customerId}:{expires}")
with ``expires`` (epoch seconds) still ahead. The callback carries no credentials of its own:
the ``state`` it brings back is the proof. That state is signed by itsdangerous (``state``),
expires after SYNCD_CONNECT_STATE_TTL_S, and is good for one callback: its nonce is claimed in
the store's ``leases`` collection (``connect-state:<nonce>``), so a replay is refused on every
replica. ``flow`` holds the steps, ``tokens`` the exchange of the code for credentials.
"""

from __future__ import annotations

from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from syncd.api.auth import GuardedRoute
from syncd.api.connect.creation import TokenConnect
from syncd.api.connect.flow import MAX_SETTINGS_CHARS, ConnectFlow
from syncd.api.connect.state import (
    StateError,
    link_signature,
    read_state,
    resolve_url,
    sign_state,
    state_key,
)
from syncd.api.connect.tokens import TokenExchange
from syncd.api.errors import error_body
from syncd.api.integrations import integration_view
from syncd.engine.engine import Engine
from syncd.models import Integration

__all__ = ["MAX_SETTINGS_CHARS", "StateError", "connect_router", "link_signature", "read_state", "resolve_url",
           "sign_state", "state_key"]

log = structlog.get_logger(__name__)
_NO_STORE = {"cache-control": "no-store"}


def connect_router(engine: Engine) -> APIRouter:
    """The two routes of the connect flow, for ``app.include_router``."""
    flow = ConnectFlow(engine)
    router = APIRouter(route_class=GuardedRoute, tags=["connect"])

    @router.get("/connect/{platform}", summary="Start connecting a platform account (OAuth), or connect "
                "with the platform's creation token", status_code=302, response_class=RedirectResponse,
                responses={201: {"description": "Connected with a creation token: the integration"}})
    async def start(
        platform: str,
        request: Request,
        customer_id: str | None = Query(default=None, alias="customerId", min_length=1, max_length=512,
                                        description="required for OAuth; for a creation token, the "
                                        "platform's account when absent"),
        token: str | None = Query(default=None, description="the platform's creation token (platforms "
                                  "that open this link themselves); no admin token needed"),
        name: str | None = Query(default=None, max_length=512),
        settings_json: str | None = Query(default=None, alias="settings",
                                          description="integration settings as a JSON object (admin only)"),
        expires: int | None = Query(default=None, description="signed links: expiry, epoch seconds"),
        signature: str | None = Query(
            default=None, max_length=256,
            description="signed links: hex HMAC-SHA256 of '{platform}:{customerId}:{expires}'"),
    ) -> Response:
        cls = flow.connector_of(platform)
        if cls.token_connect_credential is not None:
            integration = await TokenConnect(engine, platform, cls).connect(token, customer_id, name)
            return _connected(engine, integration)
        if customer_id is None:
            details = [{"field": "customerId", "problem": "Field required"}]
            return JSONResponse(error_body("invalid", "request is invalid", details), status_code=422)
        who = flow.allow_start(request, platform, customer_id, expires, signature)
        _, spec = flow.oauth_of(platform)
        app, key = flow.app_of(platform), flow.signing_key()
        claims = flow.claims(platform, customer_id, name, flow.parse_settings(settings_json, who))
        location = flow.authorize_location(platform, spec, app, sign_state(key, claims))
        log.info("connect started", platform=platform, customer_id=customer_id, by=who)
        return RedirectResponse(location, status_code=302, headers=_NO_STORE)

    @router.get("/connect/{platform}/callback", summary="Where the platform sends the browser back (OAuth)",
                status_code=201)
    async def callback(
        platform: str,
        code: str | None = Query(default=None, max_length=4096),
        state: str | None = Query(default=None, max_length=8192),
        error: str | None = Query(default=None, max_length=512),
        error_description: str | None = Query(default=None, max_length=2048),
    ) -> Response:
        cls, spec = flow.oauth_of(platform)
        key = flow.signing_key()
        if error is not None:
            raise await flow.refused(platform, key, state, error, error_description)
        claims = flow.trusted_claims(platform, key, code, state)
        app = flow.app_of(platform)
        await flow.claim(claims)
        integration_settings = claims.get("s") or {}
        exchange = TokenExchange(engine, platform, cls, app, flow.redirect_uri(platform))
        credentials = await exchange.credentials(await exchange.token(spec, code or ""), integration_settings)
        integration = await engine.create_integration(
            platform=platform, customer_id=str(claims["c"]), name=claims.get("n"),
            credentials=credentials, settings=integration_settings or None,
        )
        log.info("connect finished", platform=platform, customer_id=integration.customer_id,
                 integration_id=integration.id)
        return _connected(engine, integration)

    return router


def _connected(engine: Engine, integration: Integration) -> Response:
    """The browser's landing: the operator's success page, or the integration as JSON."""
    target = engine.ctx.settings.connect_success_url
    if target:
        location = f"{target}{'&' if '?' in target else '?'}{urlencode({'integrationId': integration.id})}"
        return RedirectResponse(location, status_code=302, headers=_NO_STORE)
    view = integration_view(engine.ctx.settings, integration)
    return JSONResponse({"integration": view}, status_code=201, headers=_NO_STORE)
