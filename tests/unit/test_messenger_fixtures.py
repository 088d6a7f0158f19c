"""Messenger's documented payloads and signature vectors, through the connector and its mapping.

Every payload here is a real sample (``tests/fixtures/messenger.json``, each item names its
source), signed with the app secret over its raw bytes as Meta does. The Graph API answers a
receipt watermark needs are served with ``httpx.MockTransport`` in Meta's documented shapes.
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
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

MessengerConnector = providers.bound("messenger")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = json.loads((ROOT / "tests/fixtures/messenger.json").read_text())
VALID, TAMPERED = FIXTURES["signature_vectors"]
SECRET = "test-app-secret"
URL = "https://syncd.test/webhooks/messenger/i1"


def sample(contains: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if contains in s["description"])["payload"]


def utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class FakeGraph:
    """Graph answers by path; records every request."""

    def __init__(self, answers: dict[str, Any] | None = None):
        self.answers = answers or {}
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path.removeprefix("/v21.0")
        answer = self.answers.get(f"{request.method} {path}")
        if answer is None and path.endswith("/conversations"):
            answer = {"data": []}  # nobody known: chats stay unnamed
        if answer is None:
            return httpx.Response(400, json={"error": {"message": "Unknown path", "type": "OAuthException",
                                                       "code": 100}})
        return httpx.Response(200, json=answer)


def connector(page_id: str = "1234567890", *, secret: str = SECRET, graph: FakeGraph | None = None
              ) -> MessengerConnector:
    creds = MessengerConnector.Credentials(pageAccessToken="EAAG-test", pageId=page_id, appSecret=secret,
                                           verifyToken="test-verify")
    http = MessengerConnector.make_http("https://graph.test/v21.0", creds, policy=RetryPolicy(max_retries=0),
                                        timeout_s=5, transport=httpx.MockTransport(graph or FakeGraph()))
    ctx = ConnectorContext(http=http, mapping=load_mapping(ROOT / "mappings/messenger.yaml"), webhook_url=URL)
    return MessengerConnector(creds, {}, ctx)


def signed(body: bytes, secret: str = SECRET) -> WebhookRequest:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest("POST", URL, {"content-type": "application/json", "x-hub-signature-256": signature},
                          {}, body)


def enveloped(item: dict[str, Any], page_id: str) -> dict[str, Any]:
    """A documented ``messaging[]`` item inside the envelope Meta posts it in."""
    return {"object": "page", "entry": [{"id": page_id, "time": 1458668856463, "messaging": [item]}]}


async def parse(c: MessengerConnector, payload: dict[str, Any]):
    request = signed(json.dumps(payload).encode())
    assert c.accept_webhook(request).delivery_id is not None
    return await c.parse_webhook(request)


# -- signatures and the handshake -----------------------------------------------------------

def vector_request(vector: dict[str, Any]) -> WebhookRequest:
    headers = {k.lower(): v for k, v in vector["headers"].items()}
    return WebhookRequest("POST", URL, headers, {}, vector["body"].encode())


def test_the_published_signature_vector_verifies_with_the_app_secret():
    # "Hello, World!" is no Messenger delivery: verified, then refused as not JSON.
    with pytest.raises(MalformedDelivery, match="not JSON"):  # a 400, never a 401
        connector(secret=VALID["secret"]).accept_webhook(vector_request(VALID))


def test_a_body_changed_by_one_byte_is_refused():
    with pytest.raises(SignatureError, match="does not match"):
        connector(secret=TAMPERED["secret"]).accept_webhook(vector_request(TAMPERED))


def test_a_documented_delivery_is_accepted_with_a_digest_of_its_bytes_as_delivery_id():
    body = json.dumps(sample("messages event: object='page'")).encode()
    accepted = connector("111111").accept_webhook(signed(body))
    assert accepted.delivery_id == "sha256:" + hashlib.sha256(body).hexdigest()


def test_a_delivery_signed_with_another_secret_or_unsigned_is_refused():
    body = json.dumps(sample("gateway test fixture")).encode()
    with pytest.raises(SignatureError):
        connector().accept_webhook(signed(body, "another-secret"))
    with pytest.raises(SignatureError, match="missing"):
        connector().accept_webhook(WebhookRequest("POST", URL, {}, {}, body))


def test_the_handshake_echoes_the_challenge_and_refuses_a_wrong_token():
    ok = connector().accept_webhook(WebhookRequest("GET", URL, {}, {
        "hub.mode": "subscribe", "hub.verify_token": "test-verify", "hub.challenge": "1158201444"}, b""))
    assert (ok.delivery_id, ok.answer.status_code, ok.answer.body) == (None, 200, "1158201444")
    wrong = connector().accept_webhook(WebhookRequest("GET", URL, {}, {
        "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}, b""))
    assert (wrong.delivery_id, wrong.answer.status_code) == (None, 403)
    assert "test-verify" not in json.dumps(wrong.answer.body)


def test_an_instagram_delivery_is_acknowledged_but_not_stored():
    body = json.dumps({**sample("gateway test fixture"), "object": "instagram"}).encode()
    assert connector().accept_webhook(signed(body)).delivery_id is None


# -- every sample, field by field -----------------------------------------------------------

async def test_the_documented_text_message_maps_field_by_field():
    changes = await parse(connector("111111"), sample("messages event: object='page'"))
    [m] = changes.messages
    assert m.external_chat_id == "USER_ID"
    assert m.external_message_id == "mid.1457764197618:41d102a3e1ae206a38"
    assert m.external_thread_id is None
    assert m.sender.external_user_id == "USER_ID" and m.sender.name is None
    assert m.text == "hello, world!"
    assert m.sent_at == utc_ms(1457764197627)
    assert (m.edited_at, m.deleted_at, m.delivery_state, m.attachments) == (None, None, None, None)
    assert m.from_self is False and m.extra == {}


async def test_the_gateway_text_message_maps_field_by_field():
    changes = await parse(connector(), sample("messages event (gateway test fixture)"))
    [m] = changes.messages
    assert (m.external_chat_id, m.external_message_id) == ("5678", "external_id")
    assert m.sender.external_user_id == "5678"
    assert m.text == "Hello World"
    assert m.sent_at == utc_ms(1459991487970)
    assert m.from_self is False


async def test_an_echo_is_the_pages_own_message_in_the_chat_of_the_other_party():
    changes = await parse(connector(), sample("message_echoes"))
    [m] = changes.messages
    # The sample names the user as sender; is_echo says the Page sent it, to that user.
    assert (m.external_chat_id, m.external_message_id) == ("5678", "qT7ywaK")
    assert m.from_self is True
    assert m.sender.external_user_id == "1234567890"
    assert m.text is None
    assert m.sent_at == utc_ms(1459991487970)


async def test_an_attachment_keeps_its_url_and_type():
    changes = await parse(connector(), sample("image attachment"))
    [m] = changes.messages
    assert m.text is None
    assert [a.url for a in m.attachments] == ["https://image-url/foo.png"]
    assert m.extra == {"attachmentTypes": ["image"]}


async def test_a_delivery_with_mids_marks_each_named_message_delivered_without_any_call():
    graph = FakeGraph()
    c = connector("<PAGE_ID>", graph=graph)
    changes = await parse(c, enveloped(sample("message_deliveries"), "<PAGE_ID>"))
    [m] = changes.messages
    assert (m.external_chat_id, m.external_message_id) == ("<PSID>", "mid.1458668856218:ed81099e15d3f4f233")
    assert m.delivery_state == "delivered"
    # Only ids and the state: nothing else is said. It is the Page's own (outbound) message.
    assert (m.text, m.sent_at, m.sender.external_user_id, m.from_self) == (None, None, None, True)
    # Only the chat-name lookup: the receipt itself needs no Graph read.
    assert [r.url.path for r in graph.seen] == ["/v21.0/<PAGE_ID>/conversations"]


def graph_message(mid: str, created: str, sender: dict[str, Any], text: str) -> dict[str, Any]:
    return {"id": mid, "created_time": created, "from": sender, "to": {"data": []}, "message": text}


async def test_a_read_watermark_marks_the_pages_messages_up_to_it_read():
    page = {"name": "Sim Page", "email": "page@facebook.com", "id": "<PAGE_ID>"}
    user = {"name": "Peter Chang", "email": "psid@facebook.com", "id": "<PSID>"}
    # watermark 1458668856253 = 2016-03-22T17:47:36.253Z
    graph = FakeGraph({
        "GET /<PAGE_ID>/conversations": {"data": [{"id": "t_10", "updated_time": "2016-03-22T17:47:40+0000",
                                                   "participants": {"data": [user, page]}}]},
        "GET /t_10/messages": {"data": [
            graph_message("m_after", "2016-03-22T17:47:37+0000", page, "later"),
            graph_message("m_user", "2016-03-22T17:47:30+0000", user, "hello"),
            graph_message("m_before", "2016-03-22T17:47:36+0000", page, "earlier"),
        ]},
    })
    changes = await parse(connector("<PAGE_ID>", graph=graph), enveloped(sample("message_reads"), "<PAGE_ID>"))
    [m] = changes.messages
    assert (m.external_message_id, m.delivery_state, m.from_self) == ("m_before", "read", True)
    assert m.text == "earlier" and m.sender.external_user_id == "<PAGE_ID>"
    assert [c.name for c in changes.chats] == ["Peter Chang"]
    listed = next(r for r in graph.seen if r.url.path.endswith("/conversations"))
    assert listed.url.params["user_id"] == "<PSID>" and listed.url.params["platform"] == "messenger"


async def test_a_read_watermark_of_an_unknown_conversation_changes_nothing():
    changes = await parse(connector("<PAGE_ID>"), enveloped(sample("message_reads"), "<PAGE_ID>"))
    assert changes.messages == [] and changes.chats == []


async def test_entries_of_another_page_are_ignored():
    changes = await parse(connector("999"), sample("messages event (gateway test fixture)"))
    assert changes.messages == []


async def test_the_documented_send_response_gives_the_message_id():
    graph = FakeGraph({"POST /1234567890/messages": sample("Send API")})
    c = connector(graph=graph)
    result = await c.send(OutgoingMessage(chat=ChatData(external_chat_id="PAGE-SCOPED-ID"), text="hi"))
    assert result.external_message_id == "AG5Hz2U..."
    sent = json.loads(graph.seen[-1].content)
    assert sent == {"recipient": {"id": "PAGE-SCOPED-ID"}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}
    assert graph.seen[-1].headers["authorization"] == "Bearer EAAG-test"


async def test_ids_beyond_2_to_the_53_sent_as_json_numbers_stay_exact():
    big_page, big_user = 2**60 + 3, 2**62 + 11
    payload = sample("messages event (gateway test fixture)")
    item = {**payload["entry"][0]["messaging"][0], "sender": {"id": big_user}, "recipient": {"id": big_page}}
    envelope = {"object": "page", "entry": [{"id": big_page, "messaging": [item]}]}
    changes = await parse(connector(str(big_page)), envelope)
    [m] = changes.messages
    assert m.external_chat_id == m.sender.external_user_id == "4611686018427387915"
