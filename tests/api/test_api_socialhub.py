"""SocialHub through the HTTP API: the custom channel's manifest patched on start (its webhook
test answered with the challenge), app messages as tickets (409 = already there), agents'
replies verified with SocialHub's scheme and stored in their ticket's chat, and forged,
stale and unsigned deliveries refused."""

from __future__ import annotations

import time
from typing import Any

import pytest
from apisupport import assert_error, chat_messages

from syncd.providers.socialhub.sim import SocialHubSimulator, Ticket, challenge_of
from syncd.testbed import Testbed

CHAT = "conversation-48622799"


@pytest.fixture
async def sim() -> SocialHubSimulator:
    return SocialHubSimulator()


@pytest.fixture
async def tb(sim: SocialHubSimulator):
    tb = await Testbed.start(sims={"socialhub": sim})
    sim.webhook_client = tb.api
    yield tb
    await tb.stop()


async def connected(tb: Testbed, sim: SocialHubSimulator) -> dict[str, Any]:
    integration = await tb.create("socialhub", sim.trial_credentials())
    await tb.settle()
    return integration


async def send(tb: Testbed, event_id: str, message_id: str, text: str, chat: str = CHAT) -> None:
    event = {"id": event_id, "type": "message.created", "customerId": "cust-1", "platform": "socialhub",
             "externalChatId": chat, "message": {"id": message_id, "text": text}}
    assert (await tb.post_event(event)).status_code == 202
    await tb.settle()


async def test_start_patches_the_manifest_with_the_webhook_a_long_secret_and_a_reply_action(tb, sim):
    integration = await connected(tb, sim)
    assert sim.webhook is not None and sim.webhook["url"] == integration["webhookUrl"]
    assert len(sim.webhook["secret"]) >= 32
    assert [a["type"] for a in sim.ticket_actions] == ["reply"]
    # SocialHub tested the webhook on the update, and syncd answered with the challenge.
    assert sim.webhook_tests == [200]
    stored = await tb.daemon.store.get_credentials(integration["id"])
    assert stored["webhookSecret"] == sim.webhook["secret"]
    assert sim.webhook["secret"] not in (await tb.api.get(f"/integrations/{integration['id']}")).text


async def test_the_answer_carries_the_challenge_even_for_the_empty_test_request(tb, sim):
    integration = await connected(tb, sim)
    delivery = sim.signed({"manifestId": sim.manifest_id, "channelId": sim.channel_id, "events": {}})
    answer = await tb.deliver(integration, delivery)
    assert answer.status_code == 200
    assert answer.headers["x-socialhub-challenge"] == challenge_of(delivery.headers["x-socialhub-timestamp"],
                                                                     sim.webhook["secret"])
    assert not any((await tb.daemon.store.inbox_counts()).values())


async def test_an_app_message_becomes_a_ticket_of_its_conversation_and_a_repeat_is_not_a_duplicate(tb, sim):
    integration = await connected(tb, sim)
    sim.tickets.append(Ticket("5eb493dcac52392e08513417", "app-msg-0", CHAT, "first", None))
    await send(tb, "evt-0", "app-msg-0", "first")  # SocialHub answers 409: already there
    await send(tb, "evt-1", "app-msg-1", "second", chat="conversation-new-1")
    assert [(t.network_item_id, t.root_id) for t in sim.tickets] == [("app-msg-0", CHAT),
                                                                       ("app-msg-1", "conversation-new-1")]
    for event_id in ("evt-0", "evt-1"):
        item = await tb.daemon.store.find_outbox("cust-1", event_id)
        assert item.status == "sent", item.error
    assert [m["externalMessageId"] for m in await chat_messages(tb, integration, "conversation-new-1")] == ["app-msg-1"]


async def test_an_agents_reply_joins_its_tickets_chat_once_and_is_called_back(tb, sim):
    integration = await connected(tb, sim)
    await send(tb, "evt-0", "app-msg-0", "a question")
    delivery = sim.reply("app-msg-0", "an answer")
    for _ in range(2):
        answer = await tb.deliver(integration, delivery)
        assert answer.status_code == 200 and answer.headers["x-socialhub-challenge"] == delivery.challenge
    await tb.settle()
    messages = await chat_messages(tb, integration, CHAT)
    reply = next(m for m in messages if m["text"] == "an answer")
    assert reply["direction"] == "inbound" and reply["externalThreadId"] == "app-msg-0"
    assert len(messages) == 2
    assert "an answer" in [c.get("message", {}).get("text") for c in tb.app.received]


@pytest.mark.parametrize("forge", ["wrong secret", "stale", "no signature", "no timestamp"])
async def test_forged_stale_and_unsigned_deliveries_are_refused(tb, sim, forge):
    integration = await connected(tb, sim)
    await send(tb, "evt-0", "app-msg-0", "a question")
    if forge == "wrong secret":
        delivery = sim.reply("app-msg-0", "x", secret="y" * 40)
    elif forge == "stale":
        delivery = sim.reply("app-msg-0", "x", timestamp=int((time.time() - 3600) * 1000))
    else:
        delivery = sim.reply("app-msg-0", "x")
        delivery.headers.pop("x-socialhub-signature" if forge == "no signature" else "x-socialhub-timestamp")
    answer = await tb.deliver(integration, delivery)
    assert_error(answer, 401, "bad_signature")
    assert "x-socialhub-challenge" not in answer.headers
    assert not any((await tb.daemon.store.inbox_counts()).values())


