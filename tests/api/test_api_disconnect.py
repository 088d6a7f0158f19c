"""A clean disconnect: ``DELETE /integrations/{id}`` undoes at the platform what syncd set up
there (Teams subscriptions, Telegram's webhook, Gmail's watch), retries in the background when
the platform cannot be reached, wipes the credentials, lists what the user must remove by
hand, and with ``?purge=true`` removes the synced data. A reconnect reuses the stored data."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from apisupport import assert_error

from syncd.providers.teams.sim import TeamsDelivery, TeamsSimulator
from syncd.providers.telegram.sim import DEFAULT_TOKEN, TelegramSimulator
from syncd.sim.base import FaultPlan
from syncd.testbed import BASE, Testbed

TOPIC = "projects/myproject/topics/mytopic"


async def stored_doc(tb: Testbed, integration: dict[str, Any]) -> dict[str, Any]:
    return await tb.daemon.store.integrations.find_one({"_id": integration["id"]})


async def delete(tb: Testbed, integration: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = await tb.api.delete(f"/integrations/{integration['id']}{query}")
    assert response.status_code == 200, response.text
    return response.json()["deleted"]


async def maintained(tb: Testbed, integration: dict[str, Any]) -> None:
    await tb.engine.wait_background()  # the maintenance run started at creation
    statuses = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
    assert next(s for s in statuses if s["chatId"] is None)["maintainedAt"] is not None


# -- Slack: nothing syncd can undo; data, purge and reconnect ----------------------------------

async def test_delete_wipes_the_credentials_and_names_what_the_user_must_remove(tb, slack):
    assert "credentials" in await stored_doc(tb, slack)
    deleted = await delete(tb, slack)
    assert deleted["disconnect"]["state"] == "done"
    assert deleted["purged"] is None
    assert any("Event Subscriptions" in step for step in deleted["leftAtPlatform"])
    assert "credentials" not in await stored_doc(tb, slack)
    assert_error(await tb.api.get(f"/integrations/{slack['id']}"), 404, "not_found")


async def test_without_purge_the_data_stays_readable(tb, slack, slack_ws):
    chats = await tb.chats(slack)
    await delete(tb, slack)
    assert await tb.chats(slack) == chats
    assert len(await tb.messages(chats[slack_ws["general"]]["id"])) == 6


async def test_purge_removes_chats_messages_mappings_and_status_and_counts_them(tb, slack, slack_ws):
    chat_id = (await tb.chats(slack))[slack_ws["general"]]["id"]
    # The import listed the workspace's people (users.list) besides the bot's own two ids.
    users = len((await tb.api.get("/user-platforms", params={"customerId": "cust-1"})).json()["userPlatforms"])
    assert users > 2
    deleted = await delete(tb, slack, "?purge=true")
    assert deleted["purged"] == {"chats": 4, "messages": 9, "userPlatforms": users, "syncStatus": 5}
    assert await tb.chats(slack) == {}
    assert_error(await tb.api.get(f"/chats/{chat_id}/messages"), 404)
    assert (await tb.api.get("/user-platforms", params={"customerId": "cust-1"})).json()["userPlatforms"] == []


async def test_a_purge_value_that_is_not_a_boolean_is_refused(tb, slack):
    assert_error(await tb.api.delete(f"/integrations/{slack['id']}?purge=yes"), 422)
    assert (await tb.api.get(f"/integrations/{slack['id']}")).status_code == 200


async def test_deleting_twice_answers_404(tb, slack):
    await delete(tb, slack)
    assert_error(await tb.api.delete(f"/integrations/{slack['id']}"), 404, "not_found")


async def test_a_reconnect_reuses_the_stored_chats_and_messages_once_each(tb, slack, slack_ws):
    before = {ext: len(await tb.messages(c["id"])) for ext, c in (await tb.chats(slack)).items()}
    await delete(tb, slack)
    again = await tb.create_slack()
    chats = await tb.chats(again)
    assert set(chats) == set(before)
    for ext, chat in chats.items():
        messages = await tb.messages(chat["id"])
        assert len(messages) == before[ext]
        assert len({m["externalMessageId"] for m in messages}) == len(messages)
        assert {m["integrationId"] for m in messages} == {again["id"]}
    assert await tb.chats(slack) == {}  # every chat points at the new integration


# -- platforms with something to undo -------------------------------------------------------------

@pytest.fixture
def telegram_sim() -> TelegramSimulator:
    sim = TelegramSimulator()
    sim.seed()
    return sim


@pytest.fixture
def teams_sim() -> TeamsSimulator:
    sim = TeamsSimulator()
    sim.seed()
    return sim


@pytest.fixture
async def lifecycle_tb(telegram_sim, teams_sim):
    tb = await Testbed.start(sims={"telegram": telegram_sim, "teams": teams_sim})

    async def validate(delivery: TeamsDelivery) -> tuple[int, str, str]:
        response = await tb.api.post(delivery.target(BASE), content=delivery.body, headers=delivery.headers)
        return response.status_code, response.headers.get("content-type", ""), response.text

    teams_sim.validator = validate
    yield tb
    await tb.stop()


async def test_delete_removes_telegrams_webhook(lifecycle_tb, telegram_sim):
    tb = lifecycle_tb
    telegram = await tb.create("telegram", {"botToken": DEFAULT_TOKEN})
    await maintained(tb, telegram)
    assert telegram_sim.webhook_of()["url"].endswith(telegram["id"])
    deleted = await delete(tb, telegram)
    assert deleted["disconnect"]["state"] == "done" and deleted["leftAtPlatform"] == []
    assert telegram_sim.webhook_of() is None


async def test_delete_deletes_the_teams_subscriptions(lifecycle_tb, teams_sim):
    tb = lifecycle_tb
    teams = await tb.create_teams()
    await maintained(tb, teams)
    assert len(teams_sim.subscriptions) >= 2
    await delete(tb, teams)
    assert teams_sim.subscriptions == {}
    assert teams_sim.faults.calls["subscriptions.delete"] >= 2


async def test_delete_stops_the_gmail_watch(tb, gmail_thread):
    gmail = await tb.create_gmail(settings={"pubsubTopic": TOPIC})
    await maintained(tb, gmail)
    assert [w["topicName"] for w in tb.gmail.watches] == [TOPIC]
    await delete(tb, gmail)
    assert tb.gmail.watches == [] and tb.gmail.stopped == [tb.gmail.address]


async def test_a_disconnect_the_platform_refuses_now_is_retried_in_the_background(lifecycle_tb, telegram_sim):
    tb = lifecycle_tb
    telegram = await tb.create("telegram", {"botToken": DEFAULT_TOKEN})
    await maintained(tb, telegram)
    telegram_sim.faults.fail_next("getWebhookInfo", "server_error", times=50)
    deleted = await delete(tb, telegram)  # answered, not blocked by the failing platform
    assert deleted["disconnect"]["state"] == "pending" and deleted["disconnect"]["lastError"]
    assert_error(await tb.api.get(f"/integrations/{telegram['id']}"), 404)
    assert telegram_sim.webhook_of() is not None
    assert "credentials" in await stored_doc(tb, telegram)  # still needed to undo it

    telegram_sim.faults.reset()
    tb.clock.advance(3600)
    await tb.engine.retry_disconnects()
    assert telegram_sim.webhook_of() is None
    doc = await stored_doc(tb, telegram)
    assert "credentials" not in doc and doc["disconnect"]["state"] == "done"


async def test_a_disconnect_that_keeps_failing_is_given_up_and_the_credentials_wiped(make_tb):
    sim = TelegramSimulator()
    sim.seed()
    tb = await make_tb(sims={"telegram": sim}, disconnect_max_attempts=2)
    telegram = await tb.create("telegram", {"botToken": DEFAULT_TOKEN})
    await maintained(tb, telegram)
    sim.faults.fail_next("getWebhookInfo", "server_error", times=1000)
    assert (await delete(tb, telegram))["disconnect"]["state"] == "pending"
    tb.clock.advance(3600)
    await tb.engine.retry_disconnects()
    doc = await stored_doc(tb, telegram)
    assert "credentials" not in doc and doc["disconnect"]["state"] == "given_up"
    assert any("could not be removed" in step for step in doc["disconnect"]["leftAtPlatform"])
    tb.clock.advance(3600)
    await tb.engine.retry_disconnects()  # nothing left to retry
    assert (await stored_doc(tb, telegram))["disconnect"]["attempts"] == 2


async def test_a_slow_platform_does_not_hold_the_delete(make_tb):
    sim = TelegramSimulator()
    sim.seed()
    tb = await make_tb(sims={"telegram": sim}, disconnect_timeout_s=0.2)
    telegram = await tb.create("telegram", {"botToken": DEFAULT_TOKEN})
    await maintained(tb, telegram)
    sim.faults.plan = FaultPlan(latency_s=5, endpoints=frozenset({"getWebhookInfo"}))
    loop = asyncio.get_running_loop()
    started = loop.time()
    deleted = await delete(tb, telegram)
    assert loop.time() - started < 3
    assert deleted["disconnect"]["state"] == "pending" and "Timeout" in deleted["disconnect"]["lastError"]
