"""Instagram's documented payloads and signature vectors, through the connector and its mapping.

Every payload here is a real sample (``tests/fixtures/instagram.json``, each item names its
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
from syncd.universal import WebhookRequest

InstagramConnector = providers.bound("instagram")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = json.loads((ROOT / "tests/fixtures/instagram.json").read_text())
VALID, TAMPERED = FIXTURES["signature_vectors"]
SECRET = "test-app-secret"
URL = "https://syncd.test/webhooks/instagram/i1"
IG_ID = "1234567890"  # the samples' entry id and recipient


def sample(contains: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if contains in s["description"])["payload"]


def utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def connector(*, secret: str = SECRET, seen: list[httpx.Request] | None = None) -> InstagramConnector:
    def graph(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(200, json={"data": []})  # no conversation known: chats stay unnamed

    creds = InstagramConnector.Credentials(accessToken="IGQ-test", igUserId=IG_ID, appSecret=secret,
                                           verifyToken="test-verify")
    http = InstagramConnector.make_http("https://graph.test/v21.0", creds, policy=RetryPolicy(max_retries=0),
                                        timeout_s=5, transport=httpx.MockTransport(graph))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/instagram.yaml"), webhook_url=URL)
    return InstagramConnector(creds, {}, ctx)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest("POST", URL, {"x-hub-signature-256": signature}, {}, body)


async def parse(c: InstagramConnector, payload: dict[str, Any]):
    request = signed(json.dumps(payload).encode())
    assert c.accept_webhook(request).delivery_id is not None
    return await c.parse_webhook(request)


def vector_request(vector: dict[str, Any]) -> WebhookRequest:
    headers = {k.lower(): v for k, v in vector["headers"].items()}
    return WebhookRequest("POST", URL, headers, {}, vector["body"].encode())


def test_the_published_signature_vector_verifies_with_the_app_secret():
    with pytest.raises(MalformedDelivery, match="not JSON"):  # a 400, never a 401
        connector(secret=VALID["secret"]).accept_webhook(vector_request(VALID))


def test_a_body_changed_by_one_byte_is_refused():
    with pytest.raises(SignatureError, match="does not match"):
        connector(secret=TAMPERED["secret"]).accept_webhook(vector_request(TAMPERED))


def test_the_handshake_uses_the_verify_token():
    ok = connector().accept_webhook(WebhookRequest("GET", URL, {}, {
        "hub.mode": "subscribe", "hub.verify_token": "test-verify", "hub.challenge": "42"}, b""))
    assert (ok.answer.status_code, ok.answer.body, ok.answer.media_type) == (200, "42", "text/plain")
    assert connector().accept_webhook(WebhookRequest("GET", URL, {}, {
        "hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "42"}, b"")).answer.status_code == 403


def test_a_page_delivery_is_acknowledged_but_not_stored():
    body = json.dumps({**sample("Instagram DM"), "object": "page"}).encode()
    assert connector().accept_webhook(signed(body)).delivery_id is None


async def test_the_direct_message_maps_field_by_field():
    seen: list[httpx.Request] = []
    changes = await parse(connector(seen=seen), sample("Instagram DM"))
    [m] = changes.messages
    assert (m.external_chat_id, m.external_message_id) == ("5678", "external_id")
    assert m.sender.external_user_id == "5678"
    assert m.text == "Hello World"
    assert m.sent_at == utc_ms(1459991487970)
    assert (m.edited_at, m.deleted_at, m.delivery_state, m.attachments, m.external_thread_id) == (
        None, None, None, None, None)
    assert m.from_self is False and m.extra == {}
    # The chat is named from the conversation's participants, looked up by the IGSID.
    assert seen[0].url.params["platform"] == "instagram" and seen[0].url.params["user_id"] == "5678"


async def test_an_unsend_is_a_tombstone_of_the_original_mid():
    changes = await parse(connector(), sample("Instagram unsend"))
    [m] = changes.messages
    assert (m.external_chat_id, m.external_message_id) == ("5678", "external_id")
    assert m.deleted_at == utc_ms(1569262485349)
    # Nothing else is said: the stored text and sentAt stay as they were.
    assert (m.text, m.sent_at, m.sender.external_user_id, m.from_self) == (None, None, None, False)


async def test_an_echo_is_the_accounts_own_message():
    changes = await parse(connector(), sample("Instagram echo"))
    [m] = changes.messages
    assert (m.external_chat_id, m.external_message_id) == ("5678", "qT7ywaK")
    assert m.from_self is True and m.sender.external_user_id == IG_ID
    assert m.sent_at == utc_ms(1459991487970) and m.text is None
