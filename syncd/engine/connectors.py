"""Builds and caches one connector (and so one HTTP client) per integration."""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import AliasChoices, BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails

from syncd import providers
from syncd.config import Settings
from syncd.kit.connector import Connector, ConnectorContext
from syncd.kit.errors import scrub_exception
from syncd.kit.http import RetryPolicy
from syncd.kit.jwks import KeySets
from syncd.kit.loader import Loaded
from syncd.logs import KNOWN_SECRETS, is_secret_key
from syncd.models import Integration


class UnknownPlatform(KeyError):
    pass


#: The longest a credentials check that a client waits on may take per request.
QUICK_TIMEOUT_S = 10.0

#: What the engine calls on a connector: whatever they raise leaves scrubbed of secrets.
GUARDED_METHODS = ("identify", "list_chats", "fetch_history_page", "send", "reconcile_send", "edit", "delete",
                   "prepare_webhook", "accept_webhook", "parse_webhook", "poll", "maintain", "listen")


def secret_values(model: type[BaseModel], credentials: dict[str, Any]) -> list[str]:
    """The values of ``credentials`` that are secrets: fields the model keeps out of ``repr``
    or whose name says so (``token``, ``secret``, ``key``...). Identifiers (a phone number
    id, an email address) are not: errors and logs may name them."""
    fields = {}
    for name, info in model.model_fields.items():
        fields[name] = info
        if info.alias:
            fields[info.alias] = info
    return [str(value) for key, value in credentials.items()
            if isinstance(value, str) and (is_secret_key(key) or getattr(fields.get(key), "repr", True) is False)]


_UNSAFE_IN_IDS = re.compile(r"[/?#\\%\s\x00-\x1f\x7f]")


def accepted_names(name: str, info: FieldInfo) -> set[str]:
    """Every key a credentials field is read from: its name, its alias and its aliases (Smooch's
    argument names, ``AliasChoices``)."""
    names = {name, info.alias} if info.alias else {name}
    choices = info.validation_alias
    if isinstance(choices, AliasChoices):
        names.update(c for c in choices.choices if isinstance(c, str))
    elif isinstance(choices, str):
        names.add(choices)
    return names


def _safe_id(key: str, value: Any) -> bool:
    """Credential ids (``pageId``, ``phoneNumberId``, ``accountSid``...) end up in platform URL
    paths: one that could change the path is refused before it is used or stored."""
    if not (key.endswith(("Id", "_id", "Sid", "_sid")) and isinstance(value, str)):
        return True
    return not _UNSAFE_IN_IDS.search(value) and value not in (".", "..")


