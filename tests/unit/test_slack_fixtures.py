"""Slack's documented payloads and signature vectors, through the connector and its mapping.

Every payload here is a real sample (``tests/fixtures/slack.json``, each item names its
source); the API answers are served with ``httpx.MockTransport`` exactly as documented.
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

from syncd.kit.classify import classifier
from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import (
    AlreadyDone,
    AuthError,
    CursorExpired,
    PermanentError,
    RateLimited,
    SignatureError,
    TransientError,
)
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import load_manifest
from syncd.providers import connector_for
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

ROOT = Path(__file__).resolve().parents[2]
SLACK = load_manifest(ROOT / "mappings/slack.yaml")
#: The Slack module's connector bound to its manifest, as the registry makes it.
SlackConnector = connector_for(SLACK)
#: Slack's error rules as its HTTP client applies them to every answer.
classify = classifier(SLACK.manifest.errors)
FIXTURES = json.loads((ROOT / "tests/fixtures/slack.json").read_text())
VALID, TAMPERED = FIXTURES["signature_vectors"]
SECRET = "test-signing-secret"


def sample(kind: str, contains: str) -> dict[str, Any]:
    return next(s for s in FIXTURES["samples"] if s["kind"] == kind and contains in s["description"])["payload"]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def connector(answers: dict[str, Any] | None = None, *, secret: str = SECRET, clock: float = 0.0,
              seen: list[httpx.Request] | None = None) -> SlackConnector:
    """A connector whose API answers come from ``answers`` (method -> payload, or a list
    of payloads served in order)."""
    answers = {"auth.test": {"ok": True, "user_id": "U0BOT", "bot_id": "B0BOT", "user": "bot"}, **(answers or {})}

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        answer = answers[request.url.path.rsplit("/", 1)[-1]]
        if isinstance(answer, list):
            answer = answer.pop(0)
        return httpx.Response(200, json=answer)

    creds = SlackConnector.Credentials(botToken="xoxb-test", signingSecret=secret)
    http = SlackConnector.make_http("https://slack.test/api", creds, policy=RetryPolicy(max_retries=0),
                                    timeout_s=5, transport=httpx.MockTransport(handle))
    ctx = ConnectorContext(http=http, mapping=SLACK.mapping,
                           webhook_url="https://syncd.test/webhooks/slack/i1", clock=lambda: clock)
    return SlackConnector(creds, {}, ctx)


def signed(payload: dict[str, Any], *, at: int = 1_700_000_000) -> WebhookRequest:
    body = json.dumps(payload).encode()
    sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{at}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"x-slack-request-timestamp": str(at), "x-slack-signature": sig, "content-type": "application/json"}
    return WebhookRequest("POST", "https://syncd.test/webhooks/slack/i1", headers, {}, body)


def vector_request(vector: dict[str, Any]) -> WebhookRequest:
    headers = {k.lower(): v for k, v in vector["headers"].items()}
    return WebhookRequest("POST", "https://syncd.test/webhooks/slack/i1", headers, {}, vector["body"].encode())


# -- signatures ---------------------------------------------------------------------------

def test_the_documented_signature_vector_is_accepted_with_the_clock_at_its_time():
    slack = connector(secret=VALID["secret"], clock=VALID["now_for_test"])
    accepted = slack.accept_webhook(vector_request(VALID))
    # A verified slash command is not a message: nothing to store, answered 200.
    assert accepted.delivery_id is None
    assert accepted.answer.status_code == 200


def test_a_tampered_body_is_refused():
    slack = connector(secret=TAMPERED["secret"], clock=VALID["now_for_test"])
    with pytest.raises(SignatureError) as refused:
        slack.accept_webhook(vector_request(TAMPERED))
    assert TAMPERED["secret"] not in str(refused.value)


@pytest.mark.parametrize("skew", [301, -301])
def test_a_timestamp_outside_the_replay_window_is_refused(skew):
    slack = connector(secret=VALID["secret"], clock=VALID["now_for_test"] + skew)
    with pytest.raises(SignatureError, match="replay window"):
        slack.accept_webhook(vector_request(VALID))


def test_a_timestamp_at_the_edge_of_the_window_is_accepted():
    slack = connector(secret=VALID["secret"], clock=VALID["now_for_test"] + 300)
    slack.accept_webhook(vector_request(VALID))


@pytest.mark.parametrize("missing", ["x-slack-signature", "x-slack-request-timestamp"])
def test_a_delivery_without_signature_headers_is_refused(missing):
    request = vector_request(VALID)
    del request.headers[missing]
    with pytest.raises(SignatureError, match=r"X-Slack-[A-Za-z-]+ is missing|no (valid )?X-Slack-"):
        connector(secret=VALID["secret"], clock=VALID["now_for_test"]).accept_webhook(request)


def test_a_signature_made_with_another_secret_is_refused():
    slack = connector(secret="another-secret", clock=VALID["now_for_test"])
    with pytest.raises(SignatureError, match="does not match"):
        slack.accept_webhook(vector_request(VALID))


# -- webhook samples ----------------------------------------------------------------------

def test_url_verification_is_answered_with_its_challenge_and_not_stored():
    payload = sample("webhook", "url_verification")
    accepted = connector(clock=1_700_000_000).accept_webhook(signed(payload))
    assert accepted.delivery_id is None
    assert accepted.answer.status_code == 200
    assert accepted.answer.body == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_the_documented_message_event_becomes_one_message():
    request = signed(sample("webhook", "plain message event"))
    slack = connector(clock=1_700_000_000)
    assert slack.accept_webhook(request).delivery_id == "Ev123ABC456"
    changes = await slack.parse_webhook(request)
    [message] = changes.messages
    assert message.external_chat_id == "C123ABC456"
    assert message.external_message_id == "C123ABC456:1355517523.000005"
    assert message.external_thread_id is None
    assert message.text == "Hello world"
    assert message.sender.external_user_id == "U123ABC456"
    assert message.sent_at == utc(2012, 12, 14, 20, 38, 43, 5)
    assert message.edited_at is None and message.deleted_at is None
    assert message.from_self is False


async def test_a_direct_message_event_is_keyed_on_its_im_channel():
    request = signed(sample("webhook", "app_home DM"))
    slack = connector(clock=1_700_000_000)
    assert slack.accept_webhook(request).delivery_id == "Ev0PV52K25"
    [message] = (await slack.parse_webhook(request)).messages
    assert message.external_message_id == "D0PNCRP9N:1525215129.000001"
    assert message.text == "How many cats did we herd yesterday?"
    assert message.sender.external_user_id == "U061F7AUR"
    assert message.sent_at == utc(2018, 5, 1, 22, 52, 9, 1)


async def test_message_deleted_is_a_tombstone_of_the_deleted_ts():
    request = signed(sample("webhook", "message_deleted"))
    [message] = (await connector(clock=1_700_000_000).parse_webhook(request)).messages
    assert message.external_chat_id == "C123ABC456"
    assert message.external_message_id == "C123ABC456:1358878749.000002"
    assert message.deleted_at == utc(2013, 1, 22, 18, 19, 15, 1)
    assert message.text is None


async def test_message_changed_updates_the_original_ts_with_its_edit_time():
    # The event of https://docs.slack.dev/reference/events/message/message_changed/ in the
    # envelope of the documented message event.
    envelope = sample("webhook", "plain message event")
    event = {"type": "message", "subtype": "message_changed", "hidden": True, "channel": "C123ABC456",
             "ts": "1358878755.000001",
             "message": {"type": "message", "user": "U123ABC456", "text": "Hello, world!", "ts": "1355517523.000005",
                         "edited": {"user": "U123ABC456", "ts": "1358878755.000001"}}}
    [message] = (await connector().parse_webhook(signed({**envelope, "event": event}))).messages
    assert message.external_message_id == "C123ABC456:1355517523.000005"
    assert message.text == "Hello, world!"
    assert message.sent_at == utc(2012, 12, 14, 20, 38, 43, 5)
    assert message.edited_at == utc(2013, 1, 22, 18, 19, 15, 1)


async def test_a_channel_rename_renames_the_chat():
    # The event of https://docs.slack.dev/reference/events/channel_rename/.
    envelope = sample("webhook", "plain message event")
    event = {"type": "channel_rename", "channel": {"id": "C02ELGNBH", "name": "new_name", "created": 1360782804}}
    changes = await connector().parse_webhook(signed({**envelope, "event": event}))
    [renamed] = changes.chats
    assert (renamed.external_chat_id, renamed.name) == ("C02ELGNBH", "new_name")
    assert changes.messages == []


async def test_an_event_about_something_else_changes_nothing():
    payload = {**sample("webhook", "plain message event"), "event": {"type": "reaction_added", "user": "U1"}}
    changes = await connector().parse_webhook(signed(payload))
    assert changes.messages == [] and changes.chats == []


async def test_a_channel_join_notice_is_not_a_message():
    payload = sample("webhook", "plain message event")
    payload = {**payload, "event": {**payload["event"], "subtype": "channel_join", "text": "<@U123ABC456> has joined"}}
    assert (await connector().parse_webhook(signed(payload))).messages == []


# -- Web API samples ----------------------------------------------------------------------

CHAT = ChatData(external_chat_id="C1H9RESGL", name="general")


async def test_a_documented_history_page_maps_every_message_and_its_cursor():
    slack = connector({"conversations.history": sample("history_page", "conversations.history")})
    page = await slack.fetch_history_page(CHAT, None)
    assert page.next_cursor == "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz"
    first, second = page.messages
    assert first.external_message_id == "C1H9RESGL:1512085950.000216"
    assert first.text == "I find you punny and would like to smell your nose letter"
    assert first.sender.external_user_id == "U012AB3CDE"
    assert first.sent_at == utc(2017, 11, 30, 23, 52, 30, 216)
    assert second.external_message_id == "C1H9RESGL:1512104434.000490"
    assert second.sender.external_user_id == "U061F7AUR"


async def test_a_thread_parent_pulls_in_its_documented_replies_once_each():
    replies = sample("history_page", "conversations.replies")
    parent = replies["messages"][0]
    seen: list[httpx.Request] = []
    slack = connector({
        "conversations.history": {"ok": True, "messages": [parent], "has_more": False},
        # Slack repeats the parent on the next page of replies.
        "conversations.replies": [replies, {"ok": True, "messages": [parent], "has_more": False}],
    }, seen=seen)
    page = await slack.fetch_history_page(CHAT, None)
    assert [m.text for m in page.messages] == ["island", "one island", "two island", "three for the land"]
    assert {m.external_thread_id for m in page.messages} == {"C1H9RESGL:1482960137.003543"}
    assert page.messages[1].external_message_id == "C1H9RESGL:1483037603.017503"
    assert page.messages[1].sent_at == utc(2016, 12, 29, 18, 53, 23, 17503)
    assert page.next_cursor is None
    reply_calls = [r for r in seen if r.url.path.endswith("conversations.replies")]
    assert reply_calls[1].url.params["cursor"] == "bmV4dF90czoxNDg0Njc4MjkwNTE3MDkx"


async def test_list_chats_follows_next_cursor_of_the_documented_page():
    seen: list[httpx.Request] = []
    slack = connector({"conversations.list": [
        sample("chat_list", "next_cursor is non-empty"),
        {"ok": True, "channels": [{"id": "C3", "name": "random", "is_channel": True}],
         "response_metadata": {"next_cursor": ""}},
    ]}, seen=seen)
    chats = await slack.list_chats()
    assert [c.external_chat_id for c in chats] == ["C2", "C3"]
    assert chats[1].name == "random" and chats[1].kind == "channel"
    assert seen[1].url.params["cursor"] == "has_page3"
    assert seen[0].url.params["types"] == "public_channel,private_channel,mpim,im"


async def test_the_documented_post_message_answer_gives_the_composed_id():
    seen: list[httpx.Request] = []
    slack = connector({"chat.postMessage": sample("send_response", "chat.postMessage")}, seen=seen)
    result = await slack.send(OutgoingMessage(chat=CHAT, text="Here's a message for you"))
    assert result.external_message_id == "C1H9RESGL:1503435956.000247"
    assert result.sent_at == utc(2017, 8, 22, 21, 5, 56, 247)
    assert json.loads(seen[0].content) == {"channel": "C1H9RESGL", "text": "Here's a message for you"}
    assert seen[0].headers["authorization"] == "Bearer xoxb-test"


async def test_the_documented_update_answer_keeps_the_message_id():
    seen: list[httpx.Request] = []
    slack = connector({"chat.update": sample("send_response", "chat.update")}, seen=seen)
    chat = ChatData(external_chat_id="C024BE91L")
    result = await slack.edit(OutgoingMessage(chat=chat, text="Updated text you carefully authored",
                                              external_message_id="C024BE91L:1401383885.000061"))
    assert result.external_message_id == "C024BE91L:1401383885.000061"
    assert json.loads(seen[0].content) == {"channel": "C024BE91L", "ts": "1401383885.000061",
                                           "text": "Updated text you carefully authored"}


async def test_the_documented_error_envelope_is_a_permanent_error_with_its_code():
    slack = connector({"conversations.history": sample("send_response", "Error envelope")})
    with pytest.raises(PermanentError) as failed:
        await slack.fetch_history_page(CHAT, None)
    assert failed.value.code == "channel_not_found"
    assert "xoxb-test" not in str(failed.value)


def test_the_documented_429_is_rate_limited_for_its_retry_after():
    item = next(s for s in FIXTURES["samples"] if s.get("http_status") == 429)
    response = httpx.Response(429, headers=item["headers"], json=item["payload"])
    with pytest.raises(RateLimited) as limited:
        classify(response)
    assert limited.value.retry_after == 30


@pytest.mark.parametrize("code", ["invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"])
def test_auth_error_codes_need_attention(code):
    with pytest.raises(AuthError):
        classify(httpx.Response(200, json={"ok": False, "error": code}))


def test_in_body_ratelimited_and_server_errors_are_retryable():
    with pytest.raises(RateLimited):
        classify(httpx.Response(200, json={"ok": False, "error": "ratelimited"}))
    with pytest.raises(TransientError):
        classify(httpx.Response(503, text="<html>down</html>"))
    with pytest.raises(TransientError):
        classify(httpx.Response(200, json={"ok": False, "error": "service_unavailable"}))


def test_an_expired_cursor_a_gone_message_and_a_foreign_answer_are_told_apart():
    with pytest.raises(CursorExpired):
        classify(httpx.Response(200, json={"ok": False, "error": "invalid_cursor"}))
    # Only a delete acts on it (a retried delete is done); anywhere else it stays permanent.
    with pytest.raises(AlreadyDone) as gone:
        classify(httpx.Response(200, json={"ok": False, "error": "message_not_found"}))
    assert isinstance(gone.value, PermanentError) and gone.value.code == "message_not_found"
    with pytest.raises(PermanentError):
        classify(httpx.Response(200, text="<html>a proxy's page</html>"))
    classify(httpx.Response(200, json={"ok": True}))


def test_credentials_need_a_slack_token_and_never_print_it():
    with pytest.raises(ValueError) as refused:
        SlackConnector.Credentials(botToken="not-a-token-secret", signingSecret="s3cr3t")
    assert "not-a-token-secret" not in str(refused.value)
    creds = SlackConnector.Credentials(bot_token="xoxb-123-secret", signing_secret="s3cr3t")
    assert "xoxb-123-secret" not in repr(creds) and "s3cr3t" not in repr(creds)
