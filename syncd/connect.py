"""The OAuth connect flow: a customer's browser is sent to a platform's consent page and comes
back with a code that syncd exchanges for credentials, creating the integration.

    GET /connect/{platform}?customerId=…           302 to the platform's authorize URL
    GET /connect/{platform}/callback?code=&state=  201 {"integration": …} (or 302 to
                                                   SYNCD_CONNECT_SUCCESS_URL?integrationId=…)

Nothing here knows a platform: everything comes from the connector's ``oauth`` spec
(``OAuthSpec``), its ``credentials_from_oauth`` and its ``Credentials`` model, and from the
operator's OAuth app configuration (``Settings.oauth_client``).

Who may start a flow: the admin bearer token, or a link the app signed for one customer,
``signature`` = hex HMAC-SHA256(SYNCD_APP_WEBHOOK_SECRET, "{platform}:{customerId}:{expires}")
with ``expires`` (epoch seconds) still ahead. The callback carries no credentials of its own:
the ``state`` it brings back is the proof. That state is signed (HMAC-SHA256 with a key derived
from SYNCD_SECRET_KEY, or from the admin token when that is unset), expires after
SYNCD_CONNECT_STATE_TTL_S, and is good for one callback: its nonce is claimed in the store's
``leases`` collection (``connect-state:<nonce>``), so a replay is refused on every replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError

from syncd.config import OAuthClient, Settings
from syncd.engine.connectors import UnknownPlatform
from syncd.engine.engine import Engine, IntegrationError
from syncd.kit.connector import Connector, OAuthSpec
from syncd.kit.errors import ProviderError
from syncd.kit.http import ProviderHttp

log = structlog.get_logger(__name__)

#: Longest ``settings`` JSON a flow carries in its state (the state travels in URLs).
MAX_SETTINGS_CHARS = 4096
_STATE_CONTEXT = b"syncd/connect-state/v1"


@dataclass(frozen=True)
class _App:
    """A configured OAuth app with its values unwrapped, for the length of one request."""

    config: OAuthClient
    client_id: str
    client_secret: str = field(repr=False)
    #: Credential fields the operator configured for every integration of this app.
    credentials: dict[str, str] = field(repr=False, default_factory=dict)


class StateError(ValueError):
    """A state that cannot be trusted: tampered, malformed, expired or for another platform."""


# -- signed state -------------------------------------------------------------------------------
def state_key(settings: Settings) -> bytes | None:
    """The state-signing key, derived (not reused) from SYNCD_SECRET_KEY or the admin token."""
    secret = settings.secret_key or settings.admin_token
    if secret is None:
        return None
    return hmac.new(secret.get_secret_value().encode(), _STATE_CONTEXT, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(key: bytes, claims: dict[str, Any]) -> str:
    """``<base64url JSON claims>.<base64url HMAC-SHA256>``; claims are readable, not secret."""
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def read_state(key: bytes, state: str, *, platform: str, now: float) -> dict[str, Any]:
    """The claims of a state this daemon signed for ``platform``, still unexpired."""
    payload, _, mac = state.partition(".")
    try:
        given = _unb64(mac)
    except ValueError:
        raise StateError("state is malformed") from None
    expected = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    if not mac or not hmac.compare_digest(given, expected):
        raise StateError("state signature does not match (tampered, or signed with another key)")
    try:
        claims = json.loads(_unb64(payload))
    except ValueError:
        raise StateError("state is malformed") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), (int, float)):
        raise StateError("state is malformed")
    if claims.get("p") != platform:
        raise StateError(f"state was issued for another platform, not {platform}")
    if claims["exp"] <= now:
        raise StateError("state has expired; start the connection again")
    return claims


def link_signature(secret: str, platform: str, customer_id: str, expires: int) -> str:
    """What the app puts in ``signature`` to let one customer start a flow until ``expires``."""
    message = f"{platform}:{customer_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def resolve_url(settings: Settings, url: str, default_key: str) -> tuple[str, str]:
    """``(absolute URL, root key)`` of an ``OAuthSpec`` URL: absolute as is, ``{key}/path``
    against that root, anything else against ``default_key``'s root."""
    if url.startswith("{") and "}" in url:
        key, _, path = url[1:].partition("}")
        return settings.base_url(key) + path, key
    if "://" in url:
        return url, default_key
    return settings.base_url(default_key) + "/" + url.lstrip("/"), default_key


