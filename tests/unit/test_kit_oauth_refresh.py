"""A manifest's OAuth 2 authentication: a 401 refreshes the access token at the declared token
URL, the request is sent once more with the new token, and the new tokens are stored."""

from __future__ import annotations

from typing import Any

import httpx

from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import ManifestConnector
from syncd.kit.http import RetryPolicy
from syncd.kit.manifest import Manifest
from syncd.mapping import Mapping

MANIFEST = {
    "platform": "desk", "capabilities": {"webhooks": False, "send": False},
    "api": {"root": "https://desk.example/api"},
    "credentials": {"accessToken": {"secret": True}, "refreshToken": {"secret": True},
                    "clientId": {}, "clientSecret": {"secret": True}},
    "auth": {"type": "oauth2", "token": "{credentials.accessToken}", "tokenUrl": "/oauth/token",
             "refreshToken": "{credentials.refreshToken}", "clientId": "{credentials.clientId}",
             "clientSecret": "{credentials.clientSecret}"},
    "requests": {"identify": {"path": "/me", "map": "user"}},
    "mapping": {"user": {"externalUserId": {"path": "id", "required": True}}},
}


async def test_a_401_refreshes_the_token_retries_and_stores_the_new_grant():
    manifest = Manifest.model_validate(MANIFEST)
    cls = ManifestConnector.bind(manifest)
    seen: list[tuple[str, str]] = []
    stored: list[dict[str, Any]] = []

    def platform(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("authorization", "")))
        if request.url.path.endswith("/oauth/token"):
            assert b"grant_type=refresh_token" in request.content and b"refresh_token=r-1" in request.content
            return httpx.Response(200, json={"access_token": "a-2", "refresh_token": "r-2"})
        if request.headers.get("authorization") != "Bearer a-2":
            return httpx.Response(401, json={"error": "expired"})
        return httpx.Response(200, json={"id": "me-1"})

    credentials = cls.Credentials.model_validate(
        {"accessToken": "a-1", "refreshToken": "r-1", "clientId": "c", "clientSecret": "s"})
    http = cls.make_http("https://desk.example/api", credentials, policy=RetryPolicy(), timeout_s=5,
                         transport=httpx.MockTransport(platform))

    async def on_credentials(new: dict[str, Any]) -> None:
        stored.append(new)

    ctx = ConnectorContext(http=http, mapping=Mapping("desk", manifest.mapping, "desk.yaml"), webhook_url="",
                           on_credentials=on_credentials)
    connector = cls(credentials, {}, ctx)
    [me] = await connector.identify()
    assert me.external_user_id == "me-1"
    assert [path for path, _ in seen] == ["/api/me", "/api/oauth/token", "/api/me"]
    assert seen[-1][1] == "Bearer a-2"
    assert stored and stored[-1]["accessToken"] == "a-2" and stored[-1]["refreshToken"] == "r-2"
    await http.aclose()
