"""MessageBird through the HTTP API: history imported from both sides of each conversation,
inbound SMS (form posts and GET calls, a real gateway sample) signed with the JWT or the
legacy signature against the public URL, duplicates, tampered and unsigned calls refused, sends
with their exact wire format, status reports as deliveryState, and credentials refused clearly."""

from __future__ import annotations

from typing import Any

import pytest
from apisupport import assert_error, chat_messages, find_message, load_fixture

from syncd.providers.messagebird.sim import MessageBirdDelivery, MessageBirdSimulator
from syncd.testbed import Testbed

FIXTURE = load_fixture("messagebird")
ANN, BO = "31612345678", "31687654321"


@pytest.fixture
def sim() -> MessageBirdSimulator:
    return MessageBirdSimulator()


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"messagebird": sim})
    yield tb
    await tb.stop()


@pytest.fixture
async def bird(tb, sim) -> dict[str, Any]:
    integration = await tb.create("messagebird", sim.trial_credentials())
    sim.webhook_url = integration["webhookUrl"]
    return integration


async def call(tb: Testbed, integration: dict[str, Any], delivery: MessageBirdDelivery, host: str = "") -> Any:
    url = host + tb.webhook_url(integration) + (f"?{delivery.query}" if delivery.query else "")
    return await tb.api.request(delivery.method, url, content=delivery.body or None, headers=delivery.headers)


def event(event_id: str, chat: str, text: str) -> dict[str, Any]:
    return {"id": event_id, "type": "message.created", "customerId": "cust-1", "platform": "messagebird",
            "externalChatId": chat, "message": {"id": f"app-{event_id}", "text": text}}


async def test_history_is_both_sides_of_each_conversation_in_order(sim, tb):
    for i in range(5):
        sim.add("mo" if i % 2 else "mt", ANN, f"ann {i}", minutes_ago=50 - i, status="delivered" if i == 0 else None)
    sim.add("mo", BO, "bo says hi", minutes_ago=5)
    integration = await tb.create("messagebird", sim.trial_credentials())
    chats = await tb.chats(integration)
    assert set(chats) == {ANN, BO}
    stored = await chat_messages(tb, integration, ANN)
    assert [m["text"] for m in stored] == [f"ann {i}" for i in reversed(range(5))]
    assert [m["direction"] for m in stored] == ["outbound", "inbound", "outbound", "inbound", "outbound"]
    assert stored[-1]["deliveryState"] == "delivered" and stored[0]["deliveryState"] == "sent"


async def test_an_inbound_sms_is_stored_once_however_often_delivered(sim, tb, bird):
    delivery = sim.inbound(ANN, "héllo")
    for _ in range(3):
        assert (await call(tb, bird, delivery)).status_code == 200
    await tb.settle()
    stored = await chat_messages(tb, bird, ANN)
    assert [(m["text"], m["direction"], m["externalMessageId"]) for m in stored] == [("héllo", "inbound", sim.truth()[-1].id)]


async def test_the_jwt_is_checked_against_the_public_url_not_the_one_called(sim, tb, bird):
    """Behind a proxy, syncd is called on an inner address: the JWT still names the public URL."""
    assert (await call(tb, bird, sim.inbound(ANN, "via proxy", method="GET"), host="http://10.0.0.7:8080")).status_code == 200
    other = sim.inbound(ANN, "signed for another URL", url="https://elsewhere.example/hook")
    assert_error(await call(tb, bird, other), 401, "bad_signature")


async def test_the_legacy_signature_is_accepted_and_a_tampered_one_refused(sim, tb, bird):
    legacy = sim.inbound(BO, "legacy", method="GET", jwt_header=False, legacy=True)
    assert (await call(tb, bird, legacy)).status_code == 200
    tampered = sim.inbound(BO, "legacy 2", method="GET", jwt_header=False, legacy=True)
    tampered.query = tampered.query.replace("legacy+2", "legacy+3")
    assert_error(await call(tb, bird, tampered), 401, "bad_signature")
    stale = sim.inbound(BO, "old", jwt_header=False, legacy=True, now=1_000_000_000)
    assert "replay window" in assert_error(await call(tb, bird, stale), 401, "bad_signature")["message"]
    await tb.settle()
    assert [m["text"] for m in await chat_messages(tb, bird, BO)] == ["legacy"]


