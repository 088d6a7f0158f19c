"""One ``httpx.Auth`` for every authentication a manifest can declare.

``bearer``, ``header``, ``query`` and ``basic`` put a credential on each request; ``oauth2`` is
a bearer token that is refreshed (by the ``refresh`` hook the connector gives) when a request
comes back 401, after which the request is sent once more. ``oauth1`` signs each request
(OAuth 1.0a, HMAC-SHA1) with oauthlib: the query and a form body are signed, a JSON body is not
(RFC 5849 §3.4.1.3). ``path`` tokens are part of the
request path and are placed by the connector, so this class leaves them alone.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import httpx
from oauthlib import oauth1

from syncd.kit import templates
from syncd.kit.manifest import Auth


class ManifestAuth(httpx.Auth):
    """Authenticates requests as ``spec`` says, reading credentials from ``scope`` at every
    request (so a refreshed token is used at once)."""

    def __init__(self, spec: Auth, scope: dict[str, Any],
                 refresh: Callable[[], Awaitable[bool]] | None = None):
        self.spec = spec
        self.scope = scope
        self.refresh = refresh

    def _value(self, template: str | None) -> str:
        value = templates.render(template, self.scope) if template else None
        return "" if value is None else str(value)

    def apply(self, request: httpx.Request) -> None:
        kind = self.spec.type
        if kind in ("bearer", "oauth2"):
            request.headers["Authorization"] = f"Bearer {self._value(self.spec.token)}"
        elif kind == "header":
            request.headers[self.spec.header or ""] = self._value(self.spec.value)
        elif kind == "query":
            request.url = request.url.copy_merge_params({self.spec.param or "": self._value(self.spec.value)})
        elif kind == "oauth1":
            self._sign(request)
        elif kind == "basic":
            pair = f"{self._value(self.spec.username)}:{self._value(self.spec.password)}".encode()
            request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

    def _sign(self, request: httpx.Request) -> None:
        client = oauth1.Client(self._value(self.spec.consumer_key), self._value(self.spec.consumer_secret),
                               self._value(self.spec.token), self._value(self.spec.token_secret))
        form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        body = request.content.decode() if form and request.content else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        _, signed, _ = client.sign(str(request.url), request.method, body, headers)
        request.headers["Authorization"] = signed["Authorization"]

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self.apply(request)
        response = yield request
        refresh = self.refresh if self.spec.type == "oauth2" else None
        if response.status_code == 401 and refresh is not None and await refresh():
            self.apply(request)
            yield request