async def test_a_refused_access_token_is_refused_at_creation(tb, sim):
    answer = await tb.api.post("/integrations", json={"platform": "socialhub", "customerId": "cust-1",
                                                      "credentials": {"accessToken": "eyJ-wrong"}})
    assert_error(answer, 422, "credentials_rejected")


async def test_a_stored_reply_is_confirmed_as_done_with_its_followup(tb, sim):
    integration = await connected(tb, sim)
    await send(tb, "evt-0", "app-msg-0", "a question")
    delivery = sim.reply("app-msg-0", "an answer")
    await tb.deliver(integration, delivery)
    await tb.deliver(integration, delivery)  # redelivered: one reply, confirmed (a repeat is 409 = fine)
    await tb.settle()
    [(_, state)] = sim.tickets[0].replies.values()
    assert state == "done"


async def test_a_reply_that_cannot_be_stored_is_handed_back_to_the_agent(make_tb, monkeypatch):
    sim = SocialHubSimulator()
    tb = await make_tb(sims={"socialhub": sim}, inbox_max_attempts=2)
    sim.webhook_client = tb.api
    integration = await connected(tb, sim)
    await send(tb, "evt-0", "app-msg-0", "a question")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the store is down")

    monkeypatch.setattr(tb.daemon.store, "upsert_messages", broken)
    assert (await tb.deliver(integration, sim.reply("app-msg-0", "an answer"))).status_code == 200
    await tb.settle()
    [(_, state)] = sim.tickets[0].replies.values()
    assert state == "reset"
    status = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()
    assert status["inbox"]["failed"] == 1


SHARED = "reusable-manifest-secret-" + "z" * 20


async def test_a_channel_of_the_reusable_manifest_gets_no_patch_and_its_events_come_to_the_shared_url(
        tb, sim, monkeypatch):
    monkeypatch.setenv("SYNCD_SOCIALHUB_WEBHOOK_SECRET", SHARED)
    integration = await tb.create("socialhub", sim.trial_credentials(), settings={"sharedWebhook": True})
    await tb.settle()
    assert sim.webhook is None and sim.webhook_tests == []  # syncd sent no PATCH /manifest
    await send(tb, "evt-0", "app-msg-0", "a question")
    delivery = sim.reply("app-msg-0", "an answer", secret=SHARED)
    answer = await tb.api.post("/webhooks/socialhub", content=delivery.body, headers=delivery.headers)
    assert answer.status_code == 200 and answer.headers["x-socialhub-challenge"] == delivery.challenge
    await tb.settle()
    assert "an answer" in [m["text"] for m in await chat_messages(tb, integration, CHAT)]


@pytest.mark.parametrize("case", ["the channel's own secret", "no platform secret", "an unknown channel"])
async def test_the_shared_url_refuses_other_secrets_and_unknown_channels(tb, sim, monkeypatch, case):
    if case != "no platform secret":
        monkeypatch.setenv("SYNCD_SOCIALHUB_WEBHOOK_SECRET", SHARED)
    await connected(tb, sim)
    await send(tb, "evt-0", "app-msg-0", "a question")
    delivery = sim.reply("app-msg-0", "x", secret=SHARED if case != "the channel's own secret" else None)
    if case == "an unknown channel":
        delivery = sim.signed({**delivery.payload, "channelId": "5cc1afd1d62ec72e8388cb99"}, secret=SHARED)
    answer = await tb.api.post("/webhooks/socialhub", content=delivery.body, headers=delivery.headers)
    assert_error(answer, 404 if case == "an unknown channel" else 401)
    assert not any((await tb.daemon.store.inbox_counts()).values())


async def test_a_platform_without_a_shared_url_answers_404_there(tb):
    assert_error(await tb.api.post("/webhooks/slack", json={"channelId": "x"}), 404, "not_found")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"channelId"', b"17", b"\xff\xfe", b"{}", b'{"channelId": {"a": 1}}'])
async def test_the_shared_url_refuses_deliveries_that_name_no_channel_with_a_400(tb, body):
    answer = await tb.api.post("/webhooks/socialhub", content=body, headers={"content-type": "application/json"})
    assert_error(answer, 400, "bad_request")


async def test_a_short_app_message_id_is_padded_the_same_way_every_time_and_read_back(tb, sim):
    integration = await connected(tb, sim)
    await send(tb, "evt-0", "m1", "short id")
    await send(tb, "evt-0b", "~pad:m1", "an id that looks padded already")
    sim.tickets.append(Ticket("5eb493dcac52392e08513418", "~pad:m2", CHAT, "sent before", None))
    await send(tb, "evt-1", "m2", "sent again")  # the same networkItemId: 409, already there
    assert [t.network_item_id for t in sim.tickets] == ["~pad:m1", "~pad:~pad:m1", "~pad:m2"]
    for event_id in ("evt-0", "evt-0b", "evt-1"):
        item = await tb.daemon.store.find_outbox("cust-1", event_id)
        assert item.status == "sent", item.error
    await tb.deliver(integration, sim.reply("~pad:m1", "an answer"))
    await tb.settle()
    messages = await chat_messages(tb, integration, CHAT)
    assert sorted(m["externalMessageId"] for m in messages if m["origin"] == "app") == ["m1", "m2", "~pad:m1"]
    reply = next(m for m in messages if m["text"] == "an answer")
    assert reply["externalThreadId"] == "m1"
