"""Gmail Pub/Sub pushes: authenticated by the secret ``token`` query parameter, read through
``history.list``, deduplicated by the push's message id."""

from __future__ import annotations

import pytest
from apisupport import assert_error, chat_messages, inbox_counts

from syncd.testbed import BASE, GMAIL_PUSH_TOKEN


async def push(tb, integration, body: bytes, headers: dict[str, str], token: str | None = GMAIL_PUSH_TOKEN):
    query = f"?token={token}" if token is not None else ""
    return await tb.api.post(f"{tb.webhook_url(integration)}{query}", content=body, headers=headers)


async def test_a_push_with_the_right_token_imports_the_new_email(tb, gmail_thread, gmail):
    tb.gmail.add_incoming(gmail_thread, "Guilherme Dias <email@domain.com>", "Re: Order #1001", "Shipped yet?")
    response = await tb.push_gmail(gmail)
    assert response.status_code in (200, 204), response.text
    await tb.settle()
    texts = [m["text"].strip() for m in await chat_messages(tb, gmail, gmail_thread)]
    assert texts == ["Shipped yet?", "Any news?", "Where is my order?"]


async def test_a_push_about_a_new_thread_creates_its_chat(tb, gmail_thread, gmail):
    thread = tb.gmail.add_incoming(None, "Ana Lima <ana@example.org>", "Invoice 7", "Please pay")
    await tb.push_gmail(gmail)
    await tb.settle()
    chats = await tb.chats(gmail)
    assert chats[thread]["name"] == "Invoice 7"
    assert [m["text"].strip() for m in await tb.messages(chats[thread]["id"])] == ["Please pay"]


@pytest.mark.parametrize("token", ["wrong-token", "", None])
async def test_a_push_with_a_wrong_or_missing_token_answers_401_and_stores_nothing(tb, gmail_thread, gmail, token):
    tb.gmail.add_incoming(gmail_thread, "Guilherme Dias <email@domain.com>", "Re: Order #1001", "Not via push")
    body, headers = tb.gmail.push_notification()
    assert_error(await push(tb, gmail, body, headers, token), 401)
    await tb.settle()
    assert await inbox_counts(tb, gmail) == {"pending": 0, "done": 0, "failed": 0}
    assert "Not via push" not in [m["text"].strip() for m in await chat_messages(tb, gmail, gmail_thread)]


async def test_the_same_push_delivered_twice_is_stored_once(tb, gmail_thread, gmail):
    tb.gmail.add_incoming(gmail_thread, "Guilherme Dias <email@domain.com>", "Re: Order #1001", "Hello twice")
    body, headers = tb.gmail.push_notification()
    for _ in range(2):
        assert (await push(tb, gmail, body, headers)).status_code in (200, 204)
    await tb.settle()
    assert await inbox_counts(tb, gmail) == {"pending": 0, "done": 1, "failed": 0}
    texts = [m["text"].strip() for m in await chat_messages(tb, gmail, gmail_thread)]
    assert texts.count("Hello twice") == 1


async def test_the_sender_is_parsed_and_the_accounts_own_email_is_outbound(tb, gmail_thread, gmail):
    tb.gmail.add_incoming(gmail_thread, f"Support Desk <{tb.gmail.address}>", "Re: Order #1001", "On its way",
                          to="email@domain.com")
    await tb.push_gmail(gmail)
    await tb.settle()
    messages = {m["text"].strip(): m for m in await chat_messages(tb, gmail, gmail_thread)}
    theirs, ours = messages["Any news?"], messages["On its way"]
    assert theirs["sender"]["name"] == "Guilherme Dias"
    assert theirs["sender"]["email"] == "email@domain.com"
    assert theirs["direction"] == "inbound"
    assert ours["sender"] == {**ours["sender"], "name": "Support Desk", "email": tb.gmail.address}
    assert ours["direction"] == "outbound"
    assert ours["origin"] == "platform"


async def test_a_push_that_keeps_failing_is_parked_and_shown_in_status_and_metrics(make_tb, anon_client):
    tb = await make_tb(inbox_max_attempts=2, http_max_retries=0)
    thread = tb.gmail.add_incoming(None, "Ana Lima <ana@example.org>", "Invoice 7", "Please pay")
    gmail = await tb.create_gmail()
    tb.gmail.faults.fail_next("history.list", "server_error", times=10)
    tb.gmail.add_incoming(thread, "Ana Lima <ana@example.org>", "Re: Invoice 7", "Reminder")
    assert (await tb.push_gmail(gmail)).status_code in (200, 204)
    await tb.settle()
    status = (await tb.api.get(f"/integrations/{gmail['id']}/status")).json()
    assert status["inbox"]["failed"] == 1
    [failed] = status["failedDeliveries"]
    assert failed["attempts"] == 2
    assert "503" in failed["error"]
    metrics = (await anon_client(tb).get("/metrics")).text
    assert "syncd_inbox_failed 1.0" in metrics


async def test_a_trashed_or_deleted_email_becomes_a_tombstone_after_the_push(tb, gmail_thread, gmail):
    thread = tb.gmail.truth(gmail_thread)
    tb.gmail.trash(thread[0]["id"])
    tb.gmail.delete(thread[1]["id"])
    await tb.push_gmail(gmail)
    await tb.settle()
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, gmail, gmail_thread)}
    assert stored[thread[0]["id"]]["deletedAt"] is not None
    assert stored[thread[1]["id"]]["deletedAt"] is not None


async def test_a_push_after_the_history_expired_still_brings_the_new_email(tb, gmail_thread, gmail):
    tb.gmail.add_incoming(gmail_thread, "Guilherme Dias <email@domain.com>", "Re: Order #1001", "After the gap")
    tb.gmail.expire_history()
    await tb.push_gmail(gmail)
    await tb.settle()
    await tb.wait_imported(gmail["id"])
    texts = [m["text"].strip() for m in await chat_messages(tb, gmail, gmail_thread)]
    assert texts.count("After the gap") == 1
    assert len(texts) == 3


async def test_without_a_push_token_one_is_generated_and_shown_once_in_the_push_url(tb, gmail_thread):
    token = next(t for t, a in tb.gmail.tokens.items() if a == tb.gmail.address)
    response = await tb.api.post("/integrations", json={"platform": "gmail", "customerId": "cust-1", "credentials": {
        "accessToken": token, "emailAddress": tb.gmail.address}})
    assert response.status_code == 201, response.text
    created = response.json()["integration"]
    generated = (await tb.daemon.store.get_credentials(created["id"]))["pushToken"]
    assert len(generated) >= 32
    assert created["setup"]["webhookUrl"] == created["webhookUrl"]
    assert created["webhookUrl"].endswith(f"?token={generated}")
    listed = (await tb.api.get("/integrations")).text + (await tb.api.get(f"/integrations/{created['id']}")).text
    assert generated not in listed and "setup" not in listed
    await tb.wait_imported(created["id"])

    tb.gmail.add_incoming(gmail_thread, "Guilherme Dias <email@domain.com>", "Re: Order #1001", "Pushed in")
    body, headers = tb.gmail.push_notification()
    pushed = await tb.api.post(created["webhookUrl"].replace(BASE, ""), content=body, headers=headers)
    assert pushed.status_code in (200, 202, 204), pushed.text
    await tb.settle()
    assert "Pushed in" in [m["text"].strip() for m in await chat_messages(tb, created, gmail_thread)]