@pytest.mark.parametrize("why", ["tampered body", "another key", "unsigned", "expired"])
async def test_a_delivery_that_does_not_verify_is_refused(sim, tb, bird, why):
    delivery = {
        "tampered body": lambda: sim.inbound(ANN, "x"),
        "another key": lambda: sim.inbound(ANN, "x", key="0" * 64),
        "unsigned": lambda: sim.inbound(ANN, "x", jwt_header=False),
        "expired": lambda: sim.inbound(ANN, "x", now=1_000_000_000),
    }[why]()
    if why == "tampered body":
        delivery.body = delivery.body.replace(b"body=x", b"body=y")
    assert_error(await call(tb, bird, delivery), 401, "bad_signature")


async def test_without_a_signing_key_no_delivery_is_accepted(sim, tb):
    credentials = {k: v for k, v in sim.trial_credentials().items() if k != "signingKey"}
    integration = await tb.create("messagebird", credentials)
    sim.webhook_url = integration["webhookUrl"]
    error = assert_error(await call(tb, integration, sim.inbound(ANN, "x")), 401, "bad_signature")
    assert "signing key" in error["message"]


async def test_the_documented_gateway_sample_is_stored(sim, tb, bird):
    body = next(s["payload"] for s in FIXTURE["samples"] if s["kind"] == "webhook").encode()
    signed = sim.sign("POST", {}, body)
    assert (await call(tb, bird, signed)).status_code == 200
    await tb.settle()
    stored = await find_message(tb, bird, "18885551515", "3b53c137369242138120d6b0b2122607")
    assert stored is not None and stored["text"] == "Test 3" and stored["direction"] == "inbound"


async def test_a_send_has_messagebirds_wire_format_and_status_reports_become_delivery_state(sim, tb, bird):
    assert (await tb.post_event(event("e1", ANN, "hello ann"))).status_code == 202
    assert (await tb.post_event(event("e1", ANN, "hello ann"))).status_code == 202  # a retried event
    await tb.settle()
    assert sim.sent_bodies == [{"originator": sim.originator, "recipients": [ANN], "body": "hello ann",
                                "reference": "app-e1", "reportUrl": bird["webhookUrl"]}]
    sent = sim.truth()[-1]
    stored = await find_message(tb, bird, ANN, sent.id)
    assert stored is not None and stored["direction"] == "outbound" and stored["appMessageId"] == "app-e1"
    for status, state in (("sent", "sent"), ("delivered", "delivered")):
        report = sim.status_report(sent.id, status)
        assert report.method == "GET" and "reference=app-e1" in report.query
        assert (await call(tb, bird, report)).status_code == 200
        assert (await call(tb, bird, report)).status_code == 200  # redelivered
        await tb.settle()
        assert (await find_message(tb, bird, ANN, sent.id))["deliveryState"] == state


async def test_a_failed_status_report_is_a_failed_delivery_state(sim, tb, bird):
    await tb.post_event(event("e2", BO, "to bo"))
    await tb.settle()
    sent = sim.truth()[-1]
    assert (await call(tb, bird, sim.status_report(sent.id, "delivery_failed"))).status_code == 200
    await tb.settle()
    stored = await find_message(tb, bird, BO, sent.id)
    assert stored["deliveryState"] == "failed" and stored["text"] == "to bo"


@pytest.mark.parametrize(("credentials", "field"), [
    ({"originator": "3197010260001"}, "accessKey"),
    ({"accessKey": "live_x"}, "originator"),
    ({"accessKey": "live_x", "originator": "a name far too long"}, "originator"),
    ({"accessKey": "live_x", "originator": "syncd", "apiKey": "x"}, "apiKey"),
])
async def test_wrong_credentials_are_refused_naming_the_field(tb, credentials, field):
    response = await tb.api.post("/integrations", json={"platform": "messagebird", "customerId": "cust-1",
                                                        "credentials": credentials})
    error = assert_error(response, 422, "invalid_credentials")
    assert field in str(error.get("details")), error


async def test_a_wrong_access_key_is_refused_with_messagebirds_reason(sim, tb):
    credentials = {**sim.trial_credentials(), "accessKey": "live_wrong"}
    response = await tb.api.post("/integrations", json={"platform": "messagebird", "customerId": "cust-1",
                                                        "credentials": credentials})
    error = assert_error(response, 422, "credentials_rejected")
    assert "incorrect access_key" in error["message"] and "live_wrong" not in response.text
