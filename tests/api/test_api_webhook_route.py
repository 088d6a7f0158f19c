"""The webhook route itself (``/webhooks/{platform}/{integration_id}``): a plain Starlette
route, documented in the OpenAPI schema by hand; the request URL a connector may read; the
inbox worker letting deliveries being received go first."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from apisupport import assert_error, slack_headers, slack_sample

from syncd.engine.context import connector_for
from syncd.store import Store
from syncd.testbed import BASE
from syncd.universal import WebhookRequest

WEBHOOK_PATH = "/webhooks/{platform}/{integration_id}"


def documented_body(event_id: str = "Ev0000001") -> bytes:
    return json.dumps({**slack_sample("/reference/events/message")["payload"], "event_id": event_id}).encode()


async def test_both_webhook_operations_are_in_the_openapi_schema(anon):
    operations = (await anon.get("/openapi.json")).json()["paths"][WEBHOOK_PATH]
    assert set(operations) == {"get", "post"}
    for method, operation in operations.items():
        assert operation["operationId"] == f"webhook_{method}"
        assert operation["tags"] == ["webhooks"]
        assert operation["summary"] == f"Provider webhook ({method.upper()})"
        assert [(p["name"], p["in"], p["required"]) for p in operation["parameters"]] == [
            ("platform", "path", True), ("integration_id", "path", True)]
        assert {"200", "401", "404"} <= set(operation["responses"])


async def test_the_schema_lists_the_webhooks_where_the_route_is(anon):
    """First: the route is matched before every other (deliveries are the hot path)."""
    paths = list((await anon.get("/openapi.json")).json()["paths"])
    assert paths.index(WEBHOOK_PATH) < paths.index("/platforms") < paths.index("/events")


async def test_other_methods_on_a_webhook_answer_405_in_the_error_format(tb, anon, slack):
    for method in ("HEAD", "PUT", "DELETE"):
        response = await anon.request(method, tb.webhook_url(slack))
        assert response.status_code == 405, (method, response.status_code)
        if method != "HEAD":  # a HEAD answer has no body
            assert_error(response, 405, "method_not_allowed")


async def test_an_unknown_integration_answers_404_on_get_and_post(anon):
    assert_error(await anon.get("/webhooks/slack/no-such-integration"), 404, "not_found")
    assert_error(await anon.post("/webhooks/slack/no-such-integration", content=b"{}"), 404, "not_found")


def webhook_counts(text: str) -> dict[str, float]:
    prefix = 'syncd_webhooks_received_total{outcome="'
    return {line[len(prefix):].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(prefix) and 'platform="slack"' in line}


async def test_every_delivery_is_counted_by_its_outcome(tb, anon, slack):
    before = webhook_counts((await anon.get("/metrics")).text)
    body = documented_body()
    for _ in range(2):  # the second is a duplicate
        await anon.post(tb.webhook_url(slack), content=body, headers=slack_headers(body, tb.slack.signing_secret))
    for _ in range(3):
        await anon.post(tb.webhook_url(slack), content=body, headers=slack_headers(body, "not-the-secret"))
    after = webhook_counts((await anon.get("/metrics")).text)
    grown = {outcome: after[outcome] - before.get(outcome, 0.0) for outcome in after}
    assert {k: v for k, v in grown.items() if v} == {"accepted": 1, "duplicate": 1, "rejected": 3}


class UrlReader:
    """The integration's connector, recording the request URL it is handed with each delivery."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.urls: list[str] = []

    def accept_webhook(self, request: WebhookRequest) -> Any:
        self.urls += [request.url, request.url]  # read twice: built once, the same both times
        return self.inner.accept_webhook(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_connector_reading_the_request_url_gets_the_url_as_requested(tb, anon, slack):
    ctx = tb.engine.ctx
    reader = UrlReader(await connector_for(ctx, await tb.daemon.store.get_integration(slack["id"])))
    ctx.connectors.remember(slack["id"], reader)
    body = documented_body()
    response = await anon.post(f"{tb.webhook_url(slack)}?retry=1&x=%C3%A9", content=body,
                               headers=slack_headers(body, tb.slack.signing_secret))
    assert response.status_code == 200, response.text
    assert reader.urls == [f"{BASE}/webhooks/slack/{slack['id']}?retry=1&x=%C3%A9"] * 2


def test_a_webhook_request_url_given_as_a_function_is_built_on_first_read_only():
    built: list[int] = []

    def url() -> str:
        built.append(1)
        return "https://syncd.test/webhooks/slack/i1?a=1"

    request = WebhookRequest("POST", url, {}, {}, b"{}")
    assert built == []
    assert request.url == request.url == "https://syncd.test/webhooks/slack/i1?a=1"
    assert built == [1]
    assert WebhookRequest("POST", "https://x.test/", {}, {}, b"").url == "https://x.test/"


class HeldStore(Store):
    """A store that holds the write of one delivery until told, and records every claim."""

    held_delivery: str | None = None

    def hold(self, delivery_id: str) -> None:
        self.held_delivery = delivery_id
        self.holding, self.release = asyncio.Event(), asyncio.Event()
        self.claimed: list[str] = []

    async def inbox_put(self, item: Any) -> bool:
        if item.delivery_id == self.held_delivery:
            self.holding.set()
            await self.release.wait()
        return await super().inbox_put(item)

    async def inbox_claim_many(self, now: Any, lease_s: float, limit: int) -> list[Any]:
        items = await super().inbox_claim_many(now, lease_s, limit)
        if self.held_delivery is not None:
            self.claimed += [item.delivery_id for item in items]
        return items


async def test_the_inbox_worker_lets_a_delivery_being_received_finish_before_it_claims(make_tb):
    store = await HeldStore.connect("mongomock://", secret_key="test-secret-key")
    tb = await make_tb(store=store)
    tb.slack.seed_workspace()
    slack = await tb.create_slack()
    secret = tb.slack.signing_secret
    store.hold("Ev-held")
    held_body, other_body = documented_body("Ev-held"), documented_body("Ev-other")
    held = asyncio.create_task(tb.api.post(tb.webhook_url(slack), content=held_body,
                                           headers=slack_headers(held_body, secret)))
    await store.holding.wait()
    # Another delivery is stored and wakes the worker while the first is still being received.
    other = await tb.api.post(tb.webhook_url(slack), content=other_body, headers=slack_headers(other_body, secret))
    assert other.status_code == 200, other.text
    for _ in range(20):
        await asyncio.sleep(0)
    assert store.claimed == []
    store.release.set()
    assert (await held).status_code == 200
    await tb.settle()
    assert sorted(store.claimed) == ["Ev-held", "Ev-other"]
