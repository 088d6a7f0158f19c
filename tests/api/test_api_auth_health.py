"""Who may call what, and the operational endpoints (health, readiness, metrics, docs)."""

from __future__ import annotations

import pytest
from apisupport import assert_error

ADMIN_ENDPOINTS = [
    ("GET", "/integrations"),
    ("POST", "/integrations"),
    ("GET", "/integrations/some-id"),
    ("DELETE", "/integrations/some-id"),
    ("GET", "/integrations/some-id/status"),
    ("GET", "/chats?customerId=cust-1"),
    ("GET", "/chats/some-id/messages"),
    ("GET", "/user-platforms?customerId=cust-1"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
async def test_admin_endpoints_without_a_bearer_token_answer_401(anon, method, path):
    assert_error(await anon.request(method, path, json={}), 401, "unauthorized")


@pytest.mark.parametrize("authorization", ["Bearer wrong-token", "Basic dGVzdGJlZC1hZG1pbi10b2tlbg==",
                                           "testbed-admin-token", "Bearer "])
async def test_a_wrong_bearer_token_answers_401(anon, authorization):
    response = await anon.get("/integrations", headers={"authorization": authorization})
    assert_error(response, 401, "unauthorized")


async def test_the_right_bearer_token_is_let_in(tb):
    response = await tb.api.get("/integrations")
    assert response.status_code == 200
    assert response.json() == {"integrations": []}


async def test_admin_endpoints_answer_503_while_no_admin_token_is_configured(make_tb):
    tb = await make_tb(admin_token=None)
    response = await tb.api.get("/integrations")
    assert_error(response, 503)
    assert "SYNCD_ADMIN_TOKEN" in response.json()["error"]["message"]


async def test_webhooks_need_no_bearer_token(tb, anon, slack):
    delivery = tb.slack.url_verification("challenge-123")
    response = await anon.post(tb.webhook_url(slack), content=delivery.body, headers=delivery.headers)
    assert response.status_code == 200
    assert response.json() == {"challenge": "challenge-123"}


async def test_events_need_no_bearer_token_only_their_signature(tb, anon):
    response = await anon.post("/events", content=b"{}", headers={"x-syncd-signature": "sha256=00"})
    assert_error(response, 401, "bad_signature")


async def test_an_unknown_path_answers_404_in_the_error_format(tb):
    assert_error(await tb.api.get("/no-such-thing"), 404, "not_found")


async def test_healthz_answers_ok_without_a_token(anon):
    response = await anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_answers_200_while_the_workers_run(anon):
    response = await anon.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_readyz_answers_503_while_the_workers_do_not_run(make_tb):
    tb = await make_tb(run=False)
    response = await tb.api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["workers"] is False


async def test_metrics_are_prometheus_text_with_the_webhook_counter(tb, anon, slack):
    await tb.deliver_slack(slack, tb.slack.url_verification())
    response = await anon.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "syncd_webhooks_received_total" in response.text
    assert 'syncd_webhooks_received_total{outcome="handshake",platform="slack"}' in response.text


async def test_openapi_and_docs_are_served(anon):
    spec = await anon.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/integrations" in paths and "/events" in paths and "/chats/{chat_id}/messages" in paths
    event_body = paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert event_body == {"$ref": "#/components/schemas/AppEvent"}
    schemas = spec.json()["components"]["schemas"]
    assert {"customerId", "externalChatId", "message"} <= set(schemas["AppEvent"]["properties"])
    assert schemas["AppEvent"]["properties"]["message"] == {"$ref": "#/components/schemas/AppMessage"}
    assert "AppMessage" in schemas
    docs = await anon.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
