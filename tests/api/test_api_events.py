"""App change events (``POST /events``): authentication, validation, idempotency, and their
delivery to the platform through the outbox, echoes included."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from apisupport import assert_error, chat_messages, drain_inbox, event, inbox_counts

from syncd.testbed import APP_SECRET


def created(event_id: str, channel: str, text: str = "hello from the app", app_id: str | None = None):
    return event(event_id, externalChatId=channel, message={"id": app_id or f"app-{event_id}", "text": text})


def bot_messages(tb, channel: str) -> list[dict]:
    return [m for m in tb.slack.truth(channel) if m["bot_id"] is not None]


async def stored_by_app_id(tb, slack, channel: str, app_id: str) -> list[dict]:
    return [m for m in await chat_messages(tb, slack, channel) if m["appMessageId"] == app_id]


# -- authentication and validation ----------------------------------------------------------
async def test_an_event_without_a_signature_answers_401(tb, anon, slack_ws, slack):
    body = json.dumps(created("evt-1", slack_ws["general"])).encode()
    assert_error(await anon.post("/events", content=body), 401, "bad_signature")


async def test_an_event_signed_with_another_secret_answers_401_and_sends_nothing(tb, slack_ws, slack):
    response = await tb.post_event(created("evt-1", slack_ws["general"]), secret="not-the-app-secret")
    assert_error(response, 401, "bad_signature")
    await tb.settle()
    assert bot_messages(tb, slack_ws["general"]) == []


async def test_a_signature_of_another_body_answers_401(tb, slack_ws, slack):
    body = json.dumps(created("evt-1", slack_ws["general"])).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body + b" ", hashlib.sha256).hexdigest()
    response = await tb.api.post("/events", content=body, headers={"x-syncd-signature": signature})
    assert_error(response, 401, "bad_signature")


async def test_an_event_that_is_not_json_answers_400(tb, slack):
    assert_error(await tb.post_event(b"type=message.created"), 400, "bad_request")


async def test_an_event_that_is_a_json_array_answers_400(tb, slack_ws, slack):
    body = json.dumps([created("evt-1", slack_ws["general"])]).encode()
    assert_error(await tb.post_event(body), 400, "bad_request")


@pytest.mark.parametrize(("mutate", "field"), [
    pytest.param(lambda e: e.pop("id"), "id", id="no id"),
    pytest.param(lambda e: e.pop("customerId"), "customerId", id="no customerId"),
    pytest.param(lambda e: e.pop("message"), "message", id="no message"),
    pytest.param(lambda e: e.update(type="message.exploded"), "type", id="unknown type"),
    pytest.param(lambda e: e.update(id=""), "id", id="empty id"),
])
async def test_an_event_with_missing_fields_or_an_unknown_type_answers_422(tb, slack_ws, slack, mutate, field):
    body = created("evt-1", slack_ws["general"])
    mutate(body)
    error = assert_error(await tb.post_event(body), 422, "invalid")
    assert field in [d["field"] for d in error["details"]]


async def test_a_created_event_without_a_chat_answers_422(tb, slack):
    error = assert_error(await tb.post_event(event("evt-1", message={"id": "m1", "text": "hi"})), 422, "invalid")
    assert "chatId" in json.dumps(error)


async def test_a_created_event_without_text_answers_422(tb, slack_ws, slack):
    body = event("evt-1", externalChatId=slack_ws["general"], message={"id": "m1"})
    assert_error(await tb.post_event(body), 422, "invalid")


async def test_an_event_for_a_customer_without_an_active_integration_answers_422(tb, slack_ws, slack):
    body = {**created("evt-1", slack_ws["general"]), "customerId": "cust-without-slack"}
    error = assert_error(await tb.post_event(body), 422, "no_integration")
    assert "cust-without-slack" in error["message"]


async def test_an_event_for_an_unknown_chat_id_answers_404(tb, slack):
    body = event("evt-1", chatId="no-such-chat", message={"id": "m1", "text": "hi"})
    assert_error(await tb.post_event(body), 404, "unknown_chat")


async def test_events_answer_503_while_the_app_secret_is_unset(make_tb):
    tb = await make_tb(app_webhook_secret=None)
    response = await tb.post_event(event("evt-1", externalChatId="C1", message={"id": "m1", "text": "hi"}))
    error = assert_error(response, 503)
    assert "SYNCD_APP_WEBHOOK_SECRET" in error["message"]


# -- body size ------------------------------------------------------------------------------
async def test_bodies_over_the_size_limit_answer_413_and_store_nothing(make_tb):
    tb = await make_tb(max_body_bytes=2048)
    ids = tb.slack.seed_workspace()
    slack = await tb.create_slack()
    big = "x" * 4096
    # /events
    assert_error(await tb.post_event(created("evt-big", ids["general"], text=big)), 413, "too_large")
    # a webhook
    delivery = tb.slack.post_user_message(ids["general"], big, ids["bob"])
    assert_error(await tb.deliver_slack(slack, delivery), 413, "too_large")
    # an admin endpoint
    body = {"platform": "slack", "customerId": "cust-big", "name": big,
            "credentials": {"botToken": "xoxb-sim-bot-token", "signingSecret": "sim-signing-secret"}}
    assert_error(await tb.api.post("/integrations", json=body), 413, "too_large")
    await tb.settle()
    assert bot_messages(tb, ids["general"]) == []
    assert big not in [m["text"] for m in await chat_messages(tb, slack, ids["general"])]
    assert await inbox_counts(tb, slack) == {"pending": 0, "done": 0, "failed": 0}
    assert (await tb.api.get("/integrations", params={"customerId": "cust-big"})).json()["integrations"] == []
    assert [i for i in await tb.daemon.store.list_outbox() if i.type != "callback"] == []


async def test_a_streamed_body_over_the_limit_without_content_length_answers_413(make_tb):
    tb = await make_tb(max_body_bytes=2048)
    ids = tb.slack.seed_workspace()
    slack = await tb.create_slack()

    async def chunks():
        yield b'{"platform": "slack", "customerId": "cust-big", "name": "'
        for _ in range(4):
            yield b"x" * 1024
        yield b'", "credentials": {}}'

    for path in ("/events", tb.webhook_url(slack), "/integrations"):
        response = await tb.api.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert_error(response, 413, "too_large")
    await tb.settle()
    assert await inbox_counts(tb, slack) == {"pending": 0, "done": 0, "failed": 0}
    assert (await tb.api.get("/integrations", params={"customerId": "cust-big"})).json()["integrations"] == []
    assert bot_messages(tb, ids["general"]) == []


# -- delivery ---------------------------------------------------------------------------------
async def test_a_created_event_is_queued_then_sent_and_stored_as_the_apps_message(tb, slack_ws, slack):
    general = slack_ws["general"]
    response = await tb.post_event(created("evt-1", general, text="Hello from the app", app_id="app-msg-1"))
    assert response.status_code == 202
    assert response.json() == {"eventId": "evt-1", "status": "queued"}
    await tb.settle()
    sent = bot_messages(tb, general)
    assert [m["text"] for m in sent] == ["Hello from the app"]
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert message["origin"] == "app"
    assert message["externalMessageId"] == f"{general}:{sent[0]['ts']}"
    assert message["direction"] == "outbound"
    assert message["deliveryState"] == "sent"
    assert message["text"] == "Hello from the app"


async def test_the_same_event_id_posted_twice_is_sent_once_and_answered_with_the_first_result(tb, slack_ws, slack):
    general = slack_ws["general"]
    first = await tb.post_event(created("evt-1", general, app_id="app-msg-1"))
    again_at_once = await tb.post_event(created("evt-1", general, app_id="app-msg-1"))
    await tb.settle()
    again_later = await tb.post_event(created("evt-1", general, app_id="app-msg-1"))
    await tb.settle()
    assert first.status_code == again_at_once.status_code == again_later.status_code == 202
    assert first.json() == {"eventId": "evt-1", "status": "queued"}
    # Answered with the first post's state: still queued, unless the worker was quicker.
    assert again_at_once.json()["eventId"] == "evt-1"
    assert again_at_once.json()["status"] in ("queued", "sent")
    assert again_later.json()["eventId"] == "evt-1"
    assert again_later.json()["status"] == "sent"
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert again_later.json()["result"]["messageId"] == message["id"]
    assert len(bot_messages(tb, general)) == 1


async def test_updated_and_deleted_events_carrying_only_the_apps_id_edit_and_delete(tb, slack_ws, slack):
    general = slack_ws["general"]
    await tb.post_event(created("evt-1", general, text="first", app_id="app-msg-1"))
    await tb.settle()
    updated = await tb.post_event(event("evt-2", "message.updated", message={"id": "app-msg-1", "text": "second"}))
    assert updated.status_code == 202, updated.text
    await tb.settle()
    [sent] = bot_messages(tb, general)
    assert sent["text"] == "second" and sent["edited_ts"] is not None
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert message["text"] == "second" and message["editedAt"] is not None
    deleted = await tb.post_event(event("evt-3", "message.deleted", message={"id": "app-msg-1"}))
    assert deleted.status_code == 202, deleted.text
    await tb.settle()
    assert bot_messages(tb, general)[0]["deleted"] is True
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert message["deletedAt"] is not None


async def test_an_update_taken_after_the_delete_is_never_sent_nor_stored(tb, slack_ws, slack):
    general = slack_ws["general"]
    await tb.post_event(created("evt-1", general, text="first", app_id="app-msg-1"))
    await tb.settle()
    # The app deleted, then (late) updated: the delete is claimed first.
    await tb.post_event(event("evt-2", "message.deleted", message={"id": "app-msg-1"}))
    await tb.post_event(event("evt-3", "message.updated", message={"id": "app-msg-1", "text": "after death"}))
    await tb.settle()
    [sent] = bot_messages(tb, general)
    assert sent["deleted"] is True and sent["text"] == "first" and sent.get("edited_ts") is None
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert message["deletedAt"] is not None and message["text"] == "first" and message["editedAt"] is None
    again = (await tb.post_event(event("evt-3", "message.updated", message={"id": "app-msg-1", "text": "x"}))).json()
    assert again["status"] == "sent" and again["result"]["skipped"] == "the message was deleted"


async def test_an_app_edit_is_stored_with_the_time_of_the_edit(tb, slack_ws, slack, sim_clock):
    general = slack_ws["general"]
    await tb.post_event(created("evt-1", general, text="first", app_id="app-msg-1"))
    await tb.settle()
    sim_clock.advance(5)
    await tb.post_event(event("evt-2", "message.updated", message={"id": "app-msg-1", "text": "second"}))
    await tb.settle()
    [sent] = bot_messages(tb, general)
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert message["editedAt"] > message["sentAt"]
    assert message["editedAt"][:19] == datetime.fromtimestamp(float(sent["edited_ts"]), UTC).strftime(
        "%Y-%m-%dT%H:%M:%S")


async def test_an_echo_delivered_before_the_send_reply_returns_stores_one_message(tb, slack_ws, slack):
    general = slack_ws["general"]
    answers = []

    async def echo_first(delivery):
        answers.append(await tb.deliver_slack(slack, delivery))
        await drain_inbox(tb)  # the echo is stored before chat.postMessage answers

    tb.slack.on_echo = echo_first
    await tb.post_event(created("evt-1", general, text="racing the echo", app_id="app-msg-1"))
    await tb.settle()
    assert [a.status_code for a in answers] == [200]
    found = [m for m in await chat_messages(tb, slack, general) if m["text"] == "racing the echo"]
    assert len(found) == 1
    assert found[0]["origin"] == "app"
    assert found[0]["appMessageId"] == "app-msg-1"
    assert found[0]["externalMessageId"] == f"{general}:{bot_messages(tb, general)[0]['ts']}"


async def test_an_echo_delivered_after_the_send_reply_stores_one_message(tb, slack_ws, slack):
    general = slack_ws["general"]
    await tb.post_event(created("evt-1", general, text="echo comes later", app_id="app-msg-1"))
    await tb.settle()
    [echo] = tb.slack.echoes
    assert (await tb.deliver_slack(slack, echo)).status_code == 200
    await tb.settle()
    found = [m for m in await chat_messages(tb, slack, general) if m["text"] == "echo comes later"]
    assert len(found) == 1
    assert (found[0]["origin"], found[0]["appMessageId"]) == ("app", "app-msg-1")


async def test_a_platform_error_dead_letters_the_event_and_marks_the_message_failed(tb, slack):
    response = await tb.post_event(created("evt-1", "C0NOSUCH", text="nowhere to go", app_id="app-msg-1"))
    assert response.status_code == 202
    await tb.settle()
    dead = await tb.daemon.store.list_outbox(status="dead")
    assert [d.idempotency_key for d in dead] == ["evt-1"]
    assert "channel_not_found" in dead[0].error
    [message] = await stored_by_app_id(tb, slack, "C0NOSUCH", "app-msg-1")
    assert message["deliveryState"] == "failed"
    assert message["externalMessageId"] is None
    again = await tb.post_event(created("evt-1", "C0NOSUCH", text="nowhere to go", app_id="app-msg-1"))
    assert again.json()["status"] == "dead"


async def test_a_rate_limit_is_waited_out_and_the_message_sent_once(tb, slack_ws, slack):
    general = slack_ws["general"]
    tb.slack.faults.fail_next("chat.postMessage", "rate_limit", retry_after_s=1)
    await tb.post_event(created("evt-1", general, text="after the rate limit", app_id="app-msg-1"))
    await tb.settle()
    assert tb.slack.faults.calls["chat.postMessage"] == 2
    assert [m["text"] for m in bot_messages(tb, general)] == ["after the rate limit"]
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert message["deliveryState"] == "sent"


async def test_an_update_posted_before_its_create_is_delivered_waits_for_it(tb, slack_ws, slack):
    general = slack_ws["general"]
    # The create fails past the HTTP retries, so it is rescheduled and the update comes first.
    tb.slack.faults.fail_next("chat.postMessage", "server_error", times=tb.daemon.settings.http_max_retries + 1)
    await tb.post_event(created("evt-1", general, text="draft", app_id="app-msg-1"))
    await tb.post_event(event("evt-2", "message.updated", message={"id": "app-msg-1", "text": "final"}))
    await tb.settle()
    assert [m["text"] for m in bot_messages(tb, general)] == ["final"]
    [message] = await stored_by_app_id(tb, slack, general, "app-msg-1")
    assert message["text"] == "final"
    assert await tb.daemon.store.list_outbox(status="dead") == []


async def test_a_created_event_on_a_gmail_thread_is_sent_as_a_reply_in_it(tb, gmail_thread, gmail):
    body = {"id": "evt-1", "type": "message.created", "customerId": "cust-1", "platform": "gmail",
            "externalChatId": gmail_thread, "message": {"id": "app-mail-1", "text": "Shipped today"}}
    assert (await tb.post_event(body)).status_code == 202
    await tb.settle()
    thread = tb.gmail.truth(gmail_thread)
    reply = thread[-1]
    assert reply["text"].strip() == "Shipped today"
    assert reply["from"] == tb.gmail.address
    assert reply["inReplyTo"] == thread[-2]["messageId"]
    assert reply["subject"] == "Re: Order #1001"
    [message] = [m for m in await chat_messages(tb, gmail, gmail_thread) if m["appMessageId"] == "app-mail-1"]
    assert (message["externalMessageId"], message["origin"]) == (reply["id"], "app")


async def test_editing_an_email_is_refused_with_422_and_deleting_it_trashes_it(tb, gmail_thread, gmail):
    body = {"id": "evt-1", "type": "message.created", "customerId": "cust-1", "platform": "gmail",
            "externalChatId": gmail_thread, "message": {"id": "app-mail-1", "text": "Oops"}}
    await tb.post_event(body)
    await tb.settle()
    edit = {**body, "id": "evt-2", "type": "message.updated", "message": {"id": "app-mail-1", "text": "Better"}}
    assert_error(await tb.post_event(edit), 422, "unsupported")
    delete = {**body, "id": "evt-3", "type": "message.deleted", "message": {"id": "app-mail-1"}}
    assert (await tb.post_event(delete)).status_code == 202
    await tb.settle()
    assert tb.gmail.truth(gmail_thread)[-1]["trashed"] is True
    [message] = [m for m in await chat_messages(tb, gmail, gmail_thread) if m["appMessageId"] == "app-mail-1"]
    assert message["deletedAt"] is not None
