"""New credentials are checked with the platform before anything is stored: refused with 422
when the platform refuses them or an id in them would change a request's path, and with 503
``platform_unreachable`` at once (one attempt, no minutes of retries) when it cannot be reached."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from apisupport import assert_error

from syncd.providers.messenger.sim import MessengerSimulator
from syncd.testbed import Testbed

TOKEN = "EAAG-path-page-token"


class Switch(httpx.AsyncBaseTransport):
    """The simulator, or (``down``) a platform that cannot be reached; counts requests."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner, self.down, self.paths = inner, False, []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode())
        if self.down:
            raise httpx.ConnectError("connection refused")
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def tb():
    sim = MessengerSimulator(page_id="1234567890", page_name="P", valid_tokens=[TOKEN], app_secret="s-app-secret",
                             verify_token="v-verify-token")
    switches: dict[str, Switch] = {}

    def transport(name: str, app: Any) -> httpx.AsyncBaseTransport:
        switches[name] = Switch(httpx.ASGITransport(app))
        return switches[name]

    bed = await Testbed.start(sims={"messenger": sim}, transport=transport, fast_retries=False)
    bed.switches = switches
    yield bed
    await bed.stop()


def _messenger(page_id: str) -> dict[str, Any]:
    return {"platform": "messenger", "customerId": "cust-1", "credentials": {
        "pageAccessToken": TOKEN, "pageId": page_id, "appSecret": "s-app-secret", "verifyToken": "v-verify-token"}}


@pytest.mark.parametrize("page_id", ["../../../escape", "x#frag", "a/b", "..", "1 2", "x?y=1"])
async def test_an_id_that_would_change_a_platform_path_is_refused_naming_the_field(tb, page_id):
    response = await tb.api.post("/integrations", json=_messenger(page_id))
    error = assert_error(response, 422, "invalid_credentials")
    assert [d["field"] for d in error["details"]] == ["pageId"]
    assert tb.switches["messenger"].paths == []
    assert (await tb.api.get("/integrations")).json()["integrations"] == []


async def test_an_unreachable_platform_at_creation_answers_503_at_once_and_stores_nothing(tb):
    tb.slack.seed_workspace()
    tb.switches["slack"].down = True
    body = {"platform": "slack", "customerId": "cust-1", "credentials": {
        "botToken": next(iter(tb.slack.valid_tokens)), "signingSecret": tb.slack.signing_secret}}
    response = await tb.api.post("/integrations", json=body)
    assert_error(response, 503, "platform_unreachable")
    assert len(tb.switches["slack"].paths) <= 2, "one attempt and one quick retry, not minutes of them"
    assert (await tb.api.get("/integrations")).json()["integrations"] == []
    tb.switches["slack"].down = False
    assert (await tb.api.post("/integrations", json=body)).json()["integration"]["status"] == "active"
