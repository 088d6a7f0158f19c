"""Every platform, by existing: its client treats a 429 with Retry-After, and every throttling
answer its manifest declares (inside a 200 or a 400), as a rate limit to wait out for the time
the platform asked, then succeeds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from contractsupport import LOADED, PLATFORMS

from syncd import providers
from syncd.kit.errors import RateLimited
from syncd.kit.http import RetryPolicy
from syncd.kit.manifest import ErrorRule
from syncd.kit.templates import lookup


def _answer_for(rule: ErrorRule) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An answer that the rule matches, asking for a 7-second wait."""
    body: dict[str, Any] = {}
    for condition in rule.when:
        value = condition.equals if condition.equals is not None else (condition.in_ or [None])[0]
        if value is None and condition.present:
            value = 1
        if value is None:
            continue
        node = body
        *parents, leaf = condition.path.split(".")
        for step in parents:
            node = node.setdefault(step, {})
        node[leaf] = value
    headers = {"retry-after": "7"}
    if rule.retry_after_path:
        node = body
        *parents, leaf = rule.retry_after_path.split(".")
        for step in parents:
            node = node.setdefault(step, {})
        node[leaf] = 7
    return (rule.status[0] if rule.status else 200), body, headers


def throttles() -> list[Any]:
    found = [pytest.param(p, 429, {}, {"retry-after": "7"}, id=f"{p}-429") for p in PLATFORMS]
    for p in PLATFORMS:
        for i, rule in enumerate(LOADED[p].manifest.errors):
            if rule.as_ == "rate_limited":
                status, body, headers = _answer_for(rule)
                assert all(lookup(body, c.path) is not None for c in rule.when if c.present)
                found.append(pytest.param(p, status, body, headers, id=f"{p}-rule{i}"))
    return found


@pytest.mark.parametrize(("platform", "status", "body", "headers"), throttles())
async def test_a_throttling_answer_is_waited_out_then_the_call_succeeds(platform, status, body, headers):
    cls = providers.connector_for(LOADED[platform])
    answers = [httpx.Response(status, json=body, headers=headers), httpx.Response(200, json={"ok": True, "status": 0})]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    transport = httpx.MockTransport(lambda request: answers.pop(0))
    credentials = cls.Credentials.model_construct(**{
        (info.alias or name): "contract-0000000000:" + "x" * 35 for name, info in cls.Credentials.model_fields.items()})
    http = cls.make_http("https://platform.invalid", credentials, policy=RetryPolicy(sleep=sleep, max_s=60),
                         timeout_s=5, transport=transport)
    try:
        with pytest.raises(RateLimited) as first:
            http.classify(httpx.Response(status, json=body, headers=headers,
                                         request=httpx.Request("GET", "https://platform.invalid/x")))
        assert first.value.retry_after == 7
        response = await http.request("GET", "/contract", label="contract")
        assert response.status_code == 200 and slept == [7]
    finally:
        await http.aclose()
