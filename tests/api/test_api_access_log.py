"""Access logs: one ``http.request`` line per request, with the route template and never a secret
that a URL, a header or a path carries."""

from __future__ import annotations

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from syncd.api.access_log import AccessLog
from syncd.logs import REDACTED
from syncd.testbed import BASE, GMAIL_PUSH_TOKEN

PLUGIN_SECRET = "plugin-secret-0123456789abcdef"


def requests_logged(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "http.request"]


async def test_a_request_is_one_line_with_the_route_status_duration_and_request_id(tb):
    with capture_logs() as logs:
        response = await tb.api.get("/chats", params={"customerId": "cust-1"})

    [line] = requests_logged(logs)
    assert line["log_level"] == "info"
    assert {k: line[k] for k in ("method", "route", "status", "client")} == {
        "method": "GET", "route": "/chats", "status": 200, "client": "127.0.0.1"}
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["request_id"] == response.headers["x-request-id"]
    assert "cust-1" not in repr(line)  # the query string is not logged


async def test_a_webhook_is_logged_by_its_template_and_the_push_token_in_its_query_is_not(tb, gmail):
    with capture_logs() as logs:
        assert (await tb.push_gmail(gmail)).status_code in (200, 204)

    [line] = requests_logged(logs)
    assert line["route"] == "/webhooks/{platform}/{integration_id}"
    assert line["params"] == {"platform": "gmail", "integration_id": gmail["id"]}
    assert GMAIL_PUSH_TOKEN not in repr(logs)


async def test_the_admin_token_and_other_headers_are_never_logged(tb):
    token = tb.api.headers["authorization"].split()[1]
    with capture_logs() as logs:
        await tb.api.get("/integrations", headers={"cookie": "session=abc123456789"})

    [line] = requests_logged(logs)
    assert token not in repr(logs) and "abc123456789" not in repr(logs)
    assert set(line) == {"event", "log_level", "method", "route", "status", "duration_ms", "request_id", "client"}


async def test_a_secret_in_a_webhook_path_is_masked_by_its_parameter_name():
    app = AccessLog(Starlette(routes=[Route("/plugins/chat/{integrationId}/{pluginSecret}/contacts",
                                            lambda request: PlainTextResponse("[]"))]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        with capture_logs() as logs:
            assert (await client.get(f"/plugins/chat/int-1/{PLUGIN_SECRET}/contacts")).status_code == 200

    [line] = requests_logged(logs)
    assert line["route"] == "/plugins/chat/{integrationId}/{pluginSecret}/contacts"
    assert line["params"] == {"integrationId": "int-1", "pluginSecret": REDACTED}
    assert PLUGIN_SECRET not in repr(logs)


async def test_a_path_that_matched_no_route_is_logged_with_its_long_segments_masked(tb):
    with capture_logs() as logs:
        response = await tb.api.get(f"/plugins/chat/int-1/{PLUGIN_SECRET}/features")

    [line] = requests_logged(logs)
    assert response.status_code == 404 and line["status"] == 404
    assert line["route"] is None and line["path"] == f"/plugins/chat/int-1/{REDACTED}/features"


async def test_a_plain_request_id_is_kept_and_anything_else_replaced(tb):
    with capture_logs() as logs:
        kept = await tb.api.get("/healthz", headers={"x-request-id": "req-42.a"})
        replaced = await tb.api.get("/healthz", headers={"x-request-id": "no spaces or " + "x" * 80})

    assert kept.headers["x-request-id"] == "req-42.a"
    assert len(replaced.headers["x-request-id"]) == 32 and "spaces" not in replaced.headers["x-request-id"]
    assert [e["request_id"] for e in requests_logged(logs)] == ["req-42.a", replaced.headers["x-request-id"]]


async def test_what_a_request_logs_carries_its_request_id():
    seen = {}

    async def endpoint(request):
        seen.update(structlog.contextvars.get_contextvars())
        raise RuntimeError("boom")

    app = AccessLog(Starlette(routes=[Route("/fails", endpoint)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app, raise_app_exceptions=False),
                                 base_url=BASE) as client:
        with capture_logs() as logs:
            response = await client.get("/fails", headers={"x-request-id": "req-7"})

    assert response.status_code == 500
    [line] = requests_logged(logs)
    assert seen["request_id"] == "req-7"
    assert (line["status"], line["route"]) == (500, "/fails")


async def test_health_probes_are_debug_unless_they_fail(tb):
    with capture_logs() as logs:
        await tb.api.get("/healthz")
        await tb.api.get("/metrics")

    assert [e["log_level"] for e in requests_logged(logs)] == ["debug", "debug"]


async def test_switched_off_nothing_is_logged_and_the_request_id_still_answers(make_tb):
    tb = await make_tb(access_log=False)
    with capture_logs() as logs:
        response = await tb.api.get("/integrations")

    assert requests_logged(logs) == [] and response.headers["x-request-id"]


def _asgi_post(path: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"syncd"), (b"content-type", b"application/json"), (b"content-length", b"200")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}


@pytest.mark.parametrize("where", ["/events", "the platform's webhook"])
async def test_a_client_gone_before_its_body_arrived_is_logged_499_not_a_server_error(tb, slack, where):
    """A slow client dropped at its read deadline, or a caller that gave up mid-body: the app
    sees ``http.disconnect``. That is the client's doing, so the access log says 499 (not 500),
    no error is logged, nothing is sent on the dead connection and nothing is stored."""
    path = "/events" if where == "/events" else f"/webhooks/slack/{slack['id']}"
    arriving = iter([{"type": "http.request", "body": b'{"type": "event_callback", ', "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(arriving)

    async def send(message: dict) -> None:
        sent.append(message)

    before = await tb.daemon.store.db.messages.count_documents({})
    with capture_logs() as logs:
        await tb.daemon.app(_asgi_post(path), receive, send)

    [line] = requests_logged(logs)
    assert (line["status"], line["log_level"]) == (499, "info")
    assert line["route"] == ("/events" if where == "/events" else "/webhooks/{platform}/{integration_id}")
    assert [e for e in logs if e["log_level"] in ("error", "critical", "exception")] == []
    assert await tb.daemon.store.db.messages.count_documents({}) == before
    assert await tb.daemon.store.db.inbox.count_documents({}) == 0
