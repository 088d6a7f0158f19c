"""Telegram's documented payloads and secret-token vectors, through the connector and its mapping.

Every payload here is a real sample (``tests/fixtures/telegram.json``, each item names its
source); API answers are served with ``httpx.MockTransport`` exactly as documented.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import RateLimited, SignatureError
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import load_manifest
from syncd.providers import connector_for
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

ROOT = Path(__file__).resolve().parents[2]
LOADED = load_manifest(ROOT / "mappings/telegram.yaml")
TelegramConnector = connector_for(LOADED)
FIXTURES = json.loads((ROOT / "tests/fixtures/telegram.json").read_text())
VALID, WRONG_CASE = FIXTURES["signature_vectors"]
TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
URL = "https://syncd.test/webhooks/telegram/i1"


def sample(kind: str, starts: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if s["kind"] == kind and s["description"].startswith(starts))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def connector(answers: dict[str, Any] | None = None, *, waits: list[float] | None = None,
              public: bool = True) -> TelegramConnector:
    """A connector whose API answers come from ``answers``: method -> (status, body) or a
    list of them served in order."""
    answers = dict(answers or {})

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers[request.url.path.rsplit("/", 1)[-1]]
        if isinstance(answer, list):
            answer = answer.pop(0)
        status, body = answer
        return httpx.Response(status, json=body)

    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append(seconds)

    creds = TelegramConnector.Credentials(botToken=TOKEN, secretToken=VALID["secret"])
    policy = RetryPolicy(max_retries=2, sleep=sleep)
    http = TelegramConnector.make_http("https://api.telegram.test", creds, policy=policy, timeout_s=5,
                                       transport=httpx.MockTransport(handle))
    ctx = ConnectorContext(http=http, mapping=LOADED.mapping, webhook_url=URL,
                           public_webhooks=public)
    return TelegramConnector(creds, {}, ctx)


def request(body: bytes, headers: dict[str, str]) -> WebhookRequest:
    return WebhookRequest("POST", URL, {k.lower(): v for k, v in headers.items()}, {}, body)


def update_request(payload: dict[str, Any]) -> WebhookRequest:
    return request(json.dumps(payload).encode(), {"X-Telegram-Bot-Api-Secret-Token": VALID["secret"]})


# -- the secret token ---------------------------------------------------------------------

def test_the_documented_secret_header_is_accepted_and_the_update_id_is_the_delivery_id():
    accepted = connector().accept_webhook(request(VALID["body"].encode(), VALID["headers"]))
    assert accepted.delivery_id == "10000"
    assert accepted.answer.status_code == 200


def test_a_secret_differing_only_in_case_is_refused():
    assert WRONG_CASE["expect_valid"] is False
    with pytest.raises(SignatureError, match="does not match"):
        connector().accept_webhook(request(WRONG_CASE["body"].encode(), WRONG_CASE["headers"]))


def test_a_delivery_without_the_secret_header_is_refused():
    with pytest.raises(SignatureError, match="X-Telegram-Bot-Api-Secret-Token is missing"):
        connector().accept_webhook(request(VALID["body"].encode(), {"Content-Type": "application/json"}))


def test_a_verified_body_that_is_no_update_stores_nothing_and_answers_200():
    accepted = connector().accept_webhook(request(b"not json", VALID["headers"]))
    assert accepted.delivery_id is None and accepted.answer.status_code == 200


# -- every documented update, field by field ----------------------------------------------

PRIVATE_CHAT = ChatData(external_chat_id="1111111", name="Test Firstname Test Lastname", kind="dm",
                        participants=["1111111"])


async def parsed(description_start: str):
    payload = sample("webhook", description_start)["payload"]
    tg = connector()
    assert tg.accept_webhook(update_request(payload)).delivery_id == "10000"
    return await tg.parse_webhook(update_request(payload))


async def test_a_private_text_message_maps_every_field():
    changes = await parsed("Update with a text message")
    assert changes.chats == [PRIVATE_CHAT]
    [m] = changes.messages
    assert (m.external_chat_id, m.external_message_id, m.external_thread_id) == ("1111111", "1111111:1365", None)
    assert (m.sender.external_user_id, m.sender.name) == ("1111111", "Test Firstname Test Lastname")
    assert (m.text, m.html, m.attachments) == ("/start", None, None)
    assert (m.sent_at, m.edited_at, m.deleted_at) == (utc(2015, 9, 7, 17, 5, 32), None, None)
    assert m.from_self is False
    assert m.extra == {"chatType": "private"}


async def test_a_forwarded_message_is_stored_as_the_message_the_chat_received():
    [m] = (await parsed("Forwarded message")).messages
    assert (m.external_message_id, m.sender.external_user_id, m.text) == ("1111111:1365", "1111111", "/start")
    assert m.sent_at == utc(2015, 9, 7, 17, 5, 32)


async def test_a_reply_is_threaded_on_the_replied_message_in_the_same_chat():
    [m] = (await parsed("Message with a reply")).messages
    # The embedded reply names another chat in the sample; the thread lives in this chat.
    assert (m.external_message_id, m.external_thread_id) == ("1111111:1365", "1111111:1334")
    assert m.text == "/start"


async def test_a_message_with_entities_keeps_its_plain_text():
    [m] = (await parsed("Message with entities")).messages
    assert m.text == "Bold and italics"


async def test_a_document_becomes_an_attachment_without_a_url():
    [m] = (await parsed("Message with a document")).messages
    assert m.text is None
    [a] = m.attachments
    assert (a.name, a.mime_type, a.size, a.external_id, a.url) == (
        "Testfile.pdf", "application/pdf", 536392, "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX", None)


async def test_a_callback_query_is_accepted_but_is_no_message():
    changes = await parsed("callback_query update")
    assert changes.messages == [] and changes.chats == []


async def test_the_documented_get_updates_page_is_polled_and_confirmed_by_the_next_offset():
    page = sample("history_page", "getUpdates response")["payload"]
    tg = connector({"deleteWebhook": (200, {"ok": True, "result": True}), "getUpdates": (200, page)}, public=False)
    polled = await tg.poll({"offset": None}, [], 0)
    [m] = polled.changes.messages
    assert (m.external_chat_id, m.external_message_id) == ("1", "1:1")
    assert (m.sender.external_user_id, m.sender.name, m.text) == ("1", "John", "Test")
    assert (m.sent_at, m.edited_at) == (utc(1970, 1, 1), utc(1970, 1, 1, 0, 0, 1))
    assert m.from_self is False
    assert polled.changes.chats == [ChatData(external_chat_id="1", name="John", kind="dm", participants=["1"])]
    assert polled.state["offset"] == 2


async def test_the_documented_send_answer_gives_a_composed_id():
    answer = sample("send_response", "sendMessage success")["payload"]
    tg = connector({"sendMessage": (200, answer)})
    result = await tg.send(OutgoingMessage(chat=ChatData(external_chat_id="-1001234567890"), text="hi"))
    assert result.external_message_id == "-1001234567890:133"


async def test_the_documented_flood_control_answer_is_waited_out_for_retry_after():
    limited = sample("send_response", "Flood control")
    answer = {"ok": True, "result": {"message_id": 9, "date": 1441645532, "chat": {"id": 42, "type": "private"},
                                     "text": "hi"}}
    waits: list[float] = []
    tg = connector({"sendMessage": [(limited["http_status"], limited["payload"]), (200, answer)]}, waits=waits)
    result = await tg.send(OutgoingMessage(chat=ChatData(external_chat_id="42"), text="hi"))
    assert waits == [5]
    assert result.external_message_id == "42:9"


async def test_flood_control_past_the_retry_budget_says_how_long_to_wait():
    limited = sample("send_response", "Flood control")
    tg = connector({"sendMessage": [(429, limited["payload"])] * 3})
    with pytest.raises(RateLimited) as failed:
        await tg.send(OutgoingMessage(chat=ChatData(external_chat_id="42"), text="hi"))
    assert failed.value.retry_after == 5
    assert str(failed.value) == "send: telegram error 429: Too Many Requests: retry after 5"
    assert TOKEN not in str(failed.value)
