"""Settings from the environment (``SYNCD_*``), read once at start.

Per-platform API roots are overridable with ``SYNCD_<PLATFORM>_BASE_URL``; the connector
appends the platform's documented paths to whatever root it is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class OAuthClient:
    """One platform's OAuth app as configured; ``missing`` names what is still to set.

    Values stay ``SecretStr`` (the client id too: it is harmless, but one rule is simpler than
    two), so neither ``repr`` nor a log line can show them.
    """

    platform: str
    client_id: SecretStr | None
    client_secret: SecretStr | None
    #: Further credential fields every integration connected through this app gets, because a
    #: token endpoint cannot supply them (an app-level signing secret).
    credentials: dict[str, SecretStr] = field(default_factory=dict)

    def missing(self) -> list[str]:
        """The variables to set before this platform's connect flow can run."""
        prefix = f"SYNCD_{self.platform.upper()}"
        return ([f"{prefix}_CLIENT_ID"] if self.client_id is None else []) + (
            [f"{prefix}_CLIENT_SECRET"] if self.client_secret is None else [])

    def env_hint(self, credential_field: str) -> str:
        """Where an operator puts ``credential_field`` for this platform."""
        entry = f'SYNCD_OAUTH_CLIENTS={{"{self.platform}": {{"{credential_field}": "..."}}}}'
        if credential_field in _CREDENTIAL_ENV:
            return f"SYNCD_{self.platform.upper()}_{_CREDENTIAL_ENV[credential_field]} or {entry}"
        return entry


#: Credential fields that also have their own variable, ``SYNCD_<PLATFORM>_<suffix>``.
_CREDENTIAL_ENV = {"signingSecret": "SIGNING_SECRET"}


