"""Instagram Messaging through the HTTP API: the integration and its import, the handshake,
the documented samples (message, unsend, echo), echoes of app messages merged, seen receipts,
and the 24-hour window."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from apisupport import (
    SimClock,
    assert_error,
    chat_messages,
    drain_inbox,
    find_message,
    inbox_counts,
    load_fixture,
)

from syncd.providers.instagram.sim import InstagramSimulator
from syncd.providers.meta.sim import MetaDelivery
from syncd.testbed import Testbed

FIXTURES = load_fixture("instagram")
IG_ID = "1234567890"  # the samples' account id
ANN = "5678"  # the samples' IGSID
TOKEN = "EAAG-testbed-ig-token"
SECRET = "testbed-app-secret-ig"
VERIFY = "testbed-verify-token-ig"


def sample(contains: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if contains in s["description"])["payload"]


async def post_sample(tb: Testbed, integration: dict[str, Any], contains: str, secret: str = SECRET):
    body = json.dumps(sample(contains)).encode()
    headers = {"content-type": "application/json",
               "x-hub-signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    response = await tb.api.post(tb.webhook_url(integration), content=body, headers=headers)
    await tb.settle()
    return response


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
async def tb(sim_clock):
    sim = InstagramSimulator(ig_user_id=IG_ID, username="sim.bakery", valid_tokens=[TOKEN], app_secret=SECRET,
                             verify_token=VERIFY, clock=sim_clock)
    start = int((sim_clock() - 3600) * 1000)
    sim.add_person(ANN, "ann.ames")
    sim.add_message(ANN, "Do you ship to Lisbon?", at_ms=start)
    sim.add_message(ANN, "We do!", from_account=True, at_ms=start + 1000)
    tb = await Testbed.start(sims={"instagram": sim})
    yield tb
    await tb.stop()


@pytest.fixture
def sim(tb) -> InstagramSimulator:
    return tb.sims["instagram"]


@pytest.fixture
async def ig(tb) -> dict[str, Any]:
    return await tb.create("instagram", {"accessToken": TOKEN, "igUserId": IG_ID, "appSecret": SECRET,
                                         "verifyToken": VERIFY})


async def deliver(tb: Testbed, integration: dict[str, Any], delivery: MetaDelivery, *, settle: bool = True):
    response = await tb.api.post(tb.webhook_url(integration), content=delivery.body, headers=delivery.headers)
    assert response.status_code == 200, response.text
    if settle:
        await tb.settle()


def app_event(event_id: str, text: str) -> dict[str, Any]:
    return {"id": event_id, "type": "message.created", "customerId": "cust-1", "platform": "instagram",
            "externalChatId": ANN, "message": {"id": f"app-{event_id}", "text": text}}


async def test_the_integration_imports_the_conversation_by_username(tb, ig):
    users = (await tb.api.get("/user-platforms", params={"customerId": "cust-1"})).json()["userPlatforms"]
    assert [(u["externalUserId"], u["displayName"], u["isSelf"]) for u in users] == [(IG_ID, "sim.bakery", True)]
    chat = (await tb.chats(ig))[ANN]
    assert (chat["name"], chat["kind"]) == ("ann.ames", "dm")
    assert [(m["text"], m["direction"]) for m in await chat_messages(tb, ig, ANN)] == [
        ("We do!", "outbound"), ("Do you ship to Lisbon?", "inbound")]


async def test_the_handshake_and_signatures(tb, ig, sim, anon_client):
    anon = anon_client(tb)
    ok = await anon.get(tb.webhook_url(ig), params=sim.handshake_query(challenge="987"))
    assert (ok.status_code, ok.text) == (200, "987")
    assert (await anon.get(tb.webhook_url(ig), params=sim.handshake_query(verify_token="x"))).status_code == 403
    assert_error(await post_sample(tb, ig, "Instagram DM", secret="another-secret"), 401)
    assert await inbox_counts(tb, ig) == {"pending": 0, "done": 0, "failed": 0}
    assert await find_message(tb, ig, ANN, "external_id") is None


async def test_the_documented_message_then_its_unsend_leave_a_tombstone(tb, ig):
    assert (await post_sample(tb, ig, "Instagram DM")).status_code == 200
    message = await find_message(tb, ig, ANN, "external_id")
    assert (message["text"], message["direction"], message["deletedAt"]) == ("Hello World", "inbound", None)
    assert (await post_sample(tb, ig, "Instagram unsend")).status_code == 200
    gone = await find_message(tb, ig, ANN, "external_id")
    assert gone["deletedAt"] == "2019-09-23T18:14:45.349000Z" and gone["text"] == "Hello World"
    assert [c["type"] for c in tb.app.received][-1] == "message.deleted"


async def test_the_documented_echo_is_the_accounts_own_message(tb, ig):
    await post_sample(tb, ig, "Instagram echo")
    echo = await find_message(tb, ig, ANN, "qT7ywaK")
    assert (echo["direction"], echo["origin"], echo["sender"]["externalUserId"]) == ("outbound", "platform", IG_ID)


async def test_an_app_message_and_its_echo_before_the_reply_are_one_message(tb, ig, sim):
    await deliver(tb, ig, sim.user_message(ANN, "and to Porto?"))

    async def echo_first(delivery: MetaDelivery) -> None:
        await deliver(tb, ig, delivery, settle=False)
        await drain_inbox(tb)

    sim.on_echo = echo_first
    await tb.post_event(app_event("evt-1", "Porto too"))
    await tb.settle()
    found = [m for m in await chat_messages(tb, ig, ANN) if m["text"] == "Porto too"]
    assert len(found) == 1 and (found[0]["origin"], found[0]["appMessageId"]) == ("app", "app-evt-1")
    assert sim.requests[-1][2] == {"recipient": {"id": ANN}, "message": {"text": "Porto too"}}


async def test_an_app_message_and_its_later_echo_are_one_message_that_the_seen_receipt_marks_read(tb, ig, sim):
    await deliver(tb, ig, sim.user_message(ANN, "and to Porto?"))
    await tb.post_event(app_event("evt-1", "Porto too"))
    await tb.settle()
    [echo] = sim.echoes
    await deliver(tb, ig, echo)
    await deliver(tb, ig, sim.read(ANN))
    found = [m for m in await chat_messages(tb, ig, ANN) if m["text"] == "Porto too"]
    assert len(found) == 1
    assert (found[0]["origin"], found[0]["deliveryState"]) == ("app", "read")


async def test_outside_the_window_the_app_message_fails(tb, ig, sim, sim_clock):
    sim_clock.advance(25 * 3600)
    await tb.post_event(app_event("evt-late", "late"))
    await tb.settle()
    [dead] = await tb.daemon.store.list_outbox(status="dead")
    assert "2534022" in dead.error
    [message] = [m for m in await chat_messages(tb, ig, ANN) if m.get("appMessageId") == "app-evt-late"]
    assert message["deliveryState"] == "failed"


async def test_an_instagram_account_connects_through_its_facebook_page(sim_clock, anon_client):
    sim = InstagramSimulator(ig_user_id=IG_ID, valid_tokens=[], app_secret=SECRET, verify_token=VERIFY,
                             clock=sim_clock)
    sim.add_person(ANN, "ann.ames")
    sim.add_message(ANN, "Hi!", at_ms=int((sim_clock() - 60) * 1000))
    clients = {"instagram": {"clientId": sim.app_id, "clientSecret": SECRET, "verifyToken": VERIFY}}
    tb = await Testbed.start(sims={"instagram": sim}, oauth_clients=clients)
    try:
        start = await tb.api.get("/connect/instagram", params={"customerId": "cust-1"})
        assert start.status_code == 302, start.text
        assert "scope=instagram_basic%2Cinstagram_manage_messages" in start.headers["location"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(sim)) as browser:
            consent = await browser.get(start.headers["location"])
        answer = await anon_client(tb).get(consent.headers["location"].split("#")[0])
        assert answer.status_code == 201, answer.text
        integration = answer.json()["integration"]
        await tb.wait_imported(integration["id"])
        assert [m["text"] for m in await chat_messages(tb, integration, ANN)] == ["Hi!"]
        stored = await tb.daemon.store.get_credentials(integration["id"])
        assert (stored["igUserId"], stored["accessToken"]) == (IG_ID, sim.page_token())
    finally:
        await tb.stop()
