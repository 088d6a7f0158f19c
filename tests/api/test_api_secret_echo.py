"""A platform that echoes the token it was sent (Meta's "Error validating access token <token>")
leaks it nowhere: not in the integration's status, the sync status, a dead letter, the answer to
a re-posted event, the answer to new credentials, nor any log line."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from syncd.providers.messenger.sim import MessengerSimulator
from syncd.testbed import Testbed

PAGE = "1234567890"
TOKEN = "EAAG-echoed-page-token-0123"
NEW_TOKEN = "EAAG-second-page-token-4567"
SECRET = "echo-app-secret-fb"
VERIFY = "echo-verify-token-fb"


class EchoingPlatform(httpx.AsyncBaseTransport):
    """The simulator, until ``mode`` is set: then every call fails with an error whose text
    quotes the token the request carried (``auth``: Graph's code 190; ``refuse``: code 100)."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.mode: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.mode is None:
            return await self.inner.handle_async_request(request)
        token = request.headers.get("authorization", "").partition(" ")[2] or request.url.params.get("access_token")
        code = 190 if self.mode == "auth" else 100
        return httpx.Response(400, json={"error": {"message": f"Error validating access token {token}: refused",
                                                   "type": "OAuthException", "code": code}})


@pytest.fixture
async def tb():
    sim = MessengerSimulator(page_id=PAGE, page_name="Echo Bakery", valid_tokens=[TOKEN, NEW_TOKEN],
                             app_secret=SECRET, verify_token=VERIFY)
    sim.add_person("5678", "Ann Ames")
    sim.add_message("5678", "Hello?", at_ms=1_700_000_000_000)
    echo: dict[str, EchoingPlatform] = {}

    def transport(name: str, app: Any) -> httpx.AsyncBaseTransport:
        echo[name] = EchoingPlatform(httpx.ASGITransport(app))
        return echo[name]

    bed = await Testbed.start(sims={"messenger": sim}, transport=transport)
    bed.echo = echo["messenger"]
    yield bed
    await bed.stop()


async def until_in_error(tb, integration_id: str) -> None:
    for _ in range(500):
        if (await tb.daemon.store.get_integration(integration_id)).status == "error":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the rejected token was not noticed")


def event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "type": "message.created", "customerId": "cust-1", "platform": "messenger",
            "externalChatId": "5678", "message": {"id": f"app-{event_id}", "text": "hi"}}


async def test_a_token_the_platform_echoes_is_never_stored_answered_or_logged(tb):
    fb = await tb.create("messenger", {"pageAccessToken": TOKEN, "pageId": PAGE, "appSecret": SECRET,
                                       "verifyToken": VERIFY})
    answers: list[str] = []
    with capture_logs() as logs:
        tb.echo.mode = "refuse"
        assert (await tb.post_event(event("evt-1"))).status_code == 202
        await tb.settle()
        again = await tb.post_event(event("evt-1"))  # the dead letter is answered again
        assert again.json()["status"] == "dead"
        answers.append(again.text)

        tb.echo.mode = "auth"
        assert (await tb.post_event(event("evt-2"))).status_code == 202
        await until_in_error(tb, fb["id"])  # the event then waits for new credentials
        listed = await tb.api.get("/integrations")
        assert listed.json()["integrations"][0]["status"] == "error"
        answers += [listed.text, (await tb.api.get(f"/integrations/{fb['id']}/status")).text]
        await tb.engine.maintain(fb["id"])
        await tb.engine.poll(fb["id"])
        await tb.engine.wait_background()

        refused = await tb.api.put(f"/integrations/{fb['id']}/credentials", json={"credentials": {
            "pageAccessToken": NEW_TOKEN, "pageId": PAGE, "appSecret": SECRET, "verifyToken": VERIFY}})
        assert refused.status_code == 422
        answers.append(refused.text)

    stored = [await tb.daemon.store.find_outbox("cust-1", f"evt-{n}") for n in (1, 2)]
    texts = [*answers, repr(logs), *(repr(item) for item in stored)]
    assert any("token rejected (190)" in t for t in texts)  # the failure is told, by its code
    for secret in (TOKEN, NEW_TOKEN, SECRET, VERIFY):
        assert not [t for t in texts if secret in t], f"{secret} leaked"
    assert json.loads(answers[0])["error"]  # the re-posted event answers with what failed
