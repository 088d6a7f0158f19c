"""Periodic full syncs: on a schedule, every imported chat is re-read, so what no event told
syncd (a message gone at the platform, an edit never announced) is found, without a resync
call; and they run in a background lane that live sends and webhooks do not wait behind."""

from __future__ import annotations

import asyncio
from typing import Any

from apisupport import assert_error, chat_messages, event

from syncd.sim.base import FaultPlan
from syncd.testbed import Testbed

PERIOD = 60


async def run_due_full_sync(tb: Testbed, integration: dict[str, Any]) -> None:
    """What the daemon's schedule does: the first look sets the due time (with its jitter),
    and once the clock passes it the next look starts the run."""
    engine = tb.engine
    assert not await engine.lifecycle.full_sync(integration["id"])  # schedules the first run
    tb.clock.advance(PERIOD + 1)
    assert await engine.lifecycle.full_sync(integration["id"])
    assert not await engine.lifecycle.full_sync(integration["id"])  # claimed: not started twice


async def full_sync_status(tb: Testbed, integration: dict[str, Any]) -> dict[str, Any]:
    return (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["fullSync"]


async def test_a_scheduled_full_sync_marks_silently_deleted_messages_and_applies_silent_edits(tb, slack_ws):
    slack = await tb.create_slack(settings={"fullSyncEveryS": PERIOD})
    general = slack_ws["general"]
    gone = next(m for m in tb.slack.messages[general] if m["text"] == "Good morning")
    gone["_deleted"] = True  # the platform lost it and sent no event
    edited = next(m for m in tb.slack.messages[general] if m["text"] == "Works for me")
    tb.slack.edit_message(general, edited["ts"], "Works for me, see you there")  # never delivered
    tb.app.received.clear()

    await run_due_full_sync(tb, slack)
    await tb.wait_imported(slack["id"])
    await tb.settle()

    messages = {m["externalMessageId"]: m for m in await chat_messages(tb, slack, general)}
    assert messages[f"{general}:{gone['ts']}"]["deletedAt"] is not None
    assert messages[f"{general}:{edited['ts']}"]["text"] == "Works for me, see you there"
    assert [m for m in messages.values() if m["deletedAt"]] == [messages[f"{general}:{gone['ts']}"]]
    told = {(c["type"], c["message"]["externalMessageId"]) for c in tb.app.received}
    assert ("message.deleted", f"{general}:{gone['ts']}") in told
    assert ("message.updated", f"{general}:{edited['ts']}") in told
    status = await full_sync_status(tb, slack)
    assert status["everyS"] == PERIOD and status["running"] is False and status["nextAt"] is not None
    last = status["last"]
    assert (last["chats"], last["chatsDone"], last["deleted"], last["updated"]) == (4, 4, 1, 1)
    assert last["finishedAt"] is not None


async def test_full_syncs_can_be_turned_off_per_integration(tb, slack_ws):
    slack = await tb.create_slack(settings={"fullSyncEveryS": 0})
    tb.clock.advance(10 * 86400)
    assert not await tb.engine.lifecycle.full_sync(slack["id"])
    assert (await full_sync_status(tb, slack)) == {"everyS": None, "nextAt": None, "running": False, "last": None}


async def test_the_platform_declares_a_daily_default(tb, slack):
    assert (await full_sync_status(tb, slack))["everyS"] == 86400


async def test_a_paused_integration_runs_no_full_sync(tb, slack_ws):
    slack = await tb.create_slack(settings={"fullSyncEveryS": PERIOD})
    assert not await tb.engine.lifecycle.full_sync(slack["id"])
    assert (await tb.api.post(f"/integrations/{slack['id']}/pause")).status_code == 200
    tb.clock.advance(PERIOD * 2)
    assert not await tb.engine.lifecycle.full_sync(slack["id"])


async def test_the_first_runs_of_many_integrations_are_spread_over_the_period(tb, slack_ws):
    created = [await tb.create_slack(customer=f"cust-{n}", settings={"fullSyncEveryS": 1000}) for n in range(6)]
    for integration in created:
        await tb.engine.lifecycle.full_sync(integration["id"])
    due = {(await full_sync_status(tb, i))["nextAt"] for i in created}
    assert len(due) == 6  # no two at the same instant


async def test_an_invalid_period_is_refused(tb, slack_ws):
    for value in (-1, "daily", True):
        response = await tb.api.post("/integrations", json={
            "platform": "slack", "customerId": "cust-1", "settings": {"fullSyncEveryS": value},
            "credentials": {"botToken": next(iter(tb.slack.valid_tokens)), "signingSecret": tb.slack.signing_secret}})
        assert "fullSyncEveryS" in assert_error(response, 422, "invalid_settings")["message"]


async def test_sends_and_webhooks_are_not_held_behind_a_running_full_sync(tb, slack_ws):
    slack = await tb.create_slack(settings={"fullSyncEveryS": PERIOD})
    general = slack_ws["general"]
    # Every history page now takes a while: the full sync of four chats, one page at a time
    # in its lane, lasts well over a second.
    tb.slack.faults.plan = FaultPlan(latency_s=0.4, endpoints=frozenset({"conversations.history",
                                                                         "conversations.replies"}))
    await run_due_full_sync(tb, slack)
    await asyncio.sleep(0.05)
    assert (await full_sync_status(tb, slack))["running"]

    response = await tb.post_event(event("evt-live", chatId=(await tb.chats(slack))[general]["id"],
                                         message={"id": "app-1", "text": "sent during a full sync"}))
    assert response.status_code == 202
    delivery = tb.slack.post_user_message(general, "said during a full sync", slack_ws["bob"])
    assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        texts = [m["text"] for m in await chat_messages(tb, slack, general)]
        sent = [m for m in tb.slack.messages[general] if m.get("text") == "sent during a full sync"]
        if sent and "said during a full sync" in texts:
            break
        assert loop.time() < deadline, "live traffic waited for the full sync"
        await asyncio.sleep(0.02)
    # Both went through while the full sync was still reading history.
    assert (await full_sync_status(tb, slack))["running"]
    await tb.wait_imported(slack["id"])
    assert (await full_sync_status(tb, slack))["last"]["chatsDone"] == 4


async def test_a_resync_during_a_full_sync_leaves_the_run_counted_to_its_end(tb, slack_ws):
    slack = await tb.create_slack(settings={"fullSyncEveryS": PERIOD})
    tb.slack.faults.plan = FaultPlan(latency_s=0.2, endpoints=frozenset({"conversations.history"}))
    await run_due_full_sync(tb, slack)
    response = await tb.api.post(f"/integrations/{slack['id']}/resync", json={})
    assert response.status_code == 202
    await tb.wait_imported(slack["id"])
    status = await full_sync_status(tb, slack)
    assert status["running"] is False and status["last"]["chatsDone"] == 4
