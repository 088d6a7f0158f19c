"""The WhatsApp connector against the WhatsApp simulator, in-process through httpx.ASGITransport."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError

from syncd import providers
from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import AuthError, PermanentError, RateLimited, TransientError
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping, mappings_dir
from syncd.models import Attachment, Sender
from syncd.providers.meta.sim import MetaDelivery
from syncd.providers.whatsapp.sim import WhatsAppSimulator
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

WhatsAppConnector = providers.bound("whatsapp")
WhatsAppCredentials = WhatsAppConnector.Credentials

TOKEN = "EAAG-test-token"
NUMBER = "106540352242922"
CUSTOMER = "16505551234"
URL = "https://syncd.test/webhooks/whatsapp/i1"


class Clock:
    def __init__(self, at: float = 1_750_000_000.0):
        self.at = at

    def __call__(self) -> float:
        return self.at


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock) -> WhatsAppSimulator:
    return WhatsAppSimulator(phone_number_id=NUMBER, valid_tokens=[TOKEN], app_secret="app-secret",
                             verify_token="verify-me", clock=clock)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def build(sim: WhatsAppSimulator, sleeps: Sleeps, *, token: str = TOKEN, max_retries: int = 3) -> WhatsAppConnector:
    creds = WhatsAppCredentials.model_validate({"accessToken": token, "phoneNumberId": NUMBER,
                                                "appSecret": "app-secret", "verifyToken": "verify-me"})
    http = WhatsAppConnector.make_http("http://graph.sim/v21.0", creds, timeout_s=5,
                                       policy=RetryPolicy(max_retries=max_retries, max_s=600, sleep=sleeps),
                                       transport=httpx.ASGITransport(app=sim))
    ctx = ConnectorContext(http=http, mapping=load_mapping(mappings_dir() / "whatsapp.yaml"), webhook_url=URL)
    return WhatsAppConnector(creds, {}, ctx)


@pytest.fixture
async def wa(sim, sleeps):
    connector = build(sim, sleeps)
    yield connector
    await connector.close()


def chat(wa_id: str = CUSTOMER) -> ChatData:
    return ChatData(external_chat_id=wa_id, kind="dm")


def request_of(delivery: MetaDelivery) -> WebhookRequest:
    return WebhookRequest("POST", URL, {k.lower(): v for k, v in delivery.headers.items()}, {}, delivery.body)


async def receive(wa: WhatsAppConnector, delivery: MetaDelivery):
    request = request_of(delivery)
    assert wa.accept_webhook(request).delivery_id
    return await wa.parse_webhook(request)


# -- credentials ------------------------------------------------------------------------------

def test_a_phone_number_id_given_as_a_large_json_number_stays_exact():
    creds = WhatsAppCredentials.model_validate_json(
        '{"accessToken": "t", "phoneNumberId": 12345678901234567890123, "appSecret": "s", "verifyToken": "v"}')
    assert creds.phone_number_id == "12345678901234567890123"


def test_a_phone_number_instead_of_its_id_is_refused_without_echoing_secrets():
    with pytest.raises(ValidationError) as caught:
        WhatsAppCredentials.model_validate({"accessToken": "EAAG-secret", "phoneNumberId": "+1 555 078 3881",
                                            "appSecret": "s3cret", "verifyToken": "v"})
    assert "numeric id" in str(caught.value)
    assert "EAAG-secret" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_credentials_never_print_their_secrets():
    creds = WhatsAppCredentials(accessToken="EAAG-secret", phoneNumberId="1", appSecret="s3cret", verifyToken="vt")
    assert "EAAG-secret" not in repr(creds) and "s3cret" not in repr(creds) and "vt'" not in repr(creds)


def test_whatsapp_declares_what_it_cannot_do():
    assert (WhatsAppConnector.can_edit, WhatsAppConnector.can_delete, WhatsAppConnector.has_history) == (
        False, False, False)
    assert WhatsAppConnector.base_url_key == "meta" and WhatsAppConnector.oauth is None


# -- identity, chats, history, polling --------------------------------------------------------

async def test_identify_is_the_business_phone_number(wa):
    [me] = await wa.identify()
    assert (me.external_user_id, me.display_name, me.is_self) == (NUMBER, "Sim Shop", True)


async def test_a_rejected_token_is_an_auth_error(sim, sleeps):
    wa = build(sim, sleeps, token="EAAG-revoked")
    with pytest.raises(AuthError) as caught:
        await wa.identify()
    assert "190" in str(caught.value) and "EAAG-revoked" not in str(caught.value)
    await wa.close()


async def test_there_is_no_chat_list_no_history_and_no_poll(wa, sim):
    sim.incoming_text(CUSTOMER, "hi", name="Sheena")
    assert await wa.list_chats() == []
    with pytest.raises(PermanentError, match="no history API"):
        await wa.fetch_history_page(chat(), None)
    result = await wa.poll({"kept": 1}, [chat()], 300)
    assert (result.changes.messages, result.changes.chats, result.state) == ([], [], {"kept": 1})
    assert sim.requests == []


# -- sending ----------------------------------------------------------------------------------

async def test_a_text_inside_the_window_is_sent_and_its_wamid_returned(wa, sim, clock):
    sim.incoming_text(CUSTOMER, "hello?", name="Sheena")
    clock.at += 23 * 3600
    result = await wa.send(OutgoingMessage(chat=chat(), text="Yes, in blue."))
    assert result.external_message_id.startswith("wamid.")
    assert result.extra == {"waId": CUSTOMER}
    assert sim.requests[-1] == ("POST", f"/{NUMBER}/messages", {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": CUSTOMER, "type": "text",
        "text": {"body": "Yes, in blue."}})
    [_, sent] = sim.truth(CUSTOMER)
    assert (sent["wamid"], sent["direction"], sent["text"]) == (result.external_message_id, "out", "Yes, in blue.")


async def test_a_reply_quotes_the_message_named_by_the_thread_id(wa, sim):
    question = sim.incoming_text(CUSTOMER, "which sizes?").payload
    wamid = question["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    result = await wa.send(OutgoingMessage(chat=chat(), text="S to XL", external_thread_id=wamid))
    assert sim.requests[-1][2]["context"] == {"message_id": wamid}
    assert result.external_thread_id == wamid
    assert sim.truth(CUSTOMER)[-1]["context_id"] == wamid


async def test_outside_the_24_hour_window_the_send_fails_for_good_after_one_attempt(wa, sim, clock, sleeps):
    sim.incoming_text(CUSTOMER, "hello?")
    clock.at += 24 * 3600 + 1
    with pytest.raises(PermanentError) as caught:
        await wa.send(OutgoingMessage(chat=chat(), text="Sorry for the wait"))
    assert "outside the 24-hour customer service window; use a template" in str(caught.value)
    assert caught.value.code == "131047"
    assert sim.faults.calls["messages"] == 1 and sleeps == []
    assert [m["direction"] for m in sim.truth(CUSTOMER)] == ["in"]


async def test_a_customer_who_never_wrote_cannot_get_free_form_text(wa, sim):
    with pytest.raises(PermanentError, match="24-hour"):
        await wa.send(OutgoingMessage(chat=chat("4915112345678"), text="Hi!"))


async def test_an_empty_text_is_refused_before_any_request(wa, sim):
    with pytest.raises(PermanentError, match="no text"):
        await wa.send(OutgoingMessage(chat=chat(), html="<p></p>"))
    assert sim.requests == []


@pytest.mark.parametrize("status,code", [(400, 130429), (200, 130429), (400, 80007), (200, 4), (400, 613),
                                         (403, 32), (400, 17), (400, 131056)])
async def test_throttling_in_an_error_body_is_waited_out_then_sent(wa, sim, sleeps, status, code):
    sim.incoming_text(CUSTOMER, "hello?")
    sim.throttle_next("messages", code=code, status=status, minutes=2)
    result = await wa.send(OutgoingMessage(chat=chat(), text="Thanks!"))
    assert result.external_message_id.startswith("wamid.")
    # Meta's usage header says how many minutes until access returns.
    assert sleeps == [120.0]
    assert [m["text"] for m in sim.truth(CUSTOMER) if m["direction"] == "out"] == ["Thanks!"]


async def test_a_429_is_waited_out_for_its_retry_after(wa, sim, sleeps):
    sim.incoming_text(CUSTOMER, "hello?")
    sim.faults.fail_next("messages", "rate_limit", retry_after_s=7)
    await wa.send(OutgoingMessage(chat=chat(), text="Thanks!"))
    assert sleeps == [7.0]


async def test_throttling_that_outlasts_the_retries_is_rate_limited(sim, sleeps):
    wa = build(sim, sleeps, max_retries=1)
    sim.incoming_text(CUSTOMER, "hello?")
    sim.throttle_next("messages", times=3)
    with pytest.raises(RateLimited) as caught:
        await wa.send(OutgoingMessage(chat=chat(), text="Thanks!"))
    assert caught.value.code == "130429" and caught.value.retry_after == 60.0
    await wa.close()


async def test_a_server_error_is_retried(wa, sim, sleeps):
    sim.incoming_text(CUSTOMER, "hello?")
    sim.faults.fail_next("messages", "server_error", times=2)
    await wa.send(OutgoingMessage(chat=chat(), text="Thanks!"))
    assert len(sleeps) == 2


async def test_a_server_error_that_persists_is_transient(sim, sleeps):
    wa = build(sim, sleeps, max_retries=0)
    sim.faults.fail_next("phone_number", "server_error")
    with pytest.raises(TransientError):
        await wa.identify()
    await wa.close()


async def test_an_invalid_request_is_permanent_with_metas_code(wa, sim):
    sim.incoming_text(CUSTOMER, "hello?")
    with pytest.raises(PermanentError, match=r"\(100\)"):
        await wa.send(OutgoingMessage(chat=chat(), text="x" * 4097))


# -- webhooks the simulator builds, through the connector ------------------------------------

async def test_an_incoming_text_from_the_simulator(wa, sim, clock):
    changes = await receive(wa, sim.incoming_text(CUSTOMER, "Does it come in blue? ünïcode", name="Sheena Nelson"))
    [message] = changes.messages
    [truth] = sim.truth()
    assert (message.external_chat_id, message.external_message_id) == (CUSTOMER, truth["wamid"])
    assert message.text == "Does it come in blue? ünïcode"
    assert message.sender == Sender(external_user_id=CUSTOMER, name="Sheena Nelson")
    assert message.sent_at == datetime.fromtimestamp(int(clock.at), tz=UTC)
    assert [(c.external_chat_id, c.name, c.kind) for c in changes.chats] == [(CUSTOMER, "Sheena Nelson", "dm")]


@pytest.mark.parametrize("kind,mime,caption,filename", [
    ("image", "image/jpeg", "the blue one", None),
    ("document", "application/pdf", "invoice", "invoice-1001.pdf"),
    ("audio", "audio/ogg; codecs=opus", None, None),
    ("video", "video/mp4", "unboxing", None),
    ("sticker", "image/webp", None, None),
])
async def test_media_become_attachments_with_their_caption_as_text(wa, sim, kind, mime, caption, filename):
    big_id = str(2**63 + 12345)  # media ids are strings; beyond 2^53 they stay exact
    delivery = sim.incoming_media(CUSTOMER, kind, media_id=big_id, mime_type=mime, caption=caption,
                                  filename=filename)
    [message] = (await receive(wa, delivery)).messages
    assert message.attachments == [Attachment(external_id=big_id, mime_type=mime, name=filename)]
    assert message.text == caption
    assert message.extra == {"type": kind}


async def test_a_media_id_sent_as_a_json_number_stays_exact(wa, sim):
    delivery = sim.incoming_media(CUSTOMER, "image", media_id="4242")
    body = delivery.body.decode().replace('"id":"4242"', f'"id":{2**64 + 1}')
    [message] = (await receive(wa, sim.sign(delivery.payload, body=body.encode()))).messages
    assert message.attachments[0].external_id == str(2**64 + 1)


async def test_a_reply_carries_the_quoted_wamid_as_its_thread(wa, sim):
    result_first = (await receive(wa, sim.incoming_text(CUSTOMER, "first"))).messages[0]
    [reply] = (await receive(wa, sim.incoming_text(CUSTOMER, "about that", reply_to=result_first.external_message_id))
               ).messages
    assert reply.external_thread_id == result_first.external_message_id
    assert reply.extra["replyToFrom"] == CUSTOMER


async def test_an_edit_and_a_revoke_name_the_original_message(wa, sim, clock):
    original = (await receive(wa, sim.incoming_text(CUSTOMER, "helo"))).messages[0]
    clock.at += 30
    [edit] = (await receive(wa, sim.edit(original.external_message_id, "hello"))).messages
    assert (edit.external_message_id, edit.text) == (original.external_message_id, "hello")
    assert edit.edited_at == datetime.fromtimestamp(int(clock.at), tz=UTC) and edit.sent_at is None
    clock.at += 30
    [revoke] = (await receive(wa, sim.revoke(original.external_message_id))).messages
    assert revoke.external_message_id == original.external_message_id
    assert revoke.deleted_at == datetime.fromtimestamp(int(clock.at), tz=UTC)
    assert sim.truth()[0]["edited"] and sim.truth()[0]["revoked"]


async def test_statuses_of_a_sent_message(wa, sim):
    sim.incoming_text(CUSTOMER, "hello?")
    sent = await wa.send(OutgoingMessage(chat=chat(), text="Hi"))
    states = []
    for status in ("sent", "delivered", "read"):
        [update] = (await receive(wa, sim.status(sent.external_message_id, status))).messages
        assert (update.external_message_id, update.external_chat_id, update.from_self) == (
            sent.external_message_id, CUSTOMER, True)
        states.append(update.delivery_state)
    assert states == ["sent", "delivered", "read"]
    [failed] = (await receive(wa, sim.status(sent.external_message_id, "failed"))).messages
    assert failed.delivery_state == "failed"
    assert failed.extra["statusErrors"][0]["code"] == 131026


async def test_a_reaction_and_an_unknown_status_change_nothing(wa, sim):
    delivery = sim.incoming_text(CUSTOMER, "x")
    payload = json.loads(delivery.body)
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update(type="reaction", reaction={"message_id": message["id"], "emoji": "👍"})
    del message["text"]
    assert (await receive(wa, sim.sign(payload))).messages == []
    status = json.loads(sim.status("wamid.X", "deleted", recipient=CUSTOMER).body)
    assert (await receive(wa, sim.sign(status))).messages == []


async def test_a_message_type_without_text_is_still_stored(wa, sim):
    delivery = sim.incoming_text(CUSTOMER, "x")
    payload = json.loads(delivery.body)
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    del message["text"]
    message.update(type="unsupported", errors=[{"code": 131051, "title": "Message type unknown"}])
    [stored] = (await receive(wa, sim.sign(payload))).messages
    assert stored.text is None and stored.extra["type"] == "unsupported"
    assert stored.extra["errors"][0]["code"] == 131051


async def test_a_message_without_from_belongs_to_the_values_one_contact(wa, sim):
    payload = json.loads(sim.incoming_text(CUSTOMER, "hi", name="Sheena").body)
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
    [message] = (await receive(wa, sim.sign(payload))).messages
    assert (message.external_chat_id, message.sender.external_user_id, message.sender.name) == (
        CUSTOMER, CUSTOMER, "Sheena")
