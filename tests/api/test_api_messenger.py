"""Facebook Messenger through the HTTP API: the integration and its import (paging and the
20-message detail window), the hub.challenge handshake, signed deliveries (the documented
samples and the simulator's), echoes merged into the app's messages, receipts, edits,
unsends, and app messages inside and outside the 24-hour window."""

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

from syncd.providers.messenger.sim import MessengerSimulator
from syncd.providers.meta.sim import MetaDelivery
from syncd.testbed import Testbed

FIXTURES = load_fixture("messenger")
PAGE = "1234567890"  # the gateway samples' Page id
ANN, BO, LONG = "5678", "5679", "5680"  # Ann is the samples' PSID
TOKEN = "EAAG-testbed-page-token"
SECRET = "testbed-app-secret-fb"
VERIFY = "testbed-verify-token-fb"


def sample(contains: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if contains in s["description"])["payload"]


def signed(payload: dict[str, Any], secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"content-type": "application/json",
                  "x-hub-signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
async def tb(sim_clock):
    sim = MessengerSimulator(page_id=PAGE, page_name="Sim Bakery", valid_tokens=[TOKEN], app_secret=SECRET,
                             verify_token=VERIFY, clock=sim_clock)
    start = int((sim_clock() - 3600) * 1000)
    sim.add_person(ANN, "Ann Ames")
    sim.add_message(ANN, "Do you have rye bread?", at_ms=start)
    sim.add_message(ANN, "Yes, every morning.", from_account=True, at_ms=start + 1000)
    sim.add_person(BO, "Bo Berg")
    sim.add_message(BO, "Open on Sunday?", at_ms=start + 2000)
    sim.add_person(LONG, "Lee Long")
    for n in range(25):
        sim.add_message(LONG, f"long {n}", from_account=n % 2 == 1, at_ms=start - 100_000 + n * 1000)
    tb = await Testbed.start(sims={"messenger": sim})
    yield tb
    await tb.stop()


@pytest.fixture
def sim(tb) -> MessengerSimulator:
    return tb.sims["messenger"]


@pytest.fixture
async def fb(tb) -> dict[str, Any]:
    return await tb.create("messenger", {"pageAccessToken": TOKEN, "pageId": PAGE, "appSecret": SECRET,
                                         "verifyToken": VERIFY})


async def deliver(tb: Testbed, integration: dict[str, Any], delivery: MetaDelivery, *, settle: bool = True):
    response = await tb.api.post(tb.webhook_url(integration), content=delivery.body, headers=delivery.headers)
    assert response.status_code == 200, response.text
    if settle:
        await tb.settle()
    return response


def app_event(event_id: str, text: str, chat: str = ANN, **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "message.created", "customerId": "cust-1", "platform": "messenger",
            "externalChatId": chat, "message": {"id": f"app-{event_id}", "text": text}, **fields}


async def app_message(tb: Testbed, fb: dict[str, Any], app_id: str, chat: str = ANN) -> list[dict[str, Any]]:
    return [m for m in await chat_messages(tb, fb, chat) if m.get("appMessageId") == app_id]


# -- the integration and its import -----------------------------------------------------------

async def test_the_integration_imports_every_conversation_with_real_names(tb, fb, sim):
    assert fb["platform"] == "messenger" and fb["webhookUrl"].endswith(f"/webhooks/messenger/{fb['id']}")
    assert "credentials" not in fb and SECRET not in json.dumps(fb) and TOKEN not in json.dumps(fb)
    users = (await tb.api.get("/user-platforms", params={"customerId": "cust-1"})).json()["userPlatforms"]
    assert [(u["externalUserId"], u["displayName"], u["isSelf"]) for u in users] == [(PAGE, "Sim Bakery", True)]
    chats = await tb.chats(fb)
    assert {k: (c["name"], c["kind"]) for k, c in chats.items()} == {
        ANN: ("Ann Ames", "dm"), BO: ("Bo Berg", "dm"), LONG: ("Lee Long", "dm")}
    ann = await chat_messages(tb, fb, ANN)
    assert [(m["text"], m["direction"], m["origin"]) for m in ann] == [
        ("Yes, every morning.", "outbound", "platform"), ("Do you have rye bread?", "inbound", "platform")]
    assert {m["externalMessageId"] for m in ann} == {t["mid"] for t in sim.truth(ANN)}


async def test_the_import_keeps_the_20_newest_messages_and_does_not_fail(tb, fb, sim):
    stored = await chat_messages(tb, fb, LONG)
    assert [m["text"] for m in stored] == [f"long {n}" for n in range(24, 4, -1)]
    statuses = (await tb.api.get(f"/integrations/{fb['id']}/status")).json()["status"]
    assert {s["phase"] for s in statuses} == {"done"}
    assert all(s["lastError"] is None for s in statuses)


async def test_a_rejected_token_refuses_the_integration(tb):
    response = await tb.api.post("/integrations", json={"platform": "messenger", "customerId": "cust-1",
                                                        "credentials": {"pageAccessToken": "EAAG-wrong", "pageId": PAGE,
                                                                        "appSecret": SECRET, "verifyToken": VERIFY}})
    error = assert_error(response, 422, "credentials_rejected")
    assert "EAAG-wrong" not in error["message"]


async def test_without_a_verify_token_one_is_generated_and_the_handshake_needs_it(tb, sim, anon_client):
    response = await tb.api.post("/integrations", json={"platform": "messenger", "customerId": "cust-1",
                                                        "credentials": {"pageAccessToken": TOKEN, "pageId": PAGE,
                                                                        "appSecret": SECRET}})
    assert response.status_code == 201, response.text
    made = response.json()["integration"]
    generated = (await tb.daemon.store.get_credentials(made["id"]))["verifyToken"]
    # Shown once, in the creation answer's setup, where it is pasted at the platform; never again.
    assert len(generated) >= 20 and [f["value"] for f in made["setup"]["fields"]] == [generated]
    again = await tb.api.get(f"/integrations/{made['id']}")
    assert generated not in again.text and generated not in (await tb.api.get("/integrations")).text
    anon = anon_client(tb)
    guess = await anon.get(tb.webhook_url(made), params=sim.handshake_query(verify_token="guess"))
    assert guess.status_code == 403
    ok = await anon.get(tb.webhook_url(made), params=sim.handshake_query(verify_token=generated, challenge="77"))
    assert (ok.status_code, ok.text) == (200, "77")


async def test_credentials_without_the_app_secret_are_invalid(tb):
    response = await tb.api.post("/integrations", json={"platform": "messenger", "customerId": "cust-1",
                                                        "credentials": {"pageAccessToken": TOKEN, "pageId": PAGE,
                                                                        "verifyToken": VERIFY}})
    assert_error(response, 422, "invalid_credentials")


# -- handshake and signatures -------------------------------------------------------------------

async def test_the_handshake_answers_the_challenge_and_refuses_a_wrong_token(tb, fb, sim, anon_client):
    anon = anon_client(tb)
    ok = await anon.get(tb.webhook_url(fb), params=sim.handshake_query(challenge="1158201444"))
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await anon.get(tb.webhook_url(fb), params=sim.handshake_query(verify_token="guess"))
    assert wrong.status_code == 403 and VERIFY not in wrong.text


async def test_a_tampered_or_unsigned_delivery_answers_401_and_stores_nothing(tb, fb):
    body, headers = signed(sample("messages event (gateway test fixture)"))
    before = len(await chat_messages(tb, fb, ANN))
    assert_error(await tb.api.post(tb.webhook_url(fb), content=body.replace(b"Hello", b"Jello"), headers=headers), 401)
    assert_error(await tb.api.post(tb.webhook_url(fb), content=body, headers={"content-type": "application/json"}),
                 401)
    await tb.settle()
    assert await inbox_counts(tb, fb) == {"pending": 0, "done": 0, "failed": 0}
    assert len(await chat_messages(tb, fb, ANN)) == before


# -- the documented samples ------------------------------------------------------------------------

async def test_the_documented_message_is_stored(tb, fb):
    body, headers = signed(sample("messages event (gateway test fixture)"))
    assert (await tb.api.post(tb.webhook_url(fb), content=body, headers=headers)).status_code == 200
    await tb.settle()
    message = await find_message(tb, fb, ANN, "external_id")
    assert (message["text"], message["direction"], message["origin"]) == ("Hello World", "inbound", "platform")
    assert message["sender"]["externalUserId"] == ANN and message["sentAt"] == "2016-04-07T01:11:27.970000Z"
    assert "Hello World" in [c["message"]["text"] for c in tb.app.received]


async def test_the_documented_echo_is_stored_as_the_pages_own_message(tb, fb):
    body, headers = signed(sample("message_echoes"))
    await tb.api.post(tb.webhook_url(fb), content=body, headers=headers)
    await tb.settle()
    echo = await find_message(tb, fb, ANN, "qT7ywaK")
    assert (echo["direction"], echo["sender"]["externalUserId"], echo["text"]) == ("outbound", PAGE, None)


async def test_the_documented_attachment_is_stored_with_its_url(tb, fb):
    body, headers = signed(sample("image attachment"))
    await tb.api.post(tb.webhook_url(fb), content=body, headers=headers)
    await tb.settle()
    message = await find_message(tb, fb, ANN, "external_id")
    assert [a["url"] for a in message["attachments"]] == ["https://image-url/foo.png"]
    assert message["extra"]["attachmentTypes"] == ["image"]


async def test_the_same_delivery_three_times_stores_one_message(tb, fb, sim):
    delivery = sim.user_message(BO, "only once")
    for _ in range(3):
        await deliver(tb, fb, sim.retry(delivery), settle=False)
    await tb.settle()
    assert [m["text"] for m in await chat_messages(tb, fb, BO)].count("only once") == 1
    assert (await inbox_counts(tb, fb))["done"] == 1


async def test_a_first_message_from_a_new_person_creates_their_named_chat(tb, fb, sim):
    await deliver(tb, fb, sim.user_message("5690", "Hi there", name="Cy Cole"))
    chat = (await tb.chats(fb))["5690"]
    assert (chat["name"], chat["kind"]) == ("Cy Cole", "dm")


# -- echoes of app messages ------------------------------------------------------------------------

async def test_an_echo_delivered_after_the_send_reply_stores_one_message(tb, fb, sim):
    await deliver(tb, fb, sim.user_message(ANN, "still there?"))
    await tb.post_event(app_event("evt-1", "Yes, until 6"))
    await tb.settle()
    [echo] = sim.echoes
    await deliver(tb, fb, echo)
    found = [m for m in await chat_messages(tb, fb, ANN) if m["text"] == "Yes, until 6"]
    assert len(found) == 1
    assert (found[0]["origin"], found[0]["appMessageId"], found[0]["direction"]) == ("app", "app-evt-1", "outbound")
    assert found[0]["externalMessageId"] == sim.truth(ANN)[-1]["mid"]


async def test_an_echo_delivered_before_the_send_reply_stores_one_message(tb, fb, sim):
    await deliver(tb, fb, sim.user_message(ANN, "still there?"))
    answers = []

    async def echo_first(delivery: MetaDelivery) -> None:
        answers.append(await deliver(tb, fb, delivery, settle=False))
        await drain_inbox(tb)  # the echo is stored before the Send API answers

    sim.on_echo = echo_first
    await tb.post_event(app_event("evt-1", "racing the echo"))
    await tb.settle()
    assert [a.status_code for a in answers] == [200]
    found = [m for m in await chat_messages(tb, fb, ANN) if m["text"] == "racing the echo"]
    assert len(found) == 1
    assert (found[0]["origin"], found[0]["appMessageId"]) == ("app", "app-evt-1")
    assert found[0]["externalMessageId"] == sim.truth(ANN)[-1]["mid"]


# -- receipts, edits, unsends ----------------------------------------------------------------------

async def test_delivery_then_read_move_the_app_messages_delivery_state(tb, fb, sim, sim_clock):
    await deliver(tb, fb, sim.user_message(ANN, "hello?"))
    sim_clock.advance(2)
    await tb.post_event(app_event("evt-1", "Hello Ann"))
    await tb.settle()
    [sent] = await app_message(tb, fb, "app-evt-1")
    assert sent["deliveryState"] == "sent"
    await deliver(tb, fb, sim.delivery(ANN, [sent["externalMessageId"]]))
    assert (await app_message(tb, fb, "app-evt-1"))[0]["deliveryState"] == "delivered"
    sim_clock.advance(2)
    await deliver(tb, fb, sim.read(ANN))  # a watermark only: everything up to now
    [read] = await app_message(tb, fb, "app-evt-1")
    assert (read["deliveryState"], read["text"], read["origin"]) == ("read", "Hello Ann", "app")
    older = await find_message(tb, fb, ANN, sim.truth(ANN)[1]["mid"])
    # The Page's earlier reply is before the watermark too, and stays the Page's own.
    assert (older["deliveryState"], older["direction"], older["origin"]) == ("read", "outbound", "platform")
    assert len([m for m in await chat_messages(tb, fb, ANN) if m["text"] == "Hello Ann"]) == 1


async def test_a_receipt_of_a_page_inbox_reply_keeps_it_outbound(tb, fb, sim):
    echo = sim.page_message(ANN, "answered from the Page inbox")
    await deliver(tb, fb, echo)
    mid = sim.truth(ANN)[-1]["mid"]
    await deliver(tb, fb, sim.delivery(ANN, [mid]))
    message = await find_message(tb, fb, ANN, mid)
    assert (message["direction"], message["deliveryState"], message["text"]) == (
        "outbound", "delivered", "answered from the Page inbox")


async def test_a_receipt_for_a_message_syncd_never_saw_stores_an_outbound_stub(tb, fb, sim):
    await deliver(tb, fb, sim.delivery(ANN, ["m_sent_by_another_tool"]))
    message = await find_message(tb, fb, ANN, "m_sent_by_another_tool")
    assert (message["direction"], message["deliveryState"], message["text"]) == ("outbound", "delivered", None)


async def test_a_delivery_watermark_without_mids_moves_the_state_too(tb, fb, sim, sim_clock):
    await deliver(tb, fb, sim.user_message(ANN, "hello?"))
    await tb.post_event(app_event("evt-1", "Hello Ann"))
    await tb.settle()
    sim_clock.advance(2)
    await deliver(tb, fb, sim.delivery(ANN))
    assert (await app_message(tb, fb, "app-evt-1"))[0]["deliveryState"] == "delivered"


async def test_an_edit_updates_the_text_and_an_unsend_leaves_a_tombstone(tb, fb, sim, sim_clock):
    first, second = sim.user_message(BO, "helo"), sim.user_message(BO, "wrong chat")
    await deliver(tb, fb, first)
    await deliver(tb, fb, second)
    mids = [t["mid"] for t in sim.truth(BO)][-2:]
    sim_clock.advance(30)
    await deliver(tb, fb, sim.edit(mids[0], "hello"))
    await deliver(tb, fb, sim.unsend(mids[1]))
    edited = await find_message(tb, fb, BO, mids[0])
    assert (edited["text"], edited["deletedAt"]) == ("hello", None) and edited["editedAt"] is not None
    unsent = await find_message(tb, fb, BO, mids[1])
    assert unsent["deletedAt"] is not None and unsent["text"] == "wrong chat"
    await deliver(tb, fb, sim.retry(second))  # a late redelivery cannot resurrect it
    assert (await find_message(tb, fb, BO, mids[1]))["deletedAt"] is not None


# -- sending from the app -------------------------------------------------------------------------

async def test_outside_the_window_the_event_is_dead_lettered_and_the_message_failed(tb, fb, sim, sim_clock):
    sim_clock.advance(25 * 3600)
    await tb.post_event(app_event("evt-late", "Sorry for the wait", chat=BO))
    await tb.settle()
    [dead] = await tb.daemon.store.list_outbox(status="dead")
    assert dead.idempotency_key == "evt-late" and "24-hour" in dead.error and TOKEN not in dead.error
    [message] = await app_message(tb, fb, "app-evt-late", chat=BO)
    assert (message["deliveryState"], message["externalMessageId"]) == ("failed", None)
    assert all(not t["from_account"] for t in sim.truth(BO))


async def test_page_throttling_in_a_200_body_is_waited_out_then_sent_once(tb, fb, sim):
    await deliver(tb, fb, sim.user_message(ANN, "hi"))
    sim.throttle_next("send", code=613, status=200)
    await tb.post_event(app_event("evt-1", "after the throttle"))
    await tb.settle()
    [message] = await app_message(tb, fb, "app-evt-1")
    assert message["deliveryState"] == "sent"
    assert [t["text"] for t in sim.truth(ANN)].count("after the throttle") == 1
    assert sim.faults.calls["send"] == 2


@pytest.mark.parametrize("kind", ["message.updated", "message.deleted"])
async def test_the_page_cannot_edit_or_delete(tb, fb, sim, kind):
    await deliver(tb, fb, sim.user_message(ANN, "hi"))
    await tb.post_event(app_event("evt-1", "hello"))
    await tb.settle()
    response = await tb.post_event({"id": "evt-2", "type": kind, "customerId": "cust-1", "platform": "messenger",
                                    "message": {"id": "app-evt-1", "text": "changed"}})
    assert_error(response, 422, "unsupported")


# -- the OAuth connect flow ------------------------------------------------------------------------

async def test_a_page_connects_through_the_oauth_dialog_and_syncs_with_the_page_token(sim_clock, anon_client):
    sim = MessengerSimulator(page_id=PAGE, valid_tokens=[], app_secret=SECRET, verify_token=VERIFY, clock=sim_clock)
    sim.add_person(ANN, "Ann Ames")
    sim.add_message(ANN, "Hello", at_ms=int((sim_clock() - 60) * 1000))
    clients = {"messenger": {"clientId": sim.app_id, "clientSecret": SECRET, "verifyToken": VERIFY}}
    tb = await Testbed.start(sims={"messenger": sim}, oauth_clients=clients)
    try:
        start = await tb.api.get("/connect/messenger", params={"customerId": "cust-1",
                                                               "settings": json.dumps({"pageId": PAGE})})
        assert start.status_code == 302, start.text
        location = start.headers["location"]
        assert location.startswith("https://www.facebook.com/v21.0/dialog/oauth?")
        assert "scope=pages_messaging%2Cpages_manage_metadata%2Cpages_read_engagement" in location
        async with httpx.AsyncClient(transport=httpx.ASGITransport(sim)) as browser:
            consent = await browser.get(location)
        assert consent.status_code == 302
        answer = await anon_client(tb).get(consent.headers["location"].split("#")[0])
        assert answer.status_code == 201, answer.text
        integration = answer.json()["integration"]
        await tb.wait_imported(integration["id"])
        assert [m["text"] for m in await chat_messages(tb, integration, ANN)] == ["Hello"]
        stored = await tb.daemon.store.get_credentials(integration["id"])
        assert (stored["pageAccessToken"], stored["tokenKind"], stored["pageId"]) == (sim.page_token(), "page", PAGE)
        assert stored["appSecret"] == SECRET and stored["verifyToken"] == VERIFY
    finally:
        await tb.stop()


async def test_a_user_of_several_pages_connects_the_page_the_settings_name(sim_clock, anon_client):
    sim = MessengerSimulator(page_id=PAGE, valid_tokens=[], app_secret=SECRET, verify_token=VERIFY, clock=sim_clock)
    sim.other_pages.append({"name": "Another Page", "id": "999", "access_token": "EAAG-another"})
    sim.add_message(ANN, "Hello", at_ms=int((sim_clock() - 60) * 1000))
    clients = {"messenger": {"clientId": sim.app_id, "clientSecret": SECRET, "verifyToken": VERIFY}}
    tb = await Testbed.start(sims={"messenger": sim}, oauth_clients=clients)
    try:
        start = await tb.api.get("/connect/messenger", params={"customerId": "cust-1",
                                                               "settings": json.dumps({"pageId": PAGE})})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(sim)) as browser:
            consent = await browser.get(start.headers["location"])
        answer = await anon_client(tb).get(consent.headers["location"].split("#")[0])
        assert answer.status_code == 201, answer.text
        integration = answer.json()["integration"]
        await tb.wait_imported(integration["id"])
        assert [m["text"] for m in await chat_messages(tb, integration, ANN)] == ["Hello"]
        # The user token was traded for the named Page's token on first use, and stored.
        stored = await tb.daemon.store.get_credentials(integration["id"])
        assert (stored["pageId"], stored["pageAccessToken"], stored["tokenKind"]) == (PAGE, sim.page_token(), "page")
    finally:
        await tb.stop()
