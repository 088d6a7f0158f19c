"""WhatsApp's documented payloads and signature vectors, through the connector and its mapping.

Every payload here is a real sample (``tests/fixtures/whatsapp.json``, each item names its
source), signed with the app secret over its raw bytes as Meta does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd import providers
from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import MalformedDelivery, SignatureError
from syncd.kit.http import RetryPolicy
from syncd.mapping import load_mapping
from syncd.models import Attachment, Sender
from syncd.universal import WebhookRequest

WhatsAppConnector = providers.bound("whatsapp")
WhatsAppCredentials = WhatsAppConnector.Credentials

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = json.loads((ROOT / "tests/fixtures/whatsapp.json").read_text())
VALID, TAMPERED = FIXTURES["signature_vectors"]
SECRET = "test-app-secret"
URL = "https://syncd.test/webhooks/whatsapp/i1"


def sample(contains: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if contains in s["description"])["payload"]


def number_of(payload: dict[str, Any]) -> str:
    return payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"]


def utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def connector(phone_number_id: str = "106540352242922", *, secret: str = SECRET,
              verify_token: str = "verify-me") -> WhatsAppConnector:
    # The fixtures' placeholders ("<BUSINESS_PHONE_NUMBER_ID>") are not valid ids: built as is.
    creds = WhatsAppCredentials.model_construct(access_token="EAAG-test", phone_number_id=phone_number_id,
                                                app_secret=secret, verify_token=verify_token)
    http = WhatsAppConnector.make_http("https://graph.test/v21.0", creds, policy=RetryPolicy(max_retries=0),
                                       timeout_s=5, transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/whatsapp.yaml"), webhook_url=URL)
    return WhatsAppConnector(creds, {}, ctx)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest("POST", URL, {"x-hub-signature-256": sig, "content-type": "application/json"}, {}, body)


async def parse(payload: dict[str, Any]):
    wa = connector(number_of(payload))
    request = signed(json.dumps(payload).encode())
    accepted = wa.accept_webhook(request)
    assert accepted.delivery_id is not None
    return await wa.parse_webhook(request)


# -- signatures and the handshake ----------------------------------------------------------

def vector_request(vector: dict[str, Any]) -> WebhookRequest:
    headers = {k.lower(): v for k, v in vector["headers"].items()}
    return WebhookRequest("POST", URL, headers, {}, vector["body"].encode())


def test_the_published_signature_vector_verifies_with_the_app_secret():
    wa = connector(secret=VALID["secret"])
    # "Hello, World!" is no WhatsApp delivery: verified, then refused as not JSON.
    with pytest.raises(MalformedDelivery, match="not JSON"):  # a 400, never a 401
        wa.accept_webhook(vector_request(VALID))


def test_a_body_changed_by_one_byte_is_refused():
    with pytest.raises(SignatureError, match="does not match"):
        connector(secret=TAMPERED["secret"]).accept_webhook(vector_request(TAMPERED))


def test_a_documented_delivery_signed_with_the_app_secret_is_accepted_with_a_body_digest():
    body = json.dumps(sample("official Meta docs")).encode()
    accepted = connector().accept_webhook(signed(body))
    assert accepted.delivery_id == "sha256:" + hashlib.sha256(body).hexdigest()
    assert accepted.answer.status_code == 200


@pytest.mark.parametrize("headers", [
    {}, {"x-hub-signature-256": "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
    {"x-hub-signature": "sha1=" + "0" * 40},
])
def test_a_delivery_without_a_sha256_signature_is_refused(headers):
    body = json.dumps(sample("official Meta docs")).encode()
    with pytest.raises(SignatureError):
        connector().accept_webhook(WebhookRequest("POST", URL, headers, {}, body))


def test_a_delivery_signed_with_another_secret_is_refused():
    body = json.dumps(sample("official Meta docs")).encode()
    with pytest.raises(SignatureError):
        connector().accept_webhook(signed(body, secret="another-apps-secret"))


def test_the_signature_covers_the_raw_bytes_not_the_parsed_json():
    # Meta escapes non-ASCII; the same JSON written with raw UTF-8 is other bytes.
    escaped = b'{"object":"whatsapp_business_account","entry":[],"x":"caf\\u00e9"}'
    request = signed(escaped)
    request.body = json.dumps(json.loads(escaped), ensure_ascii=False).encode()
    with pytest.raises(SignatureError):
        connector().accept_webhook(request)


def test_the_handshake_echoes_the_challenge_as_text_with_the_right_token():
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    accepted = connector().accept_webhook(WebhookRequest("GET", URL, {}, query, b""))
    assert accepted.delivery_id is None
    assert (accepted.answer.status_code, accepted.answer.body, accepted.answer.media_type) == (
        200, "1158201444", "text/plain")


@pytest.mark.parametrize("query", [
    {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
    {"hub.mode": "unsubscribe", "hub.verify_token": "verify-me", "hub.challenge": "1"},
    {},
])
def test_the_handshake_is_refused_with_403_otherwise(query):
    accepted = connector().accept_webhook(WebhookRequest("GET", URL, {}, query, b""))
    assert accepted.delivery_id is None
    assert accepted.answer.status_code == 403
    assert "verify-me" not in json.dumps(accepted.answer.body)


# -- every sample, field by field -----------------------------------------------------------

async def test_the_official_incoming_text_sample():
    changes = await parse(sample("official Meta docs"))
    [message] = changes.messages
    assert message.external_chat_id == "16505551234"
    assert message.external_message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert message.external_thread_id is None
    assert message.sender == Sender(external_user_id="16505551234", name="Sheena Nelson")
    assert message.text == "Does it come in another color?"
    assert message.attachments is None
    assert message.sent_at == utc(1749416383)
    assert (message.edited_at, message.deleted_at, message.delivery_state) == (None, None, None)
    assert message.from_self is False
    assert message.extra == {"type": "text"}
    [chat] = changes.chats
    assert (chat.external_chat_id, chat.name, chat.kind, chat.participants) == (
        "16505551234", "Sheena Nelson", "dm", ["16505551234"])


async def test_the_gateway_text_sample_with_a_formatted_display_number():
    changes = await parse(sample("open-source multi-channel gateway"))
    [message] = changes.messages
    assert (message.external_chat_id, message.external_message_id) == ("5678", "external_id")
    assert message.sender == Sender(external_user_id="5678", name="Kerry Fisher")
    assert message.text == "Hello World"
    assert message.sent_at == utc(1454119029)
    assert [(c.external_chat_id, c.name, c.kind) for c in changes.chats] == [("5678", "Kerry Fisher", "dm")]


async def test_the_sent_status_sample_only_moves_the_delivery_state():
    changes = await parse(sample("status 'sent'"))
    [status] = changes.messages
    assert (status.external_chat_id, status.external_message_id) == ("972987654321", "wamid.xyzxyz")
    assert status.delivery_state == "sent"
    assert status.from_self is True
    assert status.sender == Sender(external_user_id="1122334455667")
    # A status says nothing about the message's content or when it was sent.
    assert (status.text, status.sent_at, status.edited_at, status.deleted_at, status.attachments) == (
        None, None, None, None, None)
    assert status.extra == {}
    [chat] = changes.chats
    assert (chat.external_chat_id, chat.name, chat.kind) == ("972987654321", "Test Name", "dm")


async def test_the_failed_status_sample_keeps_the_error():
    changes = await parse(sample("status 'failed'"))
    [status] = changes.messages
    assert (status.external_chat_id, status.external_message_id, status.delivery_state) == (
        "5678", "external_id", "failed")
    assert status.extra == {"statusErrors": [
        {"code": 131014, "title": "Request for url https://URL.jpg failed with error: 404 (Not Found)"}]}


async def test_the_edit_sample_updates_the_original_message():
    changes = await parse(sample("EDITED"))
    [edit] = changes.messages
    assert edit.external_message_id == "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
    assert edit.external_chat_id == "16505551234"
    # The value's one contact is the sender, though its wa_id is written differently.
    assert edit.sender == Sender(external_user_id="16505551234", name="Test Name")
    assert edit.text == "Updated image caption"
    assert edit.attachments == [Attachment(external_id="1234567890", mime_type="image/jpeg",
                                           url="https://media.example.com/updated-image.jpg")]
    assert edit.external_thread_id == "M0"
    assert edit.edited_at == utc(1749854575)
    # The edit's own timestamp is not when the original was sent.
    assert (edit.sent_at, edit.deleted_at, edit.delivery_state) == (None, None, None)
    assert edit.extra == {"type": "image"}


async def test_the_revoke_sample_is_a_tombstone_of_the_original():
    changes = await parse(sample("DELETED"))
    [revoke] = changes.messages
    assert revoke.external_message_id == "<ORIGINAL_WHATSAPP_MESSAGE_ID>"
    assert revoke.external_chat_id == "<WHATSAPP_USER_PHONE_NUMBER>"
    assert revoke.deleted_at == utc(1697043223)
    assert (revoke.text, revoke.sent_at, revoke.edited_at, revoke.attachments) == (None, None, None, None)
    assert revoke.extra == {}


async def test_every_sample_is_mapped():
    for item in FIXTURES["samples"]:
        changes = await parse(item["payload"])
        assert changes.messages, item["description"]
        assert all(c.kind == "dm" for c in changes.chats)


async def test_a_delivery_for_another_phone_number_is_acknowledged_and_ignored():
    payload = sample("official Meta docs")
    wa = connector("999999999999999")
    request = signed(json.dumps(payload).encode())
    accepted = wa.accept_webhook(request)
    assert accepted.delivery_id is None and accepted.answer.status_code == 200
    assert (await wa.parse_webhook(request)).messages == []


async def test_only_the_changes_of_our_number_are_kept_from_a_mixed_delivery():
    ours = sample("official Meta docs")
    theirs = json.loads(json.dumps(sample("open-source multi-channel gateway")))
    ours = json.loads(json.dumps(ours))
    ours["entry"].append(theirs["entry"][0])
    changes = await parse(ours)
    assert [m.external_message_id for m in changes.messages] == [
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="]


def test_another_products_delivery_is_not_stored():
    body = json.dumps({"object": "page", "entry": [{"id": "1", "messaging": []}]}).encode()
    assert connector().accept_webhook(signed(body)).delivery_id is None
