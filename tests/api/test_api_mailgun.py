"""Mailgun through the HTTP API: route posts (URL-encoded and multipart) threaded into chats,
the body signature with freshness and token replay, event webhooks becoming delivery states,
replies sent with threading headers, and Message-IDs kept without angle brackets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apisupport import assert_error, chat_messages

from syncd.providers import email_threads
from syncd.providers.mailgun.sim import MailgunDelivery, MailgunSimulator
from syncd.testbed import Testbed

BOB = "bob@example.net"


@pytest.fixture
def sim() -> MailgunSimulator:
    return MailgunSimulator()


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"mailgun": sim})
    yield tb
    await tb.stop()


async def connect(tb: Testbed, sim: MailgunSimulator) -> dict[str, Any]:
    return await tb.create("mailgun", sim.trial_credentials())


def thread_of(message_id: str) -> str:
    return email_threads.thread_id(message_id)


@pytest.mark.parametrize("multipart", [False, True])
async def test_a_route_post_is_stored_once_in_its_thread(tb, sim, multipart):
    integration = await connect(tb, sim)
    delivery = sim.route_post(BOB, "Help", "my order is late", multipart=multipart)
    for _ in range(2):  # Mailgun's retry carries the same token: stored once
        assert (await tb.deliver(integration, delivery)).status_code == 200
    await tb.settle()
    first = next(m for m in sim.emails.values() if m.inbound)
    chats = await tb.chats(integration)
    assert chats[thread_of(first.message_id)]["name"] == "Help"
    stored = await chat_messages(tb, integration, thread_of(first.message_id))
    assert [(m["externalMessageId"], m["text"]) for m in stored] == [(first.message_id, "my order is late")]


async def test_a_reply_goes_out_with_threading_headers_and_its_events_set_the_state(tb, sim):
    integration = await connect(tb, sim)
    await tb.deliver(integration, sim.route_post(BOB, "Help", "my order is late"))
    await tb.settle()
    first = next(m for m in sim.emails.values() if m.inbound)
    chat = thread_of(first.message_id)
    answer = await tb.post_event({"id": "evt-mg-1", "type": "message.created", "customerId": "cust-1",
                                  "platform": "mailgun", "externalChatId": chat,
                                  "message": {"id": "app-mg-1", "text": "on its way"}})
    assert answer.status_code == 202
    await tb.settle()
    form = sim.sent_forms[0]
    assert ("to", BOB) in form and ("from", sim.address) in form and ("text", "on its way") in form
    assert ("h:In-Reply-To", f"<{first.message_id}>") in form and ("h:References", f"<{first.message_id}>") in form
    assert ("v:syncd-thread", chat) in form
    sent = next(m for m in sim.emails.values() if not m.inbound)
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, integration, chat)}
    assert sent.message_id in stored and not sent.message_id.startswith("<")
    for event in ("delivered", "opened"):
        assert (await tb.deliver(integration, sim.event(sent.message_id, event))).status_code == 200
    await tb.settle()
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, integration, chat)}
    assert stored[sent.message_id]["deliveryState"] == "read"
    reply = sim.route_post(BOB, "Re: Help", "thanks", reply_to=sent.message_id)
    assert (await tb.deliver(integration, reply)).status_code == 200
    await tb.settle()
    assert len(await chat_messages(tb, integration, chat)) == 3


async def test_a_wrong_stale_or_missing_signature_is_refused(tb, sim):
    integration = await connect(tb, sim)
    forged = sim.route_post(BOB, "x", "y")
    forged.body = forged.body.replace(b"signature=", b"signature=00")
    assert_error(await tb.deliver(integration, forged), 401, "bad_signature")
    stale = {"signature": sim.signature(timestamp=1_000_000_000), "event-data": {"event": "delivered"}}
    answer = await tb.deliver(integration, MailgunDelivery(json.dumps(stale).encode(),
                                                           {"content-type": "application/json"}))
    assert_error(answer, 401, "bad_signature")
    other_key = {"signature": sim.signature(key="not-the-key"), "event-data": {"event": "delivered"}}
    answer = await tb.deliver(integration, MailgunDelivery(json.dumps(other_key).encode(),
                                                           {"content-type": "application/json"}))
    assert_error(answer, 401, "bad_signature")
    unsigned = await tb.deliver(integration, MailgunDelivery(b"recipient=a", {"content-type": "application/x-www-form-urlencoded"}))
    assert_error(unsigned, 401, "bad_signature")


async def test_without_a_signing_key_the_api_key_signs(tb, sim):
    creds = {k: v for k, v in sim.trial_credentials().items() if k != "webhookSigningKey"}
    integration = await tb.create("mailgun", creds)
    sim.signing_key = sim.api_key
    assert (await tb.deliver(integration, sim.route_post(BOB, "Hi", "hello"))).status_code == 200
    assert "webhookSigningKey" not in json.dumps(integration) or sim.api_key not in json.dumps(integration)


async def test_edits_and_deletes_are_refused(tb, sim):
    await connect(tb, sim)
    edit = await tb.post_event({"id": "evt-mg-e", "type": "message.updated", "customerId": "cust-1",
                                "platform": "mailgun", "message": {"id": "x", "text": "changed"}})
    assert_error(edit, 422, "unsupported")