def _fail(status: int, code: str, message: str, details: Any = None) -> IntegrationError:
    return IntegrationError(status, code, message, details)


def _platform_error(body: Any) -> tuple[str, str | None]:
    """``(error code, description)`` of a token endpoint's refusal, in the shapes platforms
    use: RFC 6749 ``{"error", "error_description"}``, ``{"ok": false, "error"}``,
    Graph-style ``{"error": {"code"|"type", "message"}}``."""
    if not isinstance(body, dict):
        return "unreadable_answer", None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or "error"
        return str(code)[:100], str(error.get("message") or "")[:300] or None
    description = body.get("error_description")
    return str(error or "error")[:100], str(description)[:300] if description else None


def connect_router(engine: Engine) -> APIRouter:
    """The two routes of the connect flow, for ``app.include_router``."""
    settings = engine.ctx.settings
    router = APIRouter(tags=["connect"])

    def now() -> float:
        return engine.ctx.now().timestamp()

    def oauth_of(platform: str) -> tuple[type[Connector], OAuthSpec]:
        try:
            cls = engine.ctx.connectors.connector_class(platform)
        except UnknownPlatform:
            raise _fail(404, "not_found", f"unknown platform {platform!r}") from None
        if cls.oauth is None:
            raise _fail(404, "not_found", f"{platform} has no OAuth connect flow; "
                        "create its integration with POST /integrations")
        return cls, cls.oauth

    def app_of(platform: str) -> _App:
        client = settings.oauth_client(platform)
        if client.client_id is None or client.client_secret is None:
            raise _fail(503, "not_configured", f"the {platform} OAuth app is not configured: set "
                        f"{' and '.join(client.missing())} (or SYNCD_OAUTH_CLIENTS)")
        return _App(client, client.client_id.get_secret_value(), client.client_secret.get_secret_value(),
                    {k: v.get_secret_value() for k, v in client.credentials.items()})

    def signing_key() -> bytes:
        key = state_key(settings)
        if key is None:
            raise _fail(503, "not_configured", "set SYNCD_SECRET_KEY: it signs the connect flow's state")
        return key

    def redirect_uri(platform: str) -> str:
        return f"{settings.public_base()}/connect/{platform}/callback"

    def allow_start(request: Request, platform: str, customer_id: str,
                    expires: int | None, signature: str | None) -> str:
        """``"admin"`` or ``"link"``: who is starting this flow; raises when nobody is."""
        header = request.headers.get("authorization")
        if header is not None:
            token = settings.admin_token
            if token is None:
                raise _fail(503, "not_configured", "SYNCD_ADMIN_TOKEN is not set; admin endpoints are disabled")
            scheme, _, value = header.partition(" ")
            candidates = [t.strip() for t in token.get_secret_value().split(",") if t.strip()]
            matched = False
            for candidate in candidates:  # rotation: several tokens, each compared in constant time
                matched |= hmac.compare_digest(value.encode(), candidate.encode())
            if scheme.lower() != "bearer" or not matched:
                raise _fail(401, "unauthorized", "missing or wrong bearer token")
            return "admin"
        if signature is None:
            raise _fail(401, "unauthorized", "give the admin bearer token, or a signed link "
                        "(expires and signature query parameters)")
        secret = settings.app_webhook_secret
        if secret is None:
            raise _fail(503, "not_configured", "SYNCD_APP_WEBHOOK_SECRET is not set; signed connect links are disabled")
        if expires is None:
            raise _fail(401, "bad_signature", "a signed link needs its expires parameter")
        expected = link_signature(secret.get_secret_value(), platform, customer_id, expires)
        if not hmac.compare_digest(signature.strip().lower().encode(), expected.encode()):
            raise _fail(401, "bad_signature", "signature does not match platform, customerId and expires")
        if expires <= now():
            raise _fail(401, "link_expired", "this connect link has expired; ask the app for a new one")
        return "link"

    def parse_settings(raw: str | None, who: str) -> dict[str, Any] | None:
        if raw is None:
            return None
        if who != "admin":
            # The signature covers platform, customer and expiry only: a browser could rewrite
            # settings (importChats, pubsubTopic) on its way through.
            raise _fail(400, "bad_request", "settings need the admin bearer token; a signed link cannot carry them")
        if len(raw) > MAX_SETTINGS_CHARS:
            raise _fail(400, "bad_request", f"settings longer than {MAX_SETTINGS_CHARS} characters")
        try:
            value = json.loads(raw)
        except ValueError:
            raise _fail(400, "bad_request", "settings is not valid JSON") from None
        if not isinstance(value, dict):
            raise _fail(400, "bad_request", "settings must be a JSON object")
        return value

    @router.get("/connect/{platform}", summary="Start connecting a platform account (OAuth)",
                status_code=302, response_class=RedirectResponse)
    async def start(
        platform: str,
        request: Request,
        customer_id: str = Query(alias="customerId", min_length=1, max_length=512),
        name: str | None = Query(default=None, max_length=512),
        settings_json: str | None = Query(default=None, alias="settings",
                                          description="integration settings as a JSON object (admin only)"),
        expires: int | None = Query(default=None, description="signed links: expiry, epoch seconds"),
        signature: str | None = Query(
            default=None, max_length=256,
            description="signed links: hex HMAC-SHA256 of '{platform}:{customerId}:{expires}'"),
    ) -> Response:
        who = allow_start(request, platform, customer_id, expires, signature)
        _, spec = oauth_of(platform)
        app = app_of(platform)
        key = signing_key()
        claims: dict[str, Any] = {"p": platform, "c": customer_id, "nonce": secrets.token_urlsafe(16),
                                  "exp": int(now() + settings.connect_state_ttl_s)}
        if name is not None:
            claims["n"] = name
        integration_settings = parse_settings(settings_json, who)
        if integration_settings is not None:
            claims["s"] = integration_settings
        authorize, _ = resolve_url(settings, spec.authorize_url, spec.base_url_key)
        params: list[tuple[str, str]] = [
            ("client_id", app.client_id),
            ("redirect_uri", redirect_uri(platform)),
            ("response_type", "code"),
        ]
        if spec.scopes:
            params.append(("scope", spec.scope_separator.join(spec.scopes)))
        params += list(spec.authorize_params)
        params.append(("state", sign_state(key, claims)))
        location = f"{authorize}{'&' if '?' in authorize else '?'}{urlencode(params)}"
        log.info("connect started", platform=platform, customer_id=customer_id, by=who)
        return RedirectResponse(location, status_code=302, headers={"cache-control": "no-store"})

    async def claim(claims: dict[str, Any]) -> None:
        """Use the state once: the first callback claims its nonce until the state expires."""
        ttl = max(0.0, float(claims["exp"]) - now()) + 60  # outlives the state, whatever the skew
        nonce = str(claims.get("nonce") or "")
        claimed = bool(nonce) and await engine.store.acquire_lease(
            f"connect-state:{nonce}", f"connect:{uuid.uuid4().hex}", ttl)
        if not claimed:
            raise _fail(400, "state_used", "this connect state was already used; start the connection again")

    async def exchange(platform: str, cls: type[Connector], spec: OAuthSpec, app: _App, code: str) -> dict[str, Any]:
        """The token endpoint's answer for ``code``; 502 on anything but a usable answer."""
        url, key = resolve_url(settings, spec.token_url, spec.base_url_key)
        transports = engine.ctx.connectors.transports
        transport = transports.get(platform) or transports.get(key) or transports.get(cls.base_url_key or "")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri(platform),
                "client_id": app.client_id, "client_secret": app.client_secret}
        # Not retried: a code is single-use, so a retry after a lost answer could only fail.
        try:
            async with httpx.AsyncClient(transport=transport, timeout=settings.http_timeout_s) as http:
                response = await http.post(url, data=form, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise _fail(502, "token_exchange_failed",
                        f"{platform}'s token endpoint could not be reached ({type(exc).__name__})") from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        refused = (response.status_code >= 400 or not isinstance(body, dict)
                   or body.get("ok") is False or "error" in body)
        if refused:
            error, description = _platform_error(body)
            message = f"{platform}'s token endpoint refused the code ({response.status_code} {error})"
            if description:
                message += f": {description}"
            for secret in (app.client_secret, code):  # never echo a secret, whatever the platform says
                message = message.replace(secret, "[redacted]")
            log.warning("connect token exchange refused", platform=platform, status=response.status_code, error=error)
            raise _fail(502, "token_exchange_failed", message, {"platformError": error})
        return body

    async def finish(platform: str, cls: type[Connector], made: dict[str, Any]) -> dict[str, Any]:
        """The connector's own completion step (I/O allowed), on a client without credentials."""
        key = cls.base_url_key or platform
        transports = engine.ctx.connectors.transports
        http = ProviderHttp(settings.base_url(key), transport=transports.get(platform) or transports.get(key),
                            timeout_s=settings.http_timeout_s, platform=platform)
        try:
            return await cls.finish_oauth(made, http)
        except ProviderError as exc:
            raise _fail(502, "token_unusable", f"{platform} could not complete the connection: {exc}") from None
        finally:
            await http.aclose()

    async def credentials_of(platform: str, cls: type[Connector], app: _App,
                             token: dict[str, Any], integration_settings: dict[str, Any]) -> dict[str, Any]:
        try:
            made = cls.credentials_from_oauth(token, client_id=app.client_id, client_secret=app.client_secret)
        except Exception as exc:
            if isinstance(exc, KeyError):
                what = f"missing {exc}"
            elif isinstance(exc, (ValueError, TypeError)):
                what = str(exc)
            else:
                what = type(exc).__name__
            secrets_seen = [app.client_secret, *(v for v in token.values() if isinstance(v, str) and len(v) >= 8)]
            for secret in secrets_seen:  # a connector's message must not carry a token out
                what = what.replace(secret, "[redacted]")
            raise _fail(502, "token_unusable", f"{platform}'s token answer cannot make credentials: {what}") from None
        made = await finish(platform, cls, made)
        credentials = {**app.credentials, **made}
        # Checked here (on a copy, as create_integration will prepare them) so a field only
        # the operator can give is reported as configuration, not as the customer's fault.
        try:
            prepared, _ = cls.prepare_credentials(dict(credentials), dict(integration_settings))
            cls.Credentials.model_validate(prepared)
        except ValidationError as exc:
            missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing" and e["loc"]]
            if missing:
                hints = "; ".join(f"{name}: set {app.config.env_hint(name)}" for name in missing)
                raise _fail(503, "not_configured", f"{platform} credentials need what its token endpoint "
                            f"does not give ({hints})") from None
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise _fail(502, "token_unusable", f"{platform}'s token answer makes invalid credentials "
                        f"({', '.join(fields)})") from None
        return credentials

    @router.get("/connect/{platform}/callback", summary="Where the platform sends the browser back (OAuth)",
                status_code=201)
    async def callback(
        platform: str,
        code: str | None = Query(default=None, max_length=4096),
        state: str | None = Query(default=None, max_length=8192),
        error: str | None = Query(default=None, max_length=512),
        error_description: str | None = Query(default=None, max_length=2048),
    ) -> Response:
        cls, spec = oauth_of(platform)
        key = signing_key()
        if error is not None:
            if state:
                try:  # a refused flow's state is spent too
                    await claim(read_state(key, state, platform=platform, now=now()))
                except (StateError, IntegrationError):
                    pass
            message = f"{platform} did not authorize the connection: {error}"
            if error_description:
                message += f" ({error_description[:300]})"
            raise _fail(400, "authorization_failed", message,
                        {"platformError": error[:100], "description": (error_description or "")[:300] or None})
        if not code or not state:
            raise _fail(400, "bad_request", "the callback needs code and state")
        try:
            claims = read_state(key, state, platform=platform, now=now())
        except StateError as exc:
            raise _fail(400, "bad_state", str(exc)) from None
        app = app_of(platform)
        await claim(claims)
        integration_settings = claims.get("s") or {}
        token = await exchange(platform, cls, spec, app, code)
        credentials = await credentials_of(platform, cls, app, token, integration_settings)
        integration = await engine.create_integration(
            platform=platform, customer_id=str(claims["c"]), name=claims.get("n"),
            credentials=credentials, settings=integration_settings or None,
        )
        log.info("connect finished", platform=platform, customer_id=integration.customer_id,
                 integration_id=integration.id)
        if settings.connect_success_url:
            target = settings.connect_success_url
            location = f"{target}{'&' if '?' in target else '?'}{urlencode({'integrationId': integration.id})}"
            return RedirectResponse(location, status_code=302, headers={"cache-control": "no-store"})
        view = integration.model_dump(by_alias=True, mode="json")
        view["webhookUrl"] = settings.webhook_url(platform, integration.id)
        return JSONResponse({"integration": view}, status_code=201, headers={"cache-control": "no-store"})

    return router
