"""The steps of the connect flow, each small: who may start one, which OAuth app and key it
uses, the consent URL, the one-time claim of a state, and the callback's outcome."""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from syncd.api.auth import admin_token_matches
from syncd.api.connect.state import (
    StateError,
    link_signature,
    read_state,
    resolve_url,
    state_key,
)
from syncd.api.connect.tokens import OAuthApp
from syncd.api.errors import ApiError
from syncd.engine.connectors import UnknownPlatform
from syncd.engine.engine import Engine
from syncd.kit.connector import Connector, OAuthSpec

#: Longest ``settings`` JSON a flow carries in its state (the state travels in URLs).
MAX_SETTINGS_CHARS = 4096


class ConnectFlow:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.settings = engine.ctx.settings

    def now(self) -> float:
        return self.engine.ctx.now().timestamp()

    def connector_of(self, platform: str) -> type[Connector]:
        try:
            return self.engine.ctx.connectors.connector_class(platform)
        except UnknownPlatform:
            raise ApiError(404, "not_found", f"unknown platform {platform!r}") from None

    def oauth_of(self, platform: str) -> tuple[type[Connector], OAuthSpec]:
        cls = self.connector_of(platform)
        if cls.oauth is None:
            raise ApiError(404, "not_found", f"{platform} has no OAuth connect flow; "
                           "create its integration with POST /integrations")
        return cls, cls.oauth

    def app_of(self, platform: str) -> OAuthApp:
        client = self.settings.oauth_client(platform)
        if client.client_id is None or client.client_secret is None:
            raise ApiError(503, "not_configured", f"the {platform} OAuth app is not configured: set "
                           f"{' and '.join(client.missing())} (or SYNCD_OAUTH_CLIENTS)")
        return OAuthApp(client, client.client_id.get_secret_value(), client.client_secret.get_secret_value(),
                        {k: v.get_secret_value() for k, v in client.credentials.items()})

    def signing_key(self) -> bytes:
        key = state_key(self.settings)
        if key is None:
            raise ApiError(503, "not_configured", "set SYNCD_SECRET_KEY: it signs the connect flow's state")
        return key

    def redirect_uri(self, platform: str) -> str:
        return f"{self.settings.public_base()}/connect/{platform}/callback"

    # -- starting ---------------------------------------------------------------------------
    def allow_start(self, request: Request, platform: str, customer_id: str,
                    expires: int | None, signature: str | None) -> str:
        """``"admin"`` or ``"link"``: who is starting this flow; raises when nobody is."""
        header = request.headers.get("authorization")
        if header is not None:
            if not admin_token_matches(self.settings, header):
                raise ApiError(401, "unauthorized", "missing or wrong bearer token")
            return "admin"
        if signature is None:
            raise ApiError(401, "unauthorized", "give the admin bearer token, or a signed link "
                           "(expires and signature query parameters)")
        self._check_link(platform, customer_id, expires, signature)
        return "link"

    def _check_link(self, platform: str, customer_id: str, expires: int | None, signature: str) -> None:
        secret = self.settings.app_webhook_secret
        if secret is None:
            raise ApiError(503, "not_configured",
                           "SYNCD_APP_WEBHOOK_SECRET is not set; signed connect links are disabled")
        if expires is None:
            raise ApiError(401, "bad_signature", "a signed link needs its expires parameter")
        expected = link_signature(secret.get_secret_value(), platform, customer_id, expires)
        if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
            raise ApiError(401, "bad_signature", "signature does not match platform, customerId and expires")
        if expires <= self.now():
            raise ApiError(401, "link_expired", "this connect link has expired; ask the app for a new one")

    @staticmethod
    def parse_settings(raw: str | None, who: str) -> dict[str, Any] | None:
        if raw is None:
            return None
        if who != "admin":
            # The signature covers platform, customer and expiry only: a browser could rewrite
            # settings (importChats, pubsubTopic) on its way through.
            raise ApiError(400, "bad_request", "settings need the admin bearer token; a signed link cannot carry them")
        if len(raw) > MAX_SETTINGS_CHARS:
            raise ApiError(400, "bad_request", f"settings longer than {MAX_SETTINGS_CHARS} characters")
        try:
            value = json.loads(raw)
        except ValueError:
            raise ApiError(400, "bad_request", "settings is not valid JSON") from None
        if not isinstance(value, dict):
            raise ApiError(400, "bad_request", "settings must be a JSON object")
        return value

    def claims(self, platform: str, customer_id: str, name: str | None,
               integration_settings: dict[str, Any] | None) -> dict[str, Any]:
        """What the state carries: platform, customer, a one-time nonce, expiry, and options."""
        claims: dict[str, Any] = {"p": platform, "c": customer_id, "nonce": secrets.token_urlsafe(16),
                                  "exp": int(self.now() + self.settings.connect_state_ttl_s)}
        if name is not None:
            claims["n"] = name
        if integration_settings is not None:
            claims["s"] = integration_settings
        return claims

    def authorize_location(self, platform: str, spec: OAuthSpec, app: OAuthApp, state: str) -> str:
        """The platform's consent page, with everything the platform asks for."""
        authorize, _ = resolve_url(self.settings, spec.authorize_url, spec.base_url_key)
        params: list[tuple[str, str]] = [
            ("client_id", app.client_id),
            ("redirect_uri", self.redirect_uri(platform)),
            ("response_type", "code"),
        ]
        if spec.scopes:
            params.append(("scope", spec.scope_separator.join(spec.scopes)))
        params += list(spec.authorize_params)
        params.append(("state", state))
        return f"{authorize}{'&' if '?' in authorize else '?'}{urlencode(params)}"

    # -- coming back ------------------------------------------------------------------------
    async def claim(self, claims: dict[str, Any]) -> None:
        """Use the state once: the first callback claims its nonce until the state expires."""
        ttl = max(0.0, float(claims["exp"]) - self.now()) + 60  # outlives the state, whatever the skew
        nonce = str(claims.get("nonce") or "")
        claimed = bool(nonce) and await self.engine.store.acquire_lease(
            f"connect-state:{nonce}", f"connect:{uuid.uuid4().hex}", ttl)
        if not claimed:
            raise ApiError(400, "state_used", "this connect state was already used; start the connection again")

    async def refused(self, platform: str, key: bytes, state: str | None, error: str,
                      description: str | None) -> ApiError:
        """The platform (or the customer) said no: the state is spent too; the error to answer."""
        if state:
            try:
                await self.claim(read_state(key, state, platform=platform, now=self.now()))
            except (StateError, ApiError):
                pass
        message = f"{platform} did not authorize the connection: {error}"
        if description:
            message += f" ({description[:300]})"
        return ApiError(400, "authorization_failed", message,
                        {"platformError": error[:100], "description": (description or "")[:300] or None})

    def trusted_claims(self, platform: str, key: bytes, code: str | None, state: str | None) -> dict[str, Any]:
        if not code or not state:
            raise ApiError(400, "bad_request", "the callback needs code and state")
        try:
            return read_state(key, state, platform=platform, now=self.now())
        except StateError as exc:
            raise ApiError(400, "bad_state", str(exc)) from None
