"""Plugin routes: for a platform that calls *syncd* as its plugin (an inbox product that asks a
plugin server for contacts and hands it API credentials), rather than only posting webhooks.

Such a platform's folder has a ``plugin.py`` with

``router(host: PluginHost) -> fastapi.APIRouter``: its routes, under a path of its own
(which may carry the platform's name); the API mounts every router that platforms declare.
The URL to paste at the platform is the manifest's: a generated credential's ``link``, answered
once at creation (``setup``).

``PluginHost`` is what those routes may do: the API implements it over the engine and the
store, so platform code still never imports them.
"""

from __future__ import annotations

from typing import Any, Protocol

from syncd.models import Chat, Integration, UserPlatform
from syncd.universal import WebhookAnswer, WebhookRequest


class PluginHost(Protocol):
    async def integration(self, platform: str, integration_id: str) -> tuple[Integration, dict[str, Any]] | None:
        """The live integration ``integration_id`` of ``platform`` and its credentials, else ``None``."""

    async def live(self, platform: str, integration_id: str) -> Integration | None:
        """The live integration ``integration_id`` of ``platform``, without its credentials
        (read from a short-lived cache: the hot path of deliveries), else ``None``."""

    async def contacts(self, customer_id: str) -> tuple[list[UserPlatform], list[Chat]]:
        """The customer's known accounts (``user_platforms``) and chats, across their platforms."""

    async def configure(self, integration_id: str, credentials: dict[str, Any]) -> Integration:
        """Store new credentials (encrypted), bring the integration back to active and import.
        Raises the engine's error for credentials that are invalid or rejected."""

    async def deliver(self, integration: Integration, request: WebhookRequest) -> WebhookAnswer:
        """A webhook delivery, handled as if it came to ``/webhooks/{platform}/{id}``: verified by
        the integration's connector (``SignatureError`` if it fails), then stored."""