class Settings(BaseSettings):
    """Everything an operator configures. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="SYNCD_", extra="ignore")

    mongodb_uri: str = "mongodb://localhost:27017/syncd"
    #: How long the start waits for MongoDB before it gives up and says why.
    mongodb_timeout_s: float = Field(default=5.0, gt=0)
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    #: Base of the webhook URLs handed to platforms; unset = platforms cannot reach us (local
    #: runs), so connectors that can poll instead do.
    public_url: str | None = None
    admin_token: SecretStr | None = None
    app_webhook_secret: SecretStr | None = None
    app_callback_url: str | None = None
    secret_key: SecretStr | None = None
    poll_interval_s: float = Field(default=60.0, gt=0)
    poll_lookback_s: float = Field(default=300.0, ge=0)
    #: Scheduled polls and maintenance runs in hand at once; the rest wait their turn, so a
    #: start (or a replica taking over) with thousands due keeps the event loop answering.
    #: It must cover polls per second x a poll's wall time (Little's law): 32 capped a
    #: benchmark of 50 polls/s, each ~0.6 s long on a loaded machine, at the offered rate.
    poll_concurrency: int = Field(default=128, ge=1)
    webhook_max_skew_s: int = Field(default=300, ge=0)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    #: Longest a client may take to send one request, headers and body (slow-loris bound).
    http_read_timeout_s: float = Field(default=30.0, gt=0)
    #: Longest an idle keep-alive connection is kept open.
    http_keep_alive_s: int = Field(default=15, gt=0)
    #: Open connections (and requests in hand) beyond which new ones get 503.
    http_max_connections: int = Field(default=2000, gt=0)
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    #: One ``http.request`` line per HTTP request (syncd.api.access_log).
    access_log: bool = True
    outbox_max_attempts: int = Field(default=8, ge=1)
    #: App callbacks sent at once by a replica, each of another chat (a chat's callbacks go one
    #: after the other, in the order they were queued): an app that takes 50 ms to answer hears
    #: of about 20 changes a second per chat in hand, not per replica.
    callback_concurrency: int = Field(default=8, ge=1, le=256)
    inbox_max_attempts: int = Field(default=8, ge=1)
    retry_base_s: float = Field(default=1.0, ge=0)
    retry_max_s: float = Field(default=300.0, ge=0)
    http_max_retries: int = Field(default=5, ge=0)
    http_timeout_s: float = Field(default=30.0, gt=0)
    #: A platform that asks to wait longer than this is not waited for inside the call: the
    #: work is rescheduled for then, so one throttled platform never holds a worker asleep.
    http_max_inline_wait_s: float = Field(default=30.0, ge=0)
    lease_ttl_s: float = Field(default=60.0, gt=0)
    worker_poll_s: float = Field(default=0.5, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    #: How long ``DELETE /integrations/{id}`` waits for the platform to undo its webhooks and
    #: subscriptions; what did not finish by then is retried in the background.
    disconnect_timeout_s: float = Field(default=10.0, gt=0)
    #: Background attempts to undo them before giving up (the credentials are then wiped anyway).
    disconnect_max_attempts: int = Field(default=10, ge=1)
    base_urls: dict[str, str] = Field(default_factory=dict)
    #: The documented API roots by key, as the loaded platform manifests declare them (filled
    #: in by the daemon at start; ``SYNCD_<KEY>_BASE_URL`` and ``base_urls`` replace them).
    api_roots: dict[str, str] = Field(default_factory=dict)
    #: OAuth apps per platform, JSON: ``{"<platform>": {"clientId": "...", "clientSecret": "...",
    #: "signingSecret": "..."}}``; keys other than the client id and secret are credential
    #: fields added to every integration the connect flow creates. Values never print.
    oauth_clients: dict[str, dict[str, SecretStr]] = Field(default_factory=dict)
    #: Where the browser lands after a successful connect (``?integrationId=`` is appended);
    #: unset = the callback answers 201 with the integration as JSON.
    connect_success_url: str | None = None
    #: How long a connect flow may take between the redirect and the callback.
    connect_state_ttl_s: float = Field(default=600.0, gt=0)

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://", "mongomock://")):
            scheme = value.partition("://")[0] if "://" in value else "no scheme"
            raise ValueError(f"must start with mongodb://, mongodb+srv:// or mongomock:// (got {scheme})")
        return value

    @field_validator("public_url", "app_callback_url", "connect_success_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``SYNCD_PUBLIC_URL=`` (as compose writes an unset variable) means unset, not "" ."""
        return None if isinstance(value, str) and not value.strip() else value

    def base_url(self, key: str) -> str:
        """The API root named ``key``: ``SYNCD_<KEY>_BASE_URL``, or the one its manifest documents."""
        if key in self.base_urls:
            return self.base_urls[key].rstrip("/")
        env = os.environ.get(f"SYNCD_{key.upper()}_BASE_URL")
        if env:
            return env.rstrip("/")
        return self.api_roots.get(key, "").rstrip("/")

    def public_base(self) -> str:
        """The base URL platforms and browsers reach us at (no trailing slash)."""
        return (self.public_url or f"http://localhost:{self.http_port}").rstrip("/")

    def webhook_url(self, platform: str, integration_id: str) -> str:
        return f"{self.public_base()}/webhooks/{platform}/{integration_id}"

    def oauth_client(self, platform: str) -> OAuthClient:
        """``platform``'s OAuth app: its ``SYNCD_OAUTH_CLIENTS`` entry, with
        ``SYNCD_<PLATFORM>_CLIENT_ID`` / ``_CLIENT_SECRET`` / ``_SIGNING_SECRET`` filling in
        what the entry lacks (read like the base URLs: the explicit setting wins)."""
        entry = dict(self.oauth_clients.get(platform) or {})
        prefix = f"SYNCD_{platform.upper()}_"

        def take(*keys: str, env: str) -> SecretStr | None:
            for key in keys:
                if key in entry:
                    return entry.pop(key)
            value = os.environ.get(prefix + env)
            return SecretStr(value) if value else None

        client_id = take("clientId", "client_id", env="CLIENT_ID")
        client_secret = take("clientSecret", "client_secret", env="CLIENT_SECRET")
        for name, suffix in _CREDENTIAL_ENV.items():
            if name not in entry and os.environ.get(prefix + suffix):
                entry[name] = SecretStr(os.environ[prefix + suffix])
        return OAuthClient(platform, client_id, client_secret, entry)


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; ``overrides`` win (used by CLI flags and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
