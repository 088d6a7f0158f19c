"""Integrations share one httpx client per event loop (and timeout, transport); what belongs
to one integration (auth, headers, the rate budget, cookies) stays its own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from syncd.kit.errors import RateLimited
from syncd.kit.http import ProviderHttp, RetryPolicy, bearer, close_shared_clients, with_query


def recording() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/limited":
            return httpx.Response(429, headers={"retry-after": "120"}, json={})
        # A platform that sets a cookie: no other integration may send it back.
        return httpx.Response(200, headers={"set-cookie": "session=of-the-first; Path=/"}, json={"ok": True})

    return httpx.MockTransport(answer), seen


async def test_integrations_share_a_client_but_not_their_auth_headers_or_cookies():
    transport, seen = recording()
    first = ProviderHttp("https://api.example.test", transport=transport, authenticate=bearer("token-one-1234"),
                         headers={"x-api-version": "1"})
    second = ProviderHttp("https://api.example.test", transport=transport, authenticate=bearer("token-two-5678"))
    assert first.client is second.client
    await first.request("GET", "/a")
    await second.request("GET", "/b", headers={"x-call": "yes"})
    one, two = seen
    assert one.headers["authorization"] == "Bearer token-one-1234" and one.headers["x-api-version"] == "1"
    assert two.headers["authorization"] == "Bearer token-two-5678" and "x-api-version" not in two.headers
    assert two.headers["x-call"] == "yes" and two.headers["user-agent"] == "syncd"
    assert "cookie" not in two.headers
    await first.aclose()  # one integration going away leaves the shared client open
    await second.request("GET", "/c")
    assert len(seen) == 3


async def test_a_429_closes_the_gate_of_its_own_integration_only():
    transport, seen = recording()
    policy = RetryPolicy(max_retries=0, max_inline_wait_s=1)
    limited = ProviderHttp("https://api.example.test", transport=transport, policy=policy)
    other = ProviderHttp("https://api.example.test", transport=transport, policy=policy)
    try:
        await limited.request("GET", "/limited")
    except RateLimited:
        pass
    assert (await other.request("GET", "/fine")).status_code == 200


async def test_a_client_made_after_the_shared_ones_closed_gets_a_fresh_one():
    transport, _ = recording()
    http = ProviderHttp("https://api.example.test", transport=transport)
    await close_shared_clients()
    assert http.client.is_closed
    assert (await http.request("GET", "/again")).status_code == 200
    assert not http.client.is_closed


def test_outside_an_event_loop_a_client_is_its_own():
    transport, _ = recording()
    one = ProviderHttp("https://api.example.test", transport=transport)
    two = ProviderHttp("https://api.example.test", transport=transport)
    assert one.client is not two.client


@pytest.mark.parametrize("params", [
    {"channel": "C1", "oldest": "1700000000.000100"},
    {"q": "a b&c=d/é", "flag": True, "off": False, "none": None, "n": 3, "f": 1.5},
    [("k", "1"), ("k", "2"), ("$filter", "lastModifiedDateTime gt 2026-01-01T00:00:00Z")],
    {}, {"empty": ""},
])
def test_params_written_into_the_url_match_what_httpx_builds(params: Any):
    url, rest = with_query("https://graph.example.test/v1.0/chats/19:abc@thread.v2/messages", {"params": params, "json": {}})
    ours = httpx.Request("GET", url)
    theirs = httpx.Request("GET", "https://graph.example.test/v1.0/chats/19:abc@thread.v2/messages", params=params)
    assert str(ours.url) == str(theirs.url) and rest == {"json": {}}


def test_params_are_left_to_httpx_when_the_url_has_a_query_already():
    kwargs = {"params": {"b": "2"}}
    assert with_query("https://api.example.test/x?a=1", kwargs) == ("https://api.example.test/x?a=1", kwargs)


@pytest.mark.parametrize("kwargs", [
    {},
    {"headers": {"Accept": "application/json", "X-Call": "1"}},
    {"headers": {"user-agent": "call's own", "x-integration": "overridden"}},
    {"json": {"text": "hé", "n": [1, 2]}},
    {"content": b"raw bytes", "headers": {"content-type": "application/octet-stream"}},
    {"data": {"a": "1", "b": "x y"}},
    {"files": {"f": ("a.txt", b"hello", "text/plain")}, "data": {"k": "v"}},
    {"timeout": 5.0},
    {"params": {"q": "1"}, "headers": {"x": "y"}},
])
async def test_a_request_is_built_as_the_client_builds_it(kwargs: dict[str, Any]):
    http = ProviderHttp("https://api.example.test/v1", headers={"x-integration": "mine"})
    try:
        url = "https://api.example.test/v1/items?cursor=a%20b"
        ours = http._build("POST", url, dict(kwargs))
        headers = httpx.Headers(http.headers)
        headers.update(httpx.Headers(kwargs.get("headers")))
        theirs = http.client.build_request("POST", url, **{**kwargs, "headers": headers})
        assert str(ours.url) == str(theirs.url)
        assert ours.headers.multi_items() == theirs.headers.multi_items() or (
            "files" in kwargs and _without_boundary(ours) == _without_boundary(theirs))
        assert ours.extensions == theirs.extensions
        if "files" not in kwargs:  # a multipart body's boundary is random
            assert await ours.aread() == await theirs.aread()
    finally:
        await http.aclose()
        await close_shared_clients()


def _without_boundary(request: httpx.Request) -> list[tuple[str, str]]:
    return [(k, v.split("boundary=")[0]) for k, v in request.headers.multi_items() if k != "content-length"]
