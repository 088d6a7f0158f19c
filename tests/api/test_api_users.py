"""The platform's users: an import lists them into user_platforms, and messages that carry only
a sender id (Slack's history pages, its message events) get the sender's real name."""

from __future__ import annotations

import asyncio

from apisupport import chat_messages

from syncd.engine import users as users_module


async def user_platforms(tb, customer: str = "cust-1") -> dict[str, dict]:
    listed = (await tb.api.get("/user-platforms", params={"customerId": customer})).json()["userPlatforms"]
    return {u["externalUserId"]: u for u in listed}


async def test_an_import_keeps_the_workspace_users_with_their_names_and_emails(tb, slack_ws, slack):
    users = await user_platforms(tb)
    alice = users[slack_ws["alice"]]
    assert (alice["displayName"], alice["externalEmail"], alice["isSelf"]) == ("Alice Archer", "alice@example.com", False)
    assert alice["integrationId"] == slack["id"]
    assert {slack_ws["bob"], slack_ws["carol"]} <= set(users)


async def test_listing_the_users_keeps_the_bot_as_the_customers_own_account(tb, slack_ws, slack):
    # users.list includes the bot user, which identify marked as self: the listing must not clear it.
    bot = (await user_platforms(tb))[tb.slack.bot_user_id]
    assert bot["isSelf"] is True


async def test_imported_messages_carry_the_real_names_from_the_users_list(tb, slack_ws, slack):
    messages = await chat_messages(tb, slack, slack_ws["general"])
    names = {m["text"]: m["sender"]["name"] for m in messages}
    assert names["Good morning"] == "Alice Archer"
    assert names["Morning! Standup at 10?"] == "Bob Baker"
    # Thread replies, pulled in with conversations.replies, are named too.
    assert names["QA Thursday"] == "Carol Cole"


async def test_a_webhook_message_from_a_known_user_is_named(tb, slack_ws, slack):
    delivery = tb.slack.post_user_message(slack_ws["general"], "named on arrival", slack_ws["bob"])
    assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    await tb.settle()
    [message] = [m for m in await chat_messages(tb, slack, slack_ws["general"]) if m["text"] == "named on arrival"]
    assert message["sender"]["name"] == "Bob Baker"


async def test_a_sender_who_joined_after_the_import_is_listed_and_named(tb, slack_ws, slack):
    dave = tb.slack.add_user("dave", "Dave Dent", email="Dave@Example.com")
    delivery = tb.slack.post_user_message(slack_ws["general"], "hi, I am new", dave)
    # A listing right after the import is not repeated for a while: an unknown sender must be
    # able to cause one all the same once that while has passed.
    tb.daemon.engine.ctx.users.clock = lambda: 10**9
    assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    await tb.settle()
    [message] = [m for m in await chat_messages(tb, slack, slack_ws["general"]) if m["text"] == "hi, I am new"]
    assert message["sender"]["name"] == "Dave Dent"
    assert (await user_platforms(tb))[dave]["externalEmail"] == "dave@example.com"


async def test_an_unknown_sender_lists_the_users_at_most_once_in_a_while(tb, slack_ws, slack):
    calls = []
    original = tb.slack._users_list

    async def counted(params):
        calls.append(params)
        return await original(params)

    tb.slack._users_list = counted
    for i in range(3):
        delivery = tb.slack.post_user_message(slack_ws["general"], f"from a stranger {i}", "U0NOBODY")
        assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    await tb.settle()
    texts = {m["text"]: m["sender"] for m in await chat_messages(tb, slack, slack_ws["general"])}
    assert texts["from a stranger 2"]["externalUserId"] == "U0NOBODY" and texts["from a stranger 2"]["name"] is None
    # The import listed them moments ago: three unknown senders cause no new listing.
    assert calls == []


async def test_a_slow_listing_does_not_hold_up_the_messages_that_caused_it(tb, slack_ws, slack, monkeypatch):
    monkeypatch.setattr(users_module, "INLINE_WAIT_S", 0.05)
    release = asyncio.Event()
    original = tb.slack._users_list

    async def slow(params):
        await release.wait()
        return await original(params)

    tb.slack._users_list = slow
    erin = tb.slack.add_user("erin", "Erin Eve")
    tb.daemon.engine.ctx.users.clock = lambda: 10**9
    delivery = tb.slack.post_user_message(slack_ws["general"], "while the list is slow", erin)
    assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    await tb.settle()
    [message] = [m for m in await chat_messages(tb, slack, slack_ws["general"]) if m["text"] == "while the list is slow"]
    assert message["sender"]["name"] is None
    release.set()
    for _ in range(200):
        if erin in await user_platforms(tb):
            break
        await asyncio.sleep(0.01)
    assert (await user_platforms(tb))[erin]["displayName"] == "Erin Eve"
