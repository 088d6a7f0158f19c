"""Builds and caches one connector (and so one HTTP client) per integration."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel

from syncd import providers
from syncd.config import Settings
from syncd.kit.connector import Connector, ConnectorContext
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import Loaded
from syncd.models import Integration


class UnknownPlatform(KeyError):
    pass


class Connectors:
    """The connector of each integration, built on first use with its stored credentials.

    ``transports`` lets tests and the demo route a platform's HTTP to an in-process
    simulator; ``sleep`` replaces ``asyncio.sleep`` in retry waits.
    """

    def __init__(
        self,
        settings: Settings,
        platforms: dict[str, Loaded],
        *,
        transports: dict[str, httpx.AsyncBaseTransport] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
    ):
        self.settings = settings
        self.loaded = platforms
        self.mappings = {name: loaded.mapping for name, loaded in platforms.items()}
        #: Each platform's connector class, bound to its manifest (built once, at start).
        self.classes: dict[str, type[Connector]] = {
            name: providers.connector_for(loaded) for name, loaded in platforms.items()}
        self.transports = transports or {}
        self.policy = RetryPolicy(
            max_retries=settings.http_max_retries, base_s=settings.retry_base_s,
            max_s=settings.retry_max_s, sleep=sleep, max_inline_wait_s=settings.http_max_inline_wait_s,
        )
        self.clock = clock
        self._cache: dict[str, Connector] = {}
        #: Held while an integration's connector is being built (see :meth:`get`).
        self._building: dict[str, asyncio.Lock] = {}

    def platforms(self) -> list[str]:
        return sorted(self.mappings)

    def resolve(self, name: str) -> str | None:
        """The platform called ``name``, by its name or one of its aliases (``x``)."""
        if name in self.classes:
            return name
        return next((p for p, loaded in self.loaded.items() if name in loaded.manifest.aliases), None)

    def connector_class(self, platform: str) -> type[Connector]:
        if platform not in self.classes:
            raise UnknownPlatform(platform)
        return self.classes[platform]

    def validate_credentials(self, platform: str, credentials: dict[str, Any]) -> BaseModel:
        """Raises ``UnknownPlatform`` or pydantic's ``ValidationError``."""
        return self.connector_class(platform).Credentials.model_validate(credentials)

    def build(
        self,
        integration: Integration,
        credentials: dict[str, Any],
        on_credentials: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> Connector:
        cls = self.connector_class(integration.platform)
        creds = cls.Credentials.model_validate(credentials)
        http = cls.make_http(
            self.settings.base_url(cls.base_url_key or integration.platform), creds, policy=self.policy,
            timeout_s=self.settings.http_timeout_s,
            transport=self.transports.get(integration.platform) or self.transports.get(cls.base_url_key or ""),
        )
        http.platform = integration.platform
        ctx = ConnectorContext(
            http=http,
            mapping=self.mappings[integration.platform],
            webhook_url=self.settings.webhook_url(integration.platform, integration.id),
            public_webhooks=self.settings.public_url is not None,
            webhook_max_skew_s=self.settings.webhook_max_skew_s,
            on_credentials=on_credentials,
        )
        if self.clock is not None:
            ctx.clock = self.clock
        return cls(creds, integration.settings, ctx)

    def cached(self, integration_id: str) -> Connector | None:
        return self._cache.get(integration_id)

    async def get(
        self,
        integration: Integration,
        read_credentials: Callable[[], Awaitable[dict[str, Any]]],
        on_credentials: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> Connector:
        """The integration's cached connector, else one built from what ``read_credentials``
        returns. Callers that miss together wait for a single build: reading the credentials
        yields to the event loop (as every MongoDB call does), and two connectors of one
        integration would each refresh the same grant, keep their own access token and HTTP
        client, and store whichever rotated grant came last."""
        connector = self._cache.get(integration.id)
        if connector is not None:
            return connector
        async with self._building.setdefault(integration.id, asyncio.Lock()):
            connector = self._cache.get(integration.id)
            if connector is None:
                connector = self.build(integration, await read_credentials(), on_credentials)
                self._cache[integration.id] = connector
            return connector

    def remember(self, integration_id: str, connector: Connector) -> Connector:
        self._cache[integration_id] = connector
        return connector

    async def forget(self, integration_id: str) -> None:
        self._building.pop(integration_id, None)
        connector = self._cache.pop(integration_id, None)
        if connector is not None:
            await connector.close()

    async def close(self) -> None:
        for integration_id in list(self._cache):
            await self.forget(integration_id)
