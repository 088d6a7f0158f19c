"""X DMs through the HTTP API: the CRC handshake, signed Account Activity deliveries (the
fixture's vectors, tampered bodies, a hex digest refused), the 30-day import of conversations
derived from DM events, sends to the other participant signed OAuth 1.0a, deletes, and the
Smooch body and the `x` alias."""

from __future__ import annotations

import json

import pytest
from apisupport import assert_error, chat_messages, load_fixture

from syncd.providers.twitter.sim import XDelivery, XSimulator, parse_oauth_header
from syncd.testbed import Testbed

FIXTURE = load_fixture("twitter")
CRC = next(v for v in FIXTURE["signature_vectors"] if v["kind"] == "crc_challenge")
HEX = next(v for v in FIXTURE["signature_vectors"] if v["kind"] == "body_signature")
SMOOCH = next(i["body"] for i in load_fixture("smooch_integrations")["createIntegration"] if i["body"]["type"] == "twitter")


@pytest.fixture
def sim() -> XSimulator:
    sim = XSimulator(consumer_secret=CRC["secret"])
    sim.seed(conversations=2, per_conversation=3)
    return sim


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"twitter": sim})
    yield tb
    await tb.stop()


@pytest.fixture
async def x(tb, sim):
    return await tb.create("twitter", sim.trial_credentials())


async def test_the_crc_is_answered_with_the_documented_vector(tb, x, anon):
    answer = await anon.get(tb.webhook_url(x), params=CRC["params"])
    assert answer.status_code == 200 and answer.json() == CRC["expected"]


async def test_a_signed_delivery_is_stored_and_a_redelivery_is_not(tb, x, anon, sim):
    delivery = sim.incoming("9876543210", "hello there", name="Person 0")
    for _ in range(2):
        assert (await anon.post(tb.webhook_url(x), content=delivery.body, headers=delivery.headers)).status_code == 200
    await tb.settle()
    stored = [m for m in await chat_messages(tb, x, sim.conversation_with("9876543210")) if m["text"] == "hello there"]
    assert len(stored) == 1
    assert stored[0]["sender"]["name"] == "Person 0" and stored[0]["direction"] == "inbound"


async def test_a_tampered_body_and_a_hex_digest_are_refused(tb, x, anon, sim):
    delivery = sim.incoming("9876543210", "hello")
    tampered = delivery.body.replace(b"hello", b"HELLO")
    assert_error(await anon.post(tb.webhook_url(x), content=tampered, headers=delivery.headers), 401, "bad_signature")
    body = HEX["body"].encode()
    assert_error(await anon.post(tb.webhook_url(x), content=body, headers=HEX["headers"]), 401, "bad_signature")


async def test_the_import_covers_the_last_30_days_of_every_conversation(tb, x, sim):
    chats = await tb.chats(x)
    assert set(chats) == {sim.conversation_with("9876543210"), sim.conversation_with("9876543211")}
    stored = await chat_messages(tb, x, sim.conversation_with("9876543210"))
    assert "too old to list" not in {m["text"] for m in stored}
    assert len(stored) == 3
    own = [m for m in stored if m["sender"]["externalUserId"] == sim.user_id]
    assert own and all(m["direction"] == "outbound" for m in own)


async def test_a_send_goes_to_the_other_participant_signed_oauth1(tb, x, sim):
    chat = sim.conversation_with("9876543211")
    response = await tb.post_event({"id": "evt-1", "type": "message.created", "customerId": "cust-1",
                                    "platform": "twitter", "externalChatId": chat,
                                    "message": {"id": "app-1", "text": "on its way"}})
    assert response.status_code == 202
    await tb.settle()
    sent = [r for r in sim.requests if r["method"] == "POST"]
    assert sent[-1]["path"] == "/2/dm_conversations/with/9876543211/messages"
    assert sent[-1]["json"] == {"text": "on its way"}
    assert sent[-1]["oauth"]["oauth_consumer_key"] == sim.consumer_key
    assert sent[-1]["oauth"]["oauth_token"] == sim.access_token
    event = next(e for e in sim.truth() if e.text == "on its way")
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, x, chat)}
    assert stored[event.id]["appMessageId"] == "app-1"
    # Account Activity reports the sent message too: it merges.
    echo = sim.echo(event.id)
    await tb.deliver(x, echo)
    await tb.settle()
    assert [m["externalMessageId"] for m in await chat_messages(tb, x, chat)].count(event.id) == 1

    await tb.post_event({"id": "evt-2", "type": "message.deleted", "customerId": "cust-1", "platform": "twitter",
                         "message": {"id": "app-1"}})
    await tb.settle()
    assert sim.events[event.id].deleted
    assert sim.requests[-1]["method"] == "DELETE" and sim.requests[-1]["path"] == f"/2/dm_events/{event.id}"


async def test_the_authorization_header_is_oauth1_hmac_sha1(sim, tb, x):
    header = sim.requests[0]["oauth"]
    assert header["oauth_signature_method"] == "HMAC-SHA1" and header["oauth_version"] == "1.0"
    assert {"oauth_nonce", "oauth_timestamp", "oauth_signature"} <= set(header)


async def test_wrong_keys_are_refused_when_the_integration_is_created(tb, sim):
    credentials = {**sim.trial_credentials(), "accessTokenSecret": "wrong"}
    response = await tb.api.post("/integrations", json={"platform": "twitter", "customerId": "c",
                                                        "credentials": credentials})
    assert_error(response, 422, "credentials_rejected")


async def test_smooch_s_body_and_the_x_alias(tb, sim):
    body = {**SMOOCH, **{k: v for k, v in sim.trial_credentials().items()}}
    created = await tb.api.post("/v1/apps/app-1/integrations", json=body)
    assert created.status_code == 201, created.text
    integration = created.json()["integration"]
    assert integration["type"] == "twitter"
    assert integration["consumerKey"] == sim.consumer_key and integration["accessTokenKey"] == sim.access_token
    assert sim.consumer_secret not in json.dumps(integration) and sim.token_secret not in json.dumps(integration)
    aliased = await tb.api.post("/v1/apps/app-2/integrations", json={**body, "type": "x"})
    assert aliased.status_code == 201 and aliased.json()["integration"]["type"] == "twitter"
    listed = (await tb.api.get("/v1/apps/app-2/integrations", params={"types": "x"})).json()["integrations"]
    assert len(listed) == 1


async def test_smooch_s_example_body_is_accepted_as_it_is(tb, sim):
    """The seed's placeholder keys: the format checks take them; the platform would judge them."""
    sim.consumer_key, sim.access_token = SMOOCH["consumerKey"], SMOOCH["accessTokenKey"]
    sim.consumer_secret, sim.token_secret = SMOOCH["consumerSecret"], SMOOCH["accessTokenSecret"]
    created = await tb.api.post("/v1/apps/app-1/integrations", json=SMOOCH)
    assert created.status_code == 201, created.text


def test_a_crc_delivery_is_a_get_with_the_token():
    delivery = XSimulator().crc("abc")
    assert isinstance(delivery, XDelivery) and delivery.query == "crc_token=abc"
    assert parse_oauth_header('OAuth oauth_token="a%2Db"') == {"oauth_token": "a-b"}
