"""WhatsApp through the HTTP API: the integration, the hub.challenge handshake, signed
deliveries (the documented samples and the simulator's), duplicates, statuses, edits and
revokes, and app messages sent inside and outside the 24-hour window."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

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

from syncd.providers.meta.sim import MetaDelivery
from syncd.providers.whatsapp.sim import WhatsAppSimulator
from syncd.testbed import Testbed

FIXTURES = load_fixture("whatsapp")
NUMBER = "106540352242922"  # the documented samples' phone_number_id
CUSTOMER = "16505551234"
TOKEN = "EAAG-testbed-token"
SECRET = "testbed-app-secret-wa"
VERIFY = "testbed-verify-token"


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
    sim = WhatsAppSimulator(phone_number_id=NUMBER, valid_tokens=[TOKEN], app_secret=SECRET, verify_token=VERIFY,
                            clock=sim_clock)
    tb = await Testbed.start(sims={"whatsapp": sim})
    yield tb
    await tb.stop()


@pytest.fixture
def sim(tb) -> WhatsAppSimulator:
    return tb.sims["whatsapp"]


@pytest.fixture
async def wa(tb) -> dict[str, Any]:
    return await tb.create("whatsapp", {"accessToken": TOKEN, "phoneNumberId": NUMBER, "appSecret": SECRET,
                                        "verifyToken": VERIFY})


async def deliver(tb: Testbed, integration: dict[str, Any], delivery: MetaDelivery, *, settle: bool = True):
    response = await tb.api.post(tb.webhook_url(integration), content=delivery.body, headers=delivery.headers)
    assert response.status_code == 200, response.text
    if settle:
        await tb.settle()
    return response


def wamid_of(delivery: MetaDelivery) -> str:
    return delivery.payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"]


def app_event(event_id: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "message.created", "customerId": "cust-1", "platform": "whatsapp",
            "externalChatId": CUSTOMER, "message": {"id": f"app-{event_id}", "text": text}, **fields}


async def app_message(tb: Testbed, wa: dict[str, Any], app_id: str) -> list[dict[str, Any]]:
    return [m for m in await chat_messages(tb, wa, CUSTOMER) if m.get("appMessageId") == app_id]


# -- the integration ------------------------------------------------------------------------

async def test_the_integration_is_created_with_the_business_number_as_its_own_identity(tb, wa):
    assert wa["platform"] == "whatsapp" and wa["webhookUrl"].endswith(f"/webhooks/whatsapp/{wa['id']}")
    assert "credentials" not in wa and SECRET not in json.dumps(wa)
    users = (await tb.api.get("/user-platforms", params={"customerId": "cust-1"})).json()["userPlatforms"]
    assert [(u["externalUserId"], u["displayName"], u["isSelf"]) for u in users] == [(NUMBER, "Sim Shop", True)]
    # No chat can be listed: WhatsApp chats exist once a customer writes.
    assert (await tb.api.get(f"/integrations/{wa['id']}/chats/available")).json()["chats"] == []


async def test_a_rejected_token_refuses_the_integration(tb):
    response = await tb.api.post("/integrations", json={"platform": "whatsapp", "customerId": "cust-1", "credentials": {
        "accessToken": "EAAG-wrong", "phoneNumberId": NUMBER, "appSecret": SECRET, "verifyToken": VERIFY}})
    error = assert_error(response, 422, "credentials_rejected")
    assert "EAAG-wrong" not in error["message"]


async def test_credentials_missing_the_app_secret_are_invalid(tb):
    response = await tb.api.post("/integrations", json={"platform": "whatsapp", "customerId": "cust-1", "credentials": {
        "accessToken": TOKEN, "phoneNumberId": NUMBER, "verifyToken": VERIFY}})
    assert_error(response, 422, "invalid_credentials")


# -- handshake and signatures ----------------------------------------------------------------

async def test_the_handshake_answers_the_challenge_as_text(tb, wa, anon_client, sim):
    anon = anon_client(tb)
    response = await anon.get(tb.webhook_url(wa), params=sim.handshake_query(challenge="1158201444"))
    assert response.status_code == 200
    assert response.text == "1158201444" and response.headers["content-type"].startswith("text/plain")


async def test_the_handshake_with_a_wrong_token_is_forbidden(tb, wa, anon_client, sim):
    response = await anon_client(tb).get(tb.webhook_url(wa), params=sim.handshake_query(verify_token="guess"))
    assert response.status_code == 403
    assert VERIFY not in response.text


async def test_the_documented_text_message_is_stored(tb, wa):
    body, headers = signed(sample("official Meta docs"))
    assert (await tb.api.post(tb.webhook_url(wa), content=body, headers=headers)).status_code == 200
    await tb.settle()
    message = await find_message(tb, wa, CUSTOMER, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=")
    assert message["text"] == "Does it come in another color?"
    assert message["sender"] == {"externalUserId": CUSTOMER, "email": None, "name": "Sheena Nelson"}
    assert (message["direction"], message["origin"], message["sentAt"]) == ("inbound", "platform",
                                                                              "2025-06-08T20:59:43Z")
    chat = (await tb.chats(wa))[CUSTOMER]
    assert (chat["name"], chat["kind"], chat["participants"]) == ("Sheena Nelson", "dm", [CUSTOMER])
    assert [c["message"]["text"] for c in tb.app.received] == ["Does it come in another color?"]


async def test_a_tampered_delivery_is_refused_and_nothing_is_stored(tb, wa):
    body, headers = signed(sample("official Meta docs"))
    response = await tb.api.post(tb.webhook_url(wa), content=body.replace(b"color", b"colour"), headers=headers)
    assert_error(response, 401)
    response = await tb.api.post(tb.webhook_url(wa), content=body, headers={"content-type": "application/json"})
    assert_error(response, 401)
    await tb.settle()
    assert await inbox_counts(tb, wa) == {"pending": 0, "done": 0, "failed": 0}
    assert await tb.chats(wa) == {}


async def test_a_delivery_for_another_phone_number_is_acknowledged_and_not_stored(tb, wa):
    body, headers = signed(sample("open-source multi-channel gateway"))  # phone_number_id 1234567890
    assert (await tb.api.post(tb.webhook_url(wa), content=body, headers=headers)).status_code == 200
    await tb.settle()
    assert await inbox_counts(tb, wa) == {"pending": 0, "done": 0, "failed": 0}
    assert await tb.chats(wa) == {}


async def test_the_same_delivery_three_times_stores_one_message(tb, wa, sim):
    delivery = sim.incoming_text(CUSTOMER, "hello", name="Sheena")
    for _ in range(3):
        await deliver(tb, wa, sim.retry(delivery), settle=False)
    await tb.settle()
    assert [m["text"] for m in await chat_messages(tb, wa, CUSTOMER)] == ["hello"]
    assert (await inbox_counts(tb, wa))["done"] == 1


# -- statuses, edits, revokes ---------------------------------------------------------------

async def test_a_revoke_leaves_a_tombstone_and_an_edit_updates_the_text(tb, wa, sim, sim_clock):
    first, second = sim.incoming_text(CUSTOMER, "helo"), sim.incoming_text(CUSTOMER, "oops")
    await deliver(tb, wa, first)
    await deliver(tb, wa, second)
    sim_clock.advance(60)
    await deliver(tb, wa, sim.edit(wamid_of(first), "hello"))
    await deliver(tb, wa, sim.revoke(wamid_of(second)))
    edited = await find_message(tb, wa, CUSTOMER, wamid_of(first))
    assert edited["text"] == "hello" and edited["editedAt"] is not None and edited["deletedAt"] is None
    revoked = await find_message(tb, wa, CUSTOMER, wamid_of(second))
    assert revoked["deletedAt"] is not None
    assert len(await chat_messages(tb, wa, CUSTOMER)) == 2


async def test_a_late_message_cannot_resurrect_a_revoked_one(tb, wa, sim, sim_clock):
    original = sim.incoming_text(CUSTOMER, "secret")
    sim_clock.advance(5)
    await deliver(tb, wa, sim.revoke(wamid_of(original)))
    await deliver(tb, wa, sim.retry(original))
    [message] = await chat_messages(tb, wa, CUSTOMER)
    assert message["deletedAt"] is not None


async def test_a_sent_message_gets_its_statuses_on_the_one_stored_document(tb, wa, sim):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "Is it in stock?", name="Sheena"))
    assert (await tb.post_event(app_event("evt-1", "Yes, it is."))).status_code == 202
    await tb.settle()
    [sent] = await app_message(tb, wa, "app-evt-1")
    wamid = sent["externalMessageId"]
    assert wamid in {m["wamid"] for m in sim.truth(CUSTOMER) if m["direction"] == "out"}
    assert (sent["direction"], sent["origin"], sent["deliveryState"]) == ("outbound", "app", "sent")
    for state in ("sent", "delivered"):
        await deliver(tb, wa, sim.status(wamid, state))
        [message] = await app_message(tb, wa, "app-evt-1")
        assert (message["externalMessageId"], message["deliveryState"]) == (wamid, state)
        assert message["text"] == "Yes, it is."
    assert len(await chat_messages(tb, wa, CUSTOMER)) == 2


async def test_delivery_states_only_move_forward(tb, wa, sim):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "hi"))
    await tb.post_event(app_event("evt-1", "hello"))
    await tb.settle()
    [sent] = await app_message(tb, wa, "app-evt-1")
    for state in ("read", "delivered", "sent"):  # out of order: read arrives first
        await deliver(tb, wa, sim.status(sent["externalMessageId"], state))
    [message] = await app_message(tb, wa, "app-evt-1")
    assert message["deliveryState"] == "read"


async def test_a_status_processed_before_the_send_is_recorded_merges_into_the_app_message(tb, wa, sim):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "hi"))

    async def status_first(wamid: str) -> None:
        # Meta's webhook outruns the send's answer: the status is stored and processed first.
        await deliver(tb, wa, sim.status(wamid, "delivered"), settle=False)
        await drain_inbox(tb)
        early = await find_message(tb, wa, CUSTOMER, wamid)
        assert (early["origin"], early["deliveryState"]) == ("platform", "delivered")

    sim.on_send = status_first
    await tb.post_event(app_event("evt-1", "hello"))
    await tb.settle()
    messages = await chat_messages(tb, wa, CUSTOMER)
    assert len(messages) == 2
    [message] = await app_message(tb, wa, "app-evt-1")
    assert (message["deliveryState"], message["text"], message["origin"]) == ("delivered", "hello", "app")


async def test_a_status_of_a_message_syncd_never_sent_stores_only_ids_and_state(tb, wa, sim):
    await deliver(tb, wa, sim.status("wamid.SENT-ELSEWHERE", "read", recipient=CUSTOMER))
    [message] = await chat_messages(tb, wa, CUSTOMER)
    assert (message["externalMessageId"], message["deliveryState"], message["direction"]) == (
        "wamid.SENT-ELSEWHERE", "read", "outbound")
    assert (message["text"], message["sentAt"], message["deletedAt"]) == (None, None, None)
    assert (await tb.chats(wa))[CUSTOMER]["kind"] == "dm"


# -- sending from the app ---------------------------------------------------------------------

async def test_outside_the_window_the_event_is_dead_lettered_at_once_and_the_message_failed(tb, wa, sim, sim_clock):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "hi"))
    sim_clock.advance(25 * 3600)
    await tb.post_event(app_event("evt-late", "Sorry for the wait"))
    await tb.settle()
    [dead] = await tb.daemon.store.list_outbox(status="dead")
    assert dead.idempotency_key == "evt-late" and dead.attempts == 1
    assert "outside the 24-hour customer service window; use a template" in dead.error
    assert TOKEN not in dead.error
    [message] = await app_message(tb, wa, "app-evt-late")
    assert (message["deliveryState"], message["externalMessageId"]) == ("failed", None)
    assert sim.faults.calls["messages"] == 1
    assert [m["direction"] for m in sim.truth(CUSTOMER)] == ["in"]


async def test_throughput_throttling_in_a_400_body_is_waited_out_then_sent(tb, wa, sim):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "hi"))
    sim.throttle_next("messages", code=130429, status=400)
    await tb.post_event(app_event("evt-1", "hello"))
    await tb.settle()
    [message] = await app_message(tb, wa, "app-evt-1")
    assert message["deliveryState"] == "sent" and message["externalMessageId"].startswith("wamid.")
    assert sim.faults.calls["messages"] == 2
    assert [m["text"] for m in sim.truth(CUSTOMER) if m["direction"] == "out"] == ["hello"]
    assert await tb.daemon.store.list_outbox(status="dead") == []


async def test_a_quoted_reply_from_the_app(tb, wa, sim):
    question = sim.incoming_text(CUSTOMER, "which sizes?")
    await deliver(tb, wa, question)
    await tb.post_event(app_event("evt-1", "S to XL", message={"id": "app-evt-1", "text": "S to XL",
                                                                "externalThreadId": wamid_of(question)}))
    await tb.settle()
    assert sim.truth(CUSTOMER)[-1]["context_id"] == wamid_of(question)


@pytest.mark.parametrize("kind", ["message.updated", "message.deleted"])
async def test_the_business_cannot_edit_or_delete(tb, wa, sim, kind):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "hi"))
    await tb.post_event(app_event("evt-1", "hello"))
    await tb.settle()
    response = await tb.post_event({"id": "evt-2", "type": kind, "customerId": "cust-1", "platform": "whatsapp",
                                    "message": {"id": "app-evt-1", "text": "changed"}})
    assert_error(response, 422, "unsupported")


# -- no history -------------------------------------------------------------------------------

async def test_a_full_resync_is_refused_and_keeps_every_message_received_by_webhook(tb, wa, sim):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "only copy"))
    response = await tb.api.post(f"/integrations/{wa['id']}/resync", json={"full": True})
    # Nothing can be re-read: an empty "history" must never pass for "everything is gone".
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_history"
    await tb.settle()
    [message] = await chat_messages(tb, wa, CUSTOMER)
    assert message["text"] == "only copy" and message["deletedAt"] is None


async def test_a_failed_status_marks_a_sent_message_failed_with_metas_error(tb, wa, sim):
    await deliver(tb, wa, sim.incoming_text(CUSTOMER, "hi"))
    await tb.post_event(app_event("evt-1", "hello"))
    await tb.settle()
    [sent] = await app_message(tb, wa, "app-evt-1")
    # Meta may accept a send and report the closed window (or another failure) only as a status.
    error = {"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
             "error_data": {"details": "Message failed to send because more than 24 hours have passed."}}
    await deliver(tb, wa, sim.status(sent["externalMessageId"], "failed", errors=[error]))
    [message] = await app_message(tb, wa, "app-evt-1")
    assert message["deliveryState"] == "failed"
    assert message["extra"]["statusErrors"][0]["code"] == 131047
