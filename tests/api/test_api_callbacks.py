"""Callbacks to the app: every change that comes from a platform is POSTed to the app's
callback URL, signed (the fake app verifies it), and retried until acknowledged."""

from __future__ import annotations

import asyncio

from apisupport import drain_inbox


def ts_of(delivery) -> str:
    return delivery.payload["event"]["ts"]


async def callbacks_for(tb, external_message_id: str, kind: str | None = None, timeout_s: float = 10) -> list[dict]:
    """The callbacks the app received about one message (waits for the outbox to deliver them)."""
    await drain_inbox(tb)
    await tb.settle(timeout_s)

    def matching() -> list[dict]:
        return [c for c in tb.app.received
                if c["message"]["externalMessageId"] == external_message_id and kind in (None, c["type"])]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not matching() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return matching()


async def test_a_new_slack_message_reaches_the_app_as_message_created(tb, slack_ws, slack):
    general = slack_ws["general"]
    delivery = tb.slack.post_user_message(general, "tell the app", slack_ws["bob"])
    await tb.deliver_slack(slack, delivery)
    [callback] = await callbacks_for(tb, f"{general}:{ts_of(delivery)}", "message.created")
    assert callback["customerId"] == "cust-1"
    assert callback["platform"] == "slack"
    assert callback["message"]["text"] == "tell the app"
    assert callback["message"]["chatId"] == (await tb.chats(slack))[general]["id"]
    assert callback["id"]
    assert tb.app.rejected == 0


async def test_an_edit_reaches_the_app_as_message_updated(tb, slack_ws, slack, sim_clock):
    general = slack_ws["general"]
    delivery = tb.slack.post_user_message(general, "before", slack_ws["bob"])
    await tb.deliver_slack(slack, delivery)
    await drain_inbox(tb)
    sim_clock.advance(2)
    await tb.deliver_slack(slack, tb.slack.edit_message(general, ts_of(delivery), "after"))
    [callback] = await callbacks_for(tb, f"{general}:{ts_of(delivery)}", "message.updated")
    assert callback["message"]["text"] == "after"
    assert callback["message"]["editedAt"] is not None


async def test_a_delete_reaches_the_app_as_message_deleted(tb, slack_ws, slack):
    general = slack_ws["general"]
    delivery = tb.slack.post_user_message(general, "regrettable", slack_ws["bob"])
    await tb.deliver_slack(slack, delivery)
    await drain_inbox(tb)
    await tb.deliver_slack(slack, tb.slack.delete_message(general, ts_of(delivery)))
    [callback] = await callbacks_for(tb, f"{general}:{ts_of(delivery)}", "message.deleted")
    assert callback["message"]["deletedAt"] is not None


async def test_a_callback_the_app_refuses_with_503_is_retried_until_acknowledged(tb, slack_ws, slack):
    await tb.settle()
    tb.app.fail_next = 2
    general = slack_ws["general"]
    delivery = tb.slack.post_user_message(general, "try, try again", slack_ws["bob"])
    await tb.deliver_slack(slack, delivery)
    [callback] = await callbacks_for(tb, f"{general}:{ts_of(delivery)}", "message.created")
    assert callback["message"]["text"] == "try, try again"
    assert tb.app.fail_next == 0
    assert await tb.daemon.store.list_outbox(status="dead") == []


async def test_the_apps_own_messages_are_not_called_back_as_created(tb, slack_ws, slack):
    general = slack_ws["general"]
    await tb.settle()
    body = {"id": "evt-1", "type": "message.created", "customerId": "cust-1", "platform": "slack",
            "externalChatId": general, "message": {"id": "app-msg-1", "text": "from the app"}}
    await tb.post_event(body)
    await tb.settle()
    [echo] = tb.slack.echoes
    await tb.deliver_slack(slack, echo)
    await drain_inbox(tb)
    await tb.settle()
    assert [c for c in tb.app.received
            if c["type"] == "message.created" and c["message"]["text"] == "from the app"] == []


async def app_message_sent(tb, slack, general: str, text: str) -> dict:
    """The app posts ``text`` in ``general``; returns the Slack record of the sent message."""
    body = {"id": f"evt-{text}", "type": "message.created", "customerId": "cust-1", "platform": "slack",
            "externalChatId": general, "message": {"id": f"app-{text}", "text": text}}
    assert (await tb.post_event(body)).status_code == 202
    await tb.settle()
    [sent] = [m for m in tb.slack.truth(general) if m["text"] == text]
    return sent


