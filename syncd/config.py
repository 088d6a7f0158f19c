"""Settings from the environment (``SYNCD_*``), read once at start.

Per-platform API roots are overridable with ``SYNCD_<PLATFORM>_BASE_URL``; the connector
appends the platform's documented paths to whatever root it is given.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The documented API root of each platform, replaced by ``SYNCD_<PLATFORM>_BASE_URL``.
DEFAULT_BASE_URLS: dict[str, str] = {
    "slack": "https://slack.com/api",
    "gmail": "https://gmail.googleapis.com",
    "google_oauth": "https://oauth2.googleapis.com",
    "teams": "https://graph.microsoft.com/v1.0",
    "meta": "https://graph.facebook.com/v21.0",
    "telegram": "https://api.telegram.org",
    "twilio": "https://api.twilio.com",
}


class Settings(BaseSettings):
    """Everything an operator configures. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="SYNCD_", extra="ignore")

    mongodb_uri: str = "mongodb://localhost:27017/syncd"
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    #: Base of the webhook URLs handed to platforms; unset = platforms cannot reach us (local
    #: runs), so connectors that can poll instead do (Telegram).
    public_url: str | None = None
    admin_token: SecretStr | None = None
    app_webhook_secret: SecretStr | None = None
    app_callback_url: str | None = None
    secret_key: SecretStr | None = None
    poll_interval_s: float = Field(default=60.0, gt=0)
    poll_lookback_s: float = Field(default=300.0, ge=0)
    webhook_max_skew_s: int = Field(default=300, ge=0)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    outbox_max_attempts: int = Field(default=8, ge=1)
    inbox_max_attempts: int = Field(default=8, ge=1)
    retry_base_s: float = Field(default=1.0, ge=0)
    retry_max_s: float = Field(default=300.0, ge=0)
    http_max_retries: int = Field(default=5, ge=0)
    http_timeout_s: float = Field(default=30.0, gt=0)
    lease_ttl_s: float = Field(default=60.0, gt=0)
    worker_poll_s: float = Field(default=0.5, gt=0)
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    base_urls: dict[str, str] = Field(default_factory=dict)

    def base_url(self, platform: str) -> str:
        """The API root for ``platform``: ``SYNCD_<PLATFORM>_BASE_URL`` or the documented one."""
        if platform in self.base_urls:
            return self.base_urls[platform].rstrip("/")
        env = os.environ.get(f"SYNCD_{platform.upper()}_BASE_URL")
        if env:
            return env.rstrip("/")
        return DEFAULT_BASE_URLS.get(platform, "").rstrip("/")

    def webhook_url(self, platform: str, integration_id: str) -> str:
        base = self.public_url or f"http://localhost:{self.http_port}"
        return f"{base.rstrip('/')}/webhooks/{platform}/{integration_id}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; ``overrides`` win (used by CLI flags and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
