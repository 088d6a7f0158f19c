"""Telegram through the HTTP API: the integration and its generated secret, the webhook
registered by maintenance, secret-token checks, updates (documented and simulated),
duplicates, edits, channel posts, app events sent to the simulator, and getUpdates polling
when syncd has no public URL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from apisupport import (
    assert_error,
    chat_messages,
    find_message,
    inbox_counts,
    load_fixture,
)
from structlog.testing import capture_logs

from syncd.providers.telegram.sim import (
    DEFAULT_TOKEN,
    TelegramDelivery,
    TelegramSimulator,
)
from syncd.testbed import Testbed

FIXTURE = load_fixture("telegram")
DOCUMENTED = next(s for s in FIXTURE["samples"] if s["description"].startswith("Update with a text message"))


@pytest.fixture
def sim() -> TelegramSimulator:
    sim = TelegramSimulator()
    sim.seed()
    return sim


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"telegram": sim})
    yield tb
    await tb.stop()


@pytest.fixture
async def polling_tb(sim):
    """A syncd with no public URL: Telegram cannot reach its webhooks."""
    tb = await Testbed.start(sims={"telegram": sim}, public_url=None)
    yield tb
    await tb.stop()


async def connect(tb: Testbed, **credentials: Any) -> dict[str, Any]:
    """A Telegram integration, its maintenance run (the webhook registered or deleted)."""
    integration = await tb.create("telegram", {"botToken": DEFAULT_TOKEN, **credentials})
    await tb.engine.maintain(integration["id"])
    return integration


@pytest.fixture
async def telegram(tb) -> dict[str, Any]:
    return await connect(tb)


async def deliver(tb: Testbed, integration: dict[str, Any], delivery: TelegramDelivery, **headers: str):
    return await tb.api.post(tb.webhook_url(integration), content=delivery.body,
                             headers={**delivery.headers, **headers})


def secret_of(sim: TelegramSimulator) -> str:
    return sim.webhook_of()["secret_token"]


def event(event_id: str, type_: str = "message.created", **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "customerId": "cust-1", "platform": "telegram", **fields}


# -- the integration ------------------------------------------------------------------------

async def test_a_bot_token_alone_connects_and_maintenance_registers_the_webhook_with_a_new_secret(tb, sim):
    with capture_logs() as logs:
        integration = await connect(tb)
        answers = [json.dumps(integration)]
        own = f"/integrations/{integration['id']}"
        for path in (own, "/integrations", f"{own}/status"):
            answers.append((await tb.api.get(path)).text)
    webhook = sim.webhook_of()
    assert webhook["url"] == integration["webhookUrl"]
    assert webhook["allowed_updates"] == ["message", "edited_message", "channel_post", "edited_channel_post"]
    secret = secret_of(sim)
    assert len(secret) >= 32
    for text in [*answers, repr(logs)]:
        assert secret not in text and DEFAULT_TOKEN not in text
    selves = (await tb.api.get("/user-platforms", params={"customerId": "cust-1"})).json()["userPlatforms"]
    assert [(u["externalUserId"], u["displayName"], u["isSelf"]) for u in selves] == [
        (str(sim.bot.id), "Sync Bot", True)]


async def test_a_given_secret_token_is_the_one_registered(tb, sim):
    await connect(tb, secretToken="my-Secret_token-123")
    assert secret_of(sim) == "my-Secret_token-123"


@pytest.mark.parametrize(("credentials", "field"), [
    ({"botToken": "not-a-token"}, "botToken"),
    ({"botToken": DEFAULT_TOKEN, "secretToken": "spaces are not allowed"}, "secretToken"),
])
async def test_malformed_credentials_answer_422_without_echoing_them(tb, credentials, field):
    response = await tb.api.post("/integrations", json={"platform": "telegram", "customerId": "cust-1",
                                                        "credentials": credentials})
    error = assert_error(response, 422, "invalid_credentials")
    assert [d["field"] for d in error["details"]] == [field]
    assert credentials[field] not in response.text


async def test_a_bot_token_telegram_does_not_know_answers_422(tb, sim):
    unknown = "7000000002:AAHnobodyKnowsThisBotTokenAtAll_12345"
    response = await tb.api.post("/integrations", json={"platform": "telegram", "customerId": "cust-1",
                                                        "credentials": {"botToken": unknown}})
    assert_error(response, 422, "credentials_rejected")
    assert unknown not in response.text


# -- webhooks ---------------------------------------------------------------------------------

async def test_the_documented_update_is_stored_field_by_field(tb, sim, telegram):
    body = json.dumps(DOCUMENTED["payload"]).encode()
    response = await tb.api.post(tb.webhook_url(telegram), content=body, headers={
        "content-type": "application/json", "x-telegram-bot-api-secret-token": secret_of(sim)})
    assert response.status_code == 200, response.text
    await tb.settle()
    chat = (await tb.chats(telegram))["1111111"]
    assert (chat["name"], chat["kind"], chat["participants"]) == ("Test Firstname Test Lastname", "dm", ["1111111"])
    [message] = await tb.messages(chat["id"])
    assert message["externalMessageId"] == "1111111:1365"
    assert message["sender"] == {"externalUserId": "1111111", "email": None, "name": "Test Firstname Test Lastname"}
    assert (message["text"], message["sentAt"]) == ("/start", "2015-09-07T17:05:32Z")
    assert (message["direction"], message["origin"], message["externalThreadId"]) == ("inbound", "platform", None)


@pytest.mark.parametrize("secret", [None, "wrong-secret", "case"])
async def test_a_delivery_with_a_missing_or_wrong_secret_answers_401_and_stores_nothing(tb, sim, telegram, secret):
    delivery = sim.user_message(sim.ids["group"], sim.ids["bob"], "forged")
    headers = {"Content-Type": "application/json"}
    if secret == "case":
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret_of(sim).swapcase()
    elif secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    response = await tb.api.post(tb.webhook_url(telegram), content=delivery.body, headers=headers)
    assert_error(response, 401, "bad_signature")
    await tb.settle()
    assert await chat_messages(tb, telegram, str(sim.ids["group"])) == []
    assert await inbox_counts(tb, telegram) == {"pending": 0, "done": 0, "failed": 0}


async def test_the_same_update_delivered_three_times_stores_one_message(tb, sim, telegram):
    delivery = sim.user_message(sim.ids["supergroup"], sim.ids["alice"], "only once")
    for _ in range(3):
        assert (await deliver(tb, telegram, delivery)).status_code == 200
    await tb.settle()
    stored = await chat_messages(tb, telegram, str(sim.ids["supergroup"]))
    assert [m["text"] for m in stored] == ["only once"]
    assert (await inbox_counts(tb, telegram))["done"] == 1


async def test_an_edited_message_updates_the_stored_text(tb, sim, telegram):
    group = sim.ids["group"]
    await deliver(tb, telegram, sim.user_message(group, sim.ids["bob"], "typo hre"))
    await deliver(tb, telegram, sim.edit_user_message(group, 1, "typo here"))
    await tb.settle()
    [message] = await chat_messages(tb, telegram, str(group))
    assert (message["externalMessageId"], message["text"]) == (f"{group}:1", "typo here")
    assert message["editedAt"] is not None


async def test_channel_posts_and_replies_are_stored_with_their_chat_and_thread(tb, sim, telegram):
    channel, supergroup = sim.ids["channel"], sim.ids["supergroup"]
    await deliver(tb, telegram, sim.channel_post(channel, "we launched"))
    await deliver(tb, telegram, sim.user_message(supergroup, sim.ids["alice"], "question"))
    await deliver(tb, telegram, sim.user_message(supergroup, sim.ids["bob"], "answer", reply_to=1))
    await tb.settle()
    chats = await tb.chats(telegram)
    assert (chats[str(channel)]["name"], chats[str(channel)]["kind"]) == ("Announcements", "channel")
    assert (chats[str(supergroup)]["name"], chats[str(supergroup)]["kind"]) == ("Support", "group")
    [post] = await chat_messages(tb, telegram, str(channel))
    assert post["sender"]["externalUserId"] == str(channel) and post["sender"]["name"] == "Announcements"
    answer = await find_message(tb, telegram, str(supergroup), f"{supergroup}:2")
    assert answer["externalThreadId"] == f"{supergroup}:1"


# -- app events --------------------------------------------------------------------------------

async def test_app_messages_are_sent_edited_and_deleted_at_telegram(tb, sim, telegram):
    group = str(sim.ids["supergroup"])
    sim.faults.fail_next("sendMessage", "rate_limit", retry_after_s=3)
    await tb.post_event(event("evt-1", externalChatId=group, message={"id": "app-1", "text": "hello"}))
    await tb.settle()
    assert [m["text"] for m in sim.truth(group)] == ["hello"]
    [stored] = await chat_messages(tb, telegram, group)
    assert (stored["externalMessageId"], stored["direction"], stored["origin"]) == (f"{group}:1", "outbound", "app")

    await tb.post_event(event("evt-2", "message.updated", message={"id": "app-1", "text": "hello, edited"}))
    await tb.settle()
    assert sim.truth(group)[0]["text"] == "hello, edited"
    await tb.post_event(event("evt-3", "message.deleted", message={"id": "app-1"}))
    await tb.settle()
    assert sim.truth(group) == []
    [tombstone] = await chat_messages(tb, telegram, group)
    assert tombstone["deletedAt"] is not None and tombstone["text"] == "hello, edited"


async def test_the_bots_own_message_arriving_as_an_update_merges_into_the_app_message(tb, sim, telegram):
    group = str(sim.ids["group"])
    await tb.post_event(event("evt-1", externalChatId=group, message={"id": "app-1", "text": "from the app"}))
    await tb.settle()
    await deliver(tb, telegram, sim.message_update(int(group), 1))
    await tb.settle()
    [stored] = await chat_messages(tb, telegram, group)
    assert (stored["appMessageId"], stored["origin"], stored["direction"]) == ("app-1", "app", "outbound")


async def test_a_send_telegram_refuses_is_dead_lettered_without_the_token(tb, sim, telegram):
    await tb.post_event(event("evt-1", externalChatId="-100999", message={"id": "app-1", "text": "nobody"}))
    await tb.settle()
    item = await tb.daemon.store.find_outbox("cust-1", "evt-1")
    assert item.status == "dead" and "chat not found" in item.error
    assert DEFAULT_TOKEN not in item.error


# -- without a public URL: getUpdates --------------------------------------------------------

async def test_without_a_public_url_updates_are_polled_once_each_and_no_409_is_hit(polling_tb, sim):
    tb = polling_tb
    sim.bot.webhook = {"url": "https://old.example/hook", "secret_token": "old", "allowed_updates": None,
                       "max_connections": 40}  # left by an earlier deployment
    integration = await connect(tb)
    assert sim.webhook_of() is None
    group = sim.ids["group"]
    for text in ("first", "second"):
        sim.user_message(group, sim.ids["bob"], text)
    await tb.engine.poll(integration["id"])
    sim.user_message(group, sim.ids["alice"], "third")
    await tb.engine.poll(integration["id"])
    await tb.engine.poll(integration["id"])
    stored = await chat_messages(tb, integration, str(group))
    assert sorted(m["text"] for m in stored) == ["first", "second", "third"]
    assert (await tb.chats(integration))[str(group)]["name"] == "Ops team"
    assert sim.pending() == [] and sim.conflicts == 0


async def test_with_a_public_url_polling_never_calls_get_updates(tb, sim, telegram):
    sim.user_message(sim.ids["group"], sim.ids["bob"], "comes by webhook")
    await tb.engine.poll(telegram["id"])
    assert sim.faults.calls["getUpdates"] == 0 and sim.conflicts == 0
