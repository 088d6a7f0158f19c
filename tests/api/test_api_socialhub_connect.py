"""SocialHub's reusable-manifest connect flow: SocialHub opens ``GET /connect/socialhub`` with a
30-minute channel-creation token, syncd trades it with ``POST /channels`` for the channel's
own token and creates a shared-webhook integration. The token is the only credential; a
refused, expired or repeated token is the customer's error (4xx) and stores nothing."""

from __future__ import annotations

import pytest
from apisupport import assert_error

from syncd.providers.socialhub.sim import SocialHubSimulator
from syncd.testbed import Testbed


@pytest.fixture
async def sim() -> SocialHubSimulator:
    return SocialHubSimulator()


@pytest.fixture
async def tb(sim: SocialHubSimulator):
    tb = await Testbed.start(sims={"socialhub": sim})
    sim.webhook_client = tb.api
    yield tb
    await tb.stop()


async def integrations(tb: Testbed) -> list[dict]:
    return (await tb.api.get("/integrations", params={"platform": "socialhub"})).json()["integrations"]


async def test_a_creation_token_makes_a_shared_webhook_channel_without_an_admin_token(tb, sim, anon):
    token = sim.creation_token()
    answer = await anon.get("/connect/socialhub", params={"customerId": "cust-1", "token": token})
    assert answer.status_code == 201, answer.text
    integration = answer.json()["integration"]
    assert (integration["platform"], integration["customerId"], integration["status"]) == ("socialhub", "cust-1", "active")
    assert integration["settings"]["sharedWebhook"] is True
    [channel] = sim.channels_created
    assert channel["uniqueName"].startswith("syncd-")
    stored = await tb.daemon.store.get_credentials(integration["id"])
    assert stored["accessToken"] == sim.token  # the channel's own token, not the creation token
    await tb.settle()
    assert sim.webhook is None and sim.webhook_tests == []  # a reusable manifest is never patched
    assert token not in answer.text and sim.token not in answer.text


async def test_without_a_customer_id_the_customer_is_the_socialhub_account(tb, sim, anon):
    answer = await anon.get("/connect/socialhub", params={"token": sim.creation_token()})
    assert answer.status_code == 201, answer.text
    assert answer.json()["integration"]["customerId"] == sim.account_id


async def test_the_connected_channel_sends_tickets_and_takes_replies_at_the_shared_url(tb, sim, anon, monkeypatch):
    secret = "reusable-manifest-secret-" + "q" * 20
    monkeypatch.setenv("SYNCD_SOCIALHUB_WEBHOOK_SECRET", secret)
    integration = (await anon.get("/connect/socialhub", params={"token": sim.creation_token()})).json()["integration"]
    await tb.settle()
    event = {"id": "evt-0", "type": "message.created", "customerId": sim.account_id, "platform": "socialhub",
             "externalChatId": "conversation-1", "message": {"id": "app-msg-0", "text": "a question"}}
    assert (await tb.post_event(event)).status_code == 202
    await tb.settle()
    assert [t.network_item_id for t in sim.tickets] == ["app-msg-0"]
    delivery = sim.reply("app-msg-0", "an answer", secret=secret)
    answer = await anon.post("/webhooks/socialhub", content=delivery.body, headers=delivery.headers)
    assert answer.status_code == 200 and answer.headers["x-socialhub-challenge"] == delivery.challenge
    await tb.settle()
    chats = (await tb.api.get("/chats", params={"integrationId": integration["id"]})).json()["chats"]
    messages = (await tb.api.get(f"/chats/{chats[0]['id']}/messages")).json()["messages"]
    assert sorted(m["text"] for m in messages) == ["a question", "an answer"]


@pytest.mark.parametrize("case", ["missing", "empty", "invalid", "expired"])
async def test_a_missing_invalid_or_expired_token_is_refused_and_stores_nothing(tb, sim, anon, case):
    params = {"customerId": "cust-1"}
    if case != "missing":
        params["token"] = {"empty": "", "invalid": "eyJ-not-from-socialhub",
                           "expired": sim.creation_token(ttl_s=-1)}[case]
    error = assert_error(await anon.get("/connect/socialhub", params=params),
                         400 if case in ("missing", "empty") else 401,
                         "bad_request" if case in ("missing", "empty") else "token_rejected")
    assert "token" in error["message"]
    assert params.get("token", "") in ("", "eyJ-not-from-socialhub") or params["token"] not in error["message"]
    assert await integrations(tb) == [] and sim.channels_created == []


async def test_a_repeated_token_is_refused_with_409(tb, sim, anon):
    token = sim.creation_token()
    assert (await anon.get("/connect/socialhub", params={"token": token})).status_code == 201
    assert_error(await anon.get("/connect/socialhub", params={"token": token}), 409, "token_used")
    assert len(await integrations(tb)) == 1 and len(sim.channels_created) == 1


async def test_socialhub_down_is_a_502_that_stores_nothing_and_the_token_can_be_tried_again(tb, sim, anon):
    token = sim.creation_token()
    sim.faults.fail_next("channels", "server_error", times=5)
    error = assert_error(await anon.get("/connect/socialhub", params={"token": token}), 502, "platform_unreachable")
    assert token not in error["message"]
    assert await integrations(tb) == []
    sim.faults.reset()
    assert (await anon.get("/connect/socialhub", params={"token": token})).status_code == 201


@pytest.mark.parametrize(("refusal", "status"), [((403, "ChannelLimitReached"), 403),
                                                  ((409, "DuplicateChannel"), 400)])
async def test_a_channel_socialhub_will_not_create_is_refused_as_the_customers_error(tb, sim, anon, refusal, status):
    sim.channel_refusal = refusal
    answer = await anon.get("/connect/socialhub", params={"token": sim.creation_token()})
    error = assert_error(answer, status, "connect_refused")
    assert refusal[1] in error["message"]
    assert await integrations(tb) == []


async def test_an_oauth_platform_still_needs_its_customer_id(tb):
    error = assert_error(await tb.api.get("/connect/slack"), 422, "invalid")
    assert error["details"] == [{"field": "customerId", "problem": "Field required"}]
