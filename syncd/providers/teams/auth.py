"""Who the connector acts as: the credentials (a delegated OAuth grant or a bare access token,
and the ``clientState`` secret), the consent flow's scopes, and the token refresh at
Microsoft's token endpoint before the token expires and once on a 401. Microsoft rotates
refresh tokens, so the new ones are handed to ``ctx.on_credentials``."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from syncd.kit.errors import AuthError, ProviderError
from syncd.kit.http import default_classify
from syncd.providers.teams.graph import TeamsBase, graph_error
from syncd.providers.teams.ids import _q

TOKEN_MARGIN_S = 5 * 60
#: openid brings an id_token, whose ``tid`` says the account's tenant.
SCOPES = ("openid", "offline_access", "User.Read", "Chat.ReadWrite", "ChannelMessage.Send", "ChannelMessage.Read.All",
          "ChannelMessage.ReadWrite", "Team.ReadBasic.All", "Channel.ReadBasic.All")
#: A refresh asks for what was consented, whatever the list was then.
REFRESH_SCOPE = "https://graph.microsoft.com/.default offline_access"

#: The documented root (its manifest declares it too; ``SYNCD_MICROSOFT_LOGIN_BASE_URL`` replaces it).
LOGIN_ROOT = "https://login.microsoftonline.com"



class TeamsCredentials(BaseModel):
    """A delegated OAuth grant (``tenantId``, ``clientId``, ``clientSecret``, ``refreshToken``)
    or a bare ``accessToken``; ``clientState`` is the secret Graph echoes in notifications."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              hide_input_in_errors=True)

    tenant_id: str = Field(default="common", min_length=1, pattern=r"^[A-Za-z0-9.-]+$")
    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    access_token: str | None = Field(default=None, repr=False)
    #: When ``access_token`` expires (epoch seconds); kept so a restart refreshes in time.
    expires_at: float | None = None
    #: Graph limits clientState to 128 characters.
    client_state: str | None = Field(default=None, repr=False, min_length=16, max_length=128)

    @model_validator(mode="after")
    def _usable(self) -> TeamsCredentials:
        if not self.access_token and not (self.client_id and self.client_secret and self.refresh_token):
            raise ValueError("give accessToken, or tenantId, clientId, clientSecret and refreshToken")
        return self

    @property
    def can_refresh(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)


def login_root() -> str:
    """Microsoft's identity platform, unless ``SYNCD_MICROSOFT_LOGIN_BASE_URL`` points elsewhere
    (a simulator, a national cloud)."""
    return (os.environ.get("SYNCD_MICROSOFT_LOGIN_BASE_URL") or LOGIN_ROOT).rstrip("/")


def _classify_token(response: httpx.Response) -> None:
    if response.status_code in (400, 401):
        code, _ = graph_error(response)
        raise AuthError(f"token refresh rejected ({code or response.status_code})", status=401, code=code)
    default_classify(response)


def _jwt_claims(token: Any) -> dict[str, Any]:
    """The payload of a JWT, unverified (only read for the tenant id of our own token)."""
    try:
        payload = str(token).split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class TeamsAuth(TeamsBase):
    """Credentials made and kept fresh; secrets kept out of error messages."""

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any],
                            settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        # An operator's own clientState in settings is used as given; a generated one goes into
        # the credentials, which are encrypted at rest and never returned by the API.
        if not credentials.get("clientState") and not settings.get("clientState"):
            credentials = {**credentials, "clientState": secrets.token_urlsafe(32)}
        return credentials, settings

    @classmethod
    def credentials_from_oauth(cls, token: dict[str, Any], *, client_id: str, client_secret: str) -> dict[str, Any]:
        claims = _jwt_claims(token.get("id_token")) or _jwt_claims(token.get("access_token"))
        credentials: dict[str, Any] = {
            "tenantId": str(claims.get("tid") or "common"), "clientId": client_id, "clientSecret": client_secret,
            "refreshToken": token.get("refresh_token"), "accessToken": token.get("access_token"),
            "clientState": secrets.token_urlsafe(32),
        }
        if token.get("expires_in"):
            credentials["expiresAt"] = int(time.time() + float(token["expires_in"]))
        return {k: v for k, v in credentials.items() if v is not None}

    def _client_state(self) -> str | None:
        return self.settings.get("clientState") or self.credentials.client_state

    def _expiring(self) -> bool:
        if not self.credentials.can_refresh:
            return False
        expires = self.auth.expires_at
        return not self.auth.token or (expires is not None and expires - self.ctx.clock() < TOKEN_MARGIN_S)

    async def _refresh(self, used: str | None) -> None:
        async with self.auth.lock:
            if self.auth.token != used and not self._expiring():
                return  # a concurrent call refreshed it already
            new = await self.refresh_grant(self._refresh_grant, lambda stored: self._fresh(stored, used))
            self.credentials = type(self.credentials).model_validate(new)
            self.auth.token, self.auth.expires_at = self.credentials.access_token, self.credentials.expires_at

    def _fresh(self, stored: dict[str, Any], used: str | None) -> bool:
        """Credentials another replica stored carry a new token that does not expire soon."""
        expires = stored.get("expiresAt")
        return bool(stored.get("accessToken")) and stored.get("accessToken") != used and (
            expires is None or float(expires) - self.ctx.clock() >= TOKEN_MARGIN_S)

    async def _refresh_grant(self, current: dict[str, Any]) -> dict[str, Any]:
        """The refresh grant at the identity platform, from the stored credentials."""
        c = type(self.credentials).model_validate(current)
        response = await self.http.request(
            "POST", f"{self.login_root}/{_q(c.tenant_id)}/oauth2/v2.0/token", label="POST oauth2/v2.0/token",
            classify=_classify_token,
            data={"grant_type": "refresh_token", "client_id": c.client_id, "client_secret": c.client_secret,
                  "refresh_token": c.refresh_token, "scope": REFRESH_SCOPE},
        )
        try:
            token = response.json()
        except ValueError:
            token = {}
        if not isinstance(token, dict) or not token.get("access_token"):
            raise AuthError("token refresh answered without an access token", status=401)
        expires_at = int(self.ctx.clock() + float(token.get("expires_in") or 3600))
        update: dict[str, Any] = {"access_token": token["access_token"], "expires_at": expires_at}
        if token.get("refresh_token"):  # Microsoft rotates them: the old one may stop working
            update["refresh_token"] = token["refresh_token"]
        return c.model_copy(update=update).model_dump(by_alias=True, exclude_none=True)

    def _scrub(self, exc: ProviderError) -> None:
        c = self.credentials
        text = str(exc.args[0]) if exc.args else ""
        for secret in (self.auth.token, c.access_token, c.refresh_token, c.client_secret, self._client_state()):
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        exc.args = (text,)