async def test_the_late_echo_of_the_apps_own_message_is_not_called_back(tb, slack_ws, slack):
    general = slack_ws["general"]
    await tb.settle()
    sent = await app_message_sent(tb, slack, general, "from the app")
    [echo] = tb.slack.echoes
    await tb.deliver_slack(slack, echo)
    await drain_inbox(tb)
    await tb.settle()
    assert [c["type"] for c in tb.app.received
            if c["message"]["externalMessageId"] == f"{general}:{sent['ts']}"] == []


async def test_the_echo_of_the_apps_own_edit_is_not_called_back(tb, slack_ws, slack):
    general = slack_ws["general"]
    sent = await app_message_sent(tb, slack, general, "draft")
    edit = {"id": "evt-edit", "type": "message.updated", "customerId": "cust-1", "platform": "slack",
            "message": {"id": "app-draft", "text": "final"}}
    assert (await tb.post_event(edit)).status_code == 202
    await tb.settle()
    for echo in tb.slack.echoes:
        await tb.deliver_slack(slack, echo)
    await drain_inbox(tb)
    await tb.settle()
    assert [c["type"] for c in tb.app.received
            if c["message"]["externalMessageId"] == f"{general}:{sent['ts']}"] == []


async def test_an_edit_made_on_the_platform_to_the_apps_message_is_called_back(tb, slack_ws, slack, sim_clock):
    general = slack_ws["general"]
    sent = await app_message_sent(tb, slack, general, "typo")
    sim_clock.advance(2)
    await tb.deliver_slack(slack, tb.slack.edit_message(general, sent["ts"], "fixed by a Slack admin"))
    [callback] = await callbacks_for(tb, f"{general}:{sent['ts']}", "message.updated")
    assert callback["message"]["text"] == "fixed by a Slack admin"
    assert callback["message"]["origin"] == "app"


async def test_a_slow_app_hears_of_several_chats_at_once_and_of_each_chat_one_change_at_a_time(make_tb):
    tb = await make_tb(callback_concurrency=3)
    tb.app.delay_s = 0.05
    ws = tb.slack.seed_workspace()
    slack = await tb.create_slack()  # the import's messages: four chats, six of them in #general
    general = ws["general"]
    for text in ("first", "second", "third"):
        await tb.deliver_slack(slack, tb.slack.post_user_message(general, text, ws["bob"]))
    await drain_inbox(tb)
    await tb.settle()

    chats = {c["message"]["chatId"] for c in tb.app.received}
    assert len(chats) == 4 and len(tb.app.received) == len({c["id"] for c in tb.app.received}) >= 12
    assert tb.app.most_in_hand == 3  # as many as allowed, never more
    assert tb.app.same_chat_at_once == 0
    later = [c["message"]["text"] for c in tb.app.received if c["message"]["text"] in ("first", "second", "third")]
    assert later == ["first", "second", "third"]


async def test_one_callback_at_a_time_when_so_configured(make_tb):
    tb = await make_tb(callback_concurrency=1)
    tb.app.delay_s = 0.01
    tb.slack.seed_workspace()
    await tb.create_slack()
    await tb.settle()
    assert len(tb.app.received) >= 9 and tb.app.most_in_hand == 1


async def test_callbacks_in_hand_when_the_daemon_stops_are_answered_and_recorded_once(make_tb):
    # More slots than chats: the worker is idle, not waiting for a slot, when the stop comes.
    tb = await make_tb(callback_concurrency=8)
    tb.app.delay_s = 0.5
    tb.slack.seed_workspace()
    await tb.create_slack()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(tb.app.in_hand) < 2 and loop.time() < deadline:
        await asyncio.sleep(0.005)
    assert len(tb.app.in_hand) >= 2

    await tb.engine.stop(grace_s=5)

    assert tb.app.in_hand == []
    outbox = await tb.daemon.store.outbox_counts()
    assert not outbox.get("sending")
    sent = {item.idempotency_key for item in await tb.daemon.store.list_outbox(status="sent")}
    received = [c["id"] for c in tb.app.received]
    assert len(received) == len(set(received)) >= 2 and set(received) == sent
