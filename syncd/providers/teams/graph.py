"""Calls to Microsoft Graph: the bearer token on every request, Graph's error answers
classified, one call (with the token refreshed around it, see ``auth.py``) and its pages.

``@odata.nextLink`` is an opaque absolute URL, requested verbatim, and followed only on the
Graph root's own origin, since the request carries our bearer token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import httpx
from pydantic import BaseModel

from syncd.kit.connector import Connector
from syncd.kit.errors import (
    AuthError,
    CursorExpired,
    PermanentError,
    ProviderError,
    RateLimited,
    TransientError,
)
from syncd.kit.http import (
    Pages,
    ProviderHttp,
    RetryPolicy,
    gather_bounded,
    parse_retry_after,
)

PAGE_SIZE = 50  # Graph's maximum $top for chats and messages
#: Parallel message fetches; Teams allows about 4 requests per second per chat or channel.
CONCURRENCY = 4
THROTTLING_CODES = frozenset({"TooManyRequests", "activityLimitReached", "throttledRequest"})

#: The documented root (its manifest declares it too; ``SYNCD_TEAMS_BASE_URL`` replaces it).
GRAPH_ROOT = "https://graph.microsoft.com/v1.0"



if TYPE_CHECKING:
    from syncd.providers.teams.auth import TeamsCredentials
    from syncd.providers.teams.ids import Where
    from syncd.universal import ChatData, MessageData


class GraphBearer:
    """The ``authenticate`` hook: the current access token, swapped in place on refresh."""

    def __init__(self, token: str | None, expires_at: float | None):
        self.token = token
        self.expires_at = expires_at
        self.lock = asyncio.Lock()

    async def __call__(self, request: httpx.Request) -> None:
        # The token endpoint takes the refresh grant instead of a bearer token.
        if self.token and not request.url.path.endswith("/oauth2/v2.0/token"):
            request.headers["authorization"] = f"Bearer {self.token}"


def graph_error(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from Graph's ``{"error": {code, message}}`` or OAuth's ``{"error": code}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, error
    if isinstance(error, dict):
        code = str(error["code"]) if error.get("code") else None
        return code, str(error.get("message") or code or response.reason_phrase)[:300]
    return None, response.reason_phrase or "error"


def classify(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    code, message = graph_error(response)
    label = f"{status} {code}" if code else str(status)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    # Graph's 429 bodies vary (even "UnknownError" with no message): the status decides; a
    # 503 carrying Retry-After is throttling too.
    if status == 429 or code in THROTTLING_CODES or (status == 503 and retry_after is not None):
        raise RateLimited(f"throttled ({label})", status=status, code=code, retry_after=retry_after)
    if status == 401:
        raise AuthError(f"credentials rejected ({label})", status=status, code=code)
    if status >= 500 or status == 408:
        raise TransientError(f"server error ({label}): {message}", status=status, code=code)
    if status == 410:
        raise CursorExpired(f"paging or sync state expired ({label})", status=status, code=code)
    raise PermanentError(f"request failed ({label}): {message}", status=status, code=code)


class TeamsBase(Connector):
    """What every part of :class:`~syncd.providers.teams.TeamsConnector` shares: the state its
    ``__init__`` sets and the Graph calls. The parts reach each other's methods through
    ``self`` (they only make sense composed)."""

    auth: GraphBearer
    login_root: str
    page_size: int
    _me: dict[str, Any] | None
    _described: set[str]
    credentials: TeamsCredentials  # validated against ``Credentials`` by the caller

    if TYPE_CHECKING:
        # Defined by the other parts (auth.py, chats.py, messages.py, subscriptions.py).
        def _expiring(self) -> bool: ...
        async def _refresh(self, used: str | None) -> None: ...
        def _scrub(self, exc: ProviderError) -> None: ...
        def _client_state(self) -> str | None: ...
        async def _reauthorize(self, subscription_id: str) -> bool: ...
        async def _my_id(self) -> str | None: ...
        def _chat(self, raw: dict[str, Any], me: str | None) -> ChatData: ...
        def _channel_chat(self, team: dict[str, Any], channel: dict[str, Any]) -> ChatData: ...
        async def _all_chats(self) -> list[dict[str, Any]]: ...
        async def _teams(self) -> list[tuple[dict[str, Any], dict[str, Any]]]: ...
        def _map(self, raw: dict[str, Any], where: Where) -> MessageData | None: ...
        def _tombstone(self, where: Where, message_id: str, root: str | None) -> MessageData: ...
        def _mapped(self, raws: Iterable[dict[str, Any]], where: Where) -> list[MessageData]: ...
        async def _with_replies(self, where: Where, roots: list[dict[str, Any]],
                                since: datetime | None = None) -> list[dict[str, Any]]: ...

    @classmethod
    def make_http(cls, base_url: str, credentials: BaseModel, *, policy: RetryPolicy, timeout_s: float,
                  transport: httpx.AsyncBaseTransport | None = None) -> ProviderHttp:
        c = cast("TeamsCredentials", credentials)  # validated against ``Credentials``
        auth = GraphBearer(c.access_token, c.expires_at)
        return ProviderHttp(base_url or GRAPH_ROOT, classify=classify, authenticate=auth,
                            policy=policy, timeout_s=timeout_s, transport=transport)

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One Graph call: the token refreshed first when it is about to expire, and once on a 401."""
        try:
            if self._expiring():
                await self._refresh(self.auth.token)
            used = self.auth.token
            try:
                response = await self.http.request(method, path, **kwargs)
            except AuthError as exc:
                if exc.status != 401 or not self.credentials.can_refresh:
                    raise
                await self._refresh(used)
                response = await self.http.request(method, path, **kwargs)
        except ProviderError as exc:
            self._scrub(exc)
            raise
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise PermanentError(f"{method}: the answer is not JSON", status=response.status_code) from None

    def _follow(self, link: str) -> str:
        """A nextLink, verbatim, if it stays on the Graph root's origin (it gets our token)."""
        target, root = httpx.URL(link), httpx.URL(self.http.base_url)
        if not target.is_absolute_url:
            return str(root.join(link))
        if (target.scheme, target.host, target.port) != (root.scheme, root.host, root.port):
            raise PermanentError("an @odata.nextLink points outside the Graph root; not followed")
        return link

    async def _pages(self, path: str, params: dict[str, Any] | None, name: str) -> AsyncIterator[dict[str, Any]]:
        """Every page of a Graph collection, following ``@odata.nextLink``."""
        pages, url, query = Pages(name), path, params
        while True:
            page = await self._call("GET", url, params=query)
            yield page
            link = pages.advance(page.get("@odata.nextLink"))
            if link is None:
                return
            url, query = self._follow(link), None

    async def _each(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        return await gather_bounded(calls, CONCURRENCY)
