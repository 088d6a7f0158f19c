"""From an authorization code to an integration's credentials: the token endpoint's exchange,
the connector's completion step and the checks that say whose fault a failure is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx
import structlog
from pydantic import ValidationError

from syncd.api.connect.state import resolve_url
from syncd.api.errors import ApiError
from syncd.config import OAuthClient
from syncd.engine.engine import Engine
from syncd.kit.connector import Connector, OAuthSpec
from syncd.kit.errors import ProviderError
from syncd.kit.http import ProviderHttp

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OAuthApp:
    """A configured OAuth app with its values unwrapped, for the length of one request."""

    config: OAuthClient
    client_id: str
    client_secret: str = field(repr=False)
    #: Credential fields the operator configured for every integration of this app.
    credentials: dict[str, str] = field(repr=False, default_factory=dict)


def platform_error(body: Any) -> tuple[str, str | None]:
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


def _redacted(text: str, secrets: list[str]) -> str:
    for secret in secrets:  # never echo a secret, whatever the platform or connector says
        text = text.replace(secret, "[redacted]")
    return text


class TokenExchange:
    """One connect callback's way from ``code`` to credentials, for ``platform``."""

    def __init__(self, engine: Engine, platform: str, cls: type[Connector], app: OAuthApp, redirect_uri: str):
        self.engine, self.platform, self.cls, self.app = engine, platform, cls, app
        self.settings = engine.ctx.settings
        self.redirect_uri = redirect_uri

    def _transport(self, *keys: str | None) -> httpx.AsyncBaseTransport | None:
        transports = self.engine.ctx.connectors.transports
        return next((transports[k] for k in keys if k and k in transports), None)

    async def token(self, spec: OAuthSpec, code: str) -> dict[str, Any]:
        """The token endpoint's answer for ``code``; 502 on anything but a usable answer."""
        url, key = resolve_url(self.settings, spec.token_url, spec.base_url_key)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "client_id": self.app.client_id, "client_secret": self.app.client_secret}
        transport = self._transport(self.platform, key, self.cls.base_url_key)
        # Not retried: a code is single-use, so a retry after a lost answer could only fail.
        try:
            async with httpx.AsyncClient(transport=transport, timeout=self.settings.http_timeout_s) as http:
                response = await http.post(url, data=form, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ApiError(502, "token_exchange_failed",
                           f"{self.platform}'s token endpoint could not be reached ({type(exc).__name__})") from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict) or body.get("ok") is False or "error" in body:
            self._refused(response.status_code, body, code)
        return body

    def _refused(self, status: int, body: Any, code: str) -> NoReturn:
        error, description = platform_error(body)
        message = f"{self.platform}'s token endpoint refused the code ({status} {error})"
        if description:
            message += f": {description}"
        log.warning("connect token exchange refused", platform=self.platform, status=status, error=error)
        raise ApiError(502, "token_exchange_failed", _redacted(message, [self.app.client_secret, code]),
                       {"platformError": error})

    async def _finish(self, made: dict[str, Any]) -> dict[str, Any]:
        """The connector's own completion step (I/O allowed), on a client without credentials."""
        key = self.cls.base_url_key or self.platform
        http = ProviderHttp(self.settings.base_url(key), transport=self._transport(self.platform, key),
                            timeout_s=self.settings.http_timeout_s, platform=self.platform)
        try:
            return await self.cls.finish_oauth(made, http)
        except ProviderError as exc:
            raise ApiError(502, "token_unusable", f"{self.platform} could not complete the connection: {exc}") from None
        finally:
            await http.aclose()

    def _made(self, token: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.cls.credentials_from_oauth(token, client_id=self.app.client_id,
                                                   client_secret=self.app.client_secret)
        except Exception as exc:  # whatever a connector raises, the answer is a 502
            if isinstance(exc, KeyError):
                what = f"missing {exc}"
            elif isinstance(exc, (ValueError, TypeError)):
                what = str(exc)
            else:
                what = type(exc).__name__
            seen = [self.app.client_secret, *(v for v in token.values() if isinstance(v, str) and len(v) >= 8)]
            raise ApiError(502, "token_unusable", f"{self.platform}'s token answer cannot make credentials: "
                           f"{_redacted(what, seen)}") from None

    def _check(self, credentials: dict[str, Any], integration_settings: dict[str, Any]) -> None:
        """Checked here (on a copy, as create_integration will prepare them) so a field only
        the operator can give is reported as configuration, not as the customer's fault."""
        try:
            prepared, _ = self.cls.prepare_credentials(dict(credentials), dict(integration_settings))
            self.cls.Credentials.model_validate(prepared)
        except ValidationError as exc:
            missing = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing" and e["loc"]]
            if missing:
                hints = "; ".join(f"{name}: set {self.app.config.env_hint(name)}" for name in missing)
                raise ApiError(503, "not_configured", f"{self.platform} credentials need what its token "
                               f"endpoint does not give ({hints})") from None
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise ApiError(502, "token_unusable", f"{self.platform}'s token answer makes invalid credentials "
                           f"({', '.join(fields)})") from None

    async def credentials(self, token: dict[str, Any], integration_settings: dict[str, Any]) -> dict[str, Any]:
        made = await self._finish(self._made(token))
        credentials = {**self.app.credentials, **made}
        self._check(credentials, integration_settings)
        return credentials