def _guarded_method(sub: type, name: str, method: Any) -> Any:
    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def guarded(self: Connector, *args: Any, **kwargs: Any) -> Any:
            try:
                return await getattr(super(sub, self), name)(*args, **kwargs)
            except Exception as exc:
                scrub_exception(exc, self.http.secrets)
                raise
        return guarded

    @functools.wraps(method)
    def guarded_sync(self: Connector, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(super(sub, self), name)(*args, **kwargs)
        except Exception as exc:
            scrub_exception(exc, self.http.secrets)
            raise
    return guarded_sync


@functools.cache
def guarded(cls: type[Connector]) -> type[Connector]:
    """``cls`` with every exception leaving its engine-facing methods carrying no secret value
    of the connector's HTTP client (its ``secrets``), whatever text the platform put in it:
    the one place where provider errors meet the engine, which stores, logs and answers them.
    A subclass built once per platform, not wrappers per connector: a daemon holds thousands
    of connectors, and thirteen closures each were ~6 KB of every integration."""
    sub = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
    for name in GUARDED_METHODS:
        setattr(sub, name, _guarded_method(sub, name, getattr(cls, name)))
    return sub


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
        #: A 429's short Retry-After is still waited out; nothing else is retried.
        self.quick_policy = RetryPolicy(max_retries=1, base_s=0.0, max_s=QUICK_TIMEOUT_S, sleep=sleep,
                                        max_inline_wait_s=QUICK_TIMEOUT_S / 2)
        self.clock = clock
        #: Published signing keys, fetched once per their cache lifetime for every integration.
        self.key_sets = KeySets(settings.base_url, transport=self.transports.get)
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
        """Raises ``UnknownPlatform`` or pydantic's ``ValidationError``, which names every
        field the platform does not take (a typo such as ``bottoken`` is not ignored)."""
        model = self.connector_class(platform).Credentials
        known = {n for name, info in model.model_fields.items() for n in accepted_names(name, info)}
        problems: list[InitErrorDetails] = [
            {"type": "extra_forbidden", "loc": (key,), "input": None} for key in credentials if key not in known]
        problems += [{"type": "value_error", "loc": (key,), "input": None,
                      "ctx": {"error": "an id may not contain '/', '?', '#', '\\', '%', spaces or control "
                                       "characters, nor be '.' or '..'"}}
                     for key, value in credentials.items() if key in known and not _safe_id(key, value)]
        if problems:
            raise ValidationError.from_exception_data(model.__name__, problems)
        return model.model_validate(credentials)

    def build(
        self,
        integration: Integration,
        credentials: dict[str, Any],
        on_credentials: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        *,
        quick: bool = False,
        refresh_once: Any = None,
    ) -> Connector:
        """``quick``: one attempt and a short timeout, for a check a client waits on (new
        credentials): a platform that cannot be reached is said so at once, not after minutes."""
        cls = self.connector_class(integration.platform)
        creds = cls.Credentials.model_validate(credentials)
        http = cls.make_http(
            self.settings.base_url(cls.base_url_key or integration.platform), creds,
            policy=self.quick_policy if quick else self.policy,
            timeout_s=min(self.settings.http_timeout_s, QUICK_TIMEOUT_S) if quick else self.settings.http_timeout_s,
            transport=self.transports.get(integration.platform) or self.transports.get(cls.base_url_key or ""),
        )
        http.platform = integration.platform
        secrets = secret_values(cls.Credentials, credentials)
        http.secrets.add(*secrets)
        KNOWN_SECRETS.add(*secrets, owner=integration.id)

        # The closures below keep the connector's lifetime: they hold the id, not the model.
        integration_id = integration.id

        async def remember(new: dict[str, Any]) -> None:
            # A refreshed token is as secret as the one it replaces; the old one stays known
            # until the connector is forgotten (a late error may still quote it).
            fresh = secret_values(cls.Credentials, new)
            http.secrets.add(*fresh)
            KNOWN_SECRETS.add(*fresh, owner=integration_id)
            if on_credentials is not None:
                await on_credentials(new)

        async def refreshed(refresh: Any, usable: Any) -> dict[str, Any]:
            new: dict[str, Any] = await refresh_once(refresh, usable)
            fresh = secret_values(cls.Credentials, new)
            http.secrets.add(*fresh)
            KNOWN_SECRETS.add(*fresh, owner=integration_id)
            return new

        ctx = ConnectorContext(
            http=http,
            mapping=self.mappings[integration.platform],
            webhook_url=self.settings.webhook_url(integration.platform, integration.id),
            public_webhooks=self.settings.public_url is not None,
            webhook_max_skew_s=self.settings.webhook_max_skew_s,
            on_credentials=remember,
            key_sets=self.key_sets,
            refresh_once=refreshed if refresh_once is not None else None,
        )
        if self.clock is not None:
            ctx.clock = self.clock
        return guarded(cls)(creds, integration.settings, ctx)

    def cached(self, integration_id: str) -> Connector | None:
        return self._cache.get(integration_id)

    async def get(
        self,
        integration: Integration,
        read_credentials: Callable[[], Awaitable[dict[str, Any]]],
        on_credentials: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        refresh_once: Any = None,
    ) -> Connector:
        """The integration's cached connector, else one built from what ``read_credentials``
        returns. Callers that miss together wait for a single build: reading the credentials
        yields to the event loop (as every MongoDB call does), and two connectors of one
        integration would each refresh the same grant, keep their own access token and HTTP
        client, and store whichever rotated grant came last."""
        connector = self._cache.get(integration.id)
        if connector is not None:
            return connector
        lock = self._building.setdefault(integration.id, asyncio.Lock())
        async with lock:
            connector = self._cache.get(integration.id)
            if connector is None:
                connector = self.build(integration, await read_credentials(), on_credentials,
                                       refresh_once=refresh_once)
                self._cache[integration.id] = connector
                # Built: whoever waits on this lock finds it cached, and so does every later
                # caller; a lock kept per integration would be held for nothing. (After a
                # failed build the lock stays, so the next builder still waits its turn.)
                if self._building.get(integration.id) is lock:
                    del self._building[integration.id]
            return connector

    def remember(self, integration_id: str, connector: Connector) -> Connector:
        self._cache[integration_id] = connector
        return connector

    async def forget(self, integration_id: str, *, close: bool = True) -> None:
        """Drop the cached connector; ``close=False`` when it is in use by the caller (it is
        closed when garbage, and the next user builds a fresh one)."""
        self._building.pop(integration_id, None)
        KNOWN_SECRETS.forget(integration_id)
        connector = self._cache.pop(integration_id, None)
        if connector is not None and close:
            await connector.close()

    async def close(self) -> None:
        for integration_id in list(self._cache):
            await self.forget(integration_id)
