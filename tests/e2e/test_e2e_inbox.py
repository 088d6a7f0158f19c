"""The webhook inbox: what was acknowledged is processed exactly once, even when no worker was
running at the time; a delivery that cannot be processed is retried, then parked with its
error, and never blocks the deliveries behind it."""

from __future__ import annotations

import copy

from e2esupport import fixture_payload, signed_slack_delivery, stored_messages


async def test_a_webhook_acknowledged_while_no_worker_runs_is_processed_once_after_start(idle_tb) -> None:
    tb = idle_tb
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    general = ids["general"]
    delivery = tb.slack.post_user_message(general, "while you were out", ids["bob"])

    assert (await tb.deliver_slack(integration, delivery)).status_code == 200
    assert (await tb.deliver_slack(integration, tb.slack.retry(delivery))).status_code == 200
    assert (await tb.daemon.store.inbox_counts(integration["id"]))["pending"] == 1
    chat = await tb.daemon.store.find_chat("cust-1", "slack", general)
    assert "while you were out" not in [m.text for m in await stored_messages(tb.daemon.store, chat.id)]

    await tb.daemon.start(schedule=False)
    await tb.settle()

    texts = [m.text for m in await stored_messages(tb.daemon.store, chat.id)]
    assert texts.count("while you were out") == 1
    assert await tb.daemon.store.inbox_counts(integration["id"]) == {"pending": 0, "done": 1, "failed": 0}
    told = [c for c in tb.app.received if c["message"]["text"] == "while you were out"]
    assert [c["type"] for c in told] == ["message.created"]


async def test_a_delivery_that_cannot_be_processed_is_retried_then_parked_with_its_error(tb) -> None:
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    general = ids["general"]
    # A real message event, except that it lost its ts: the mapping cannot name the message.
    poison = copy.deepcopy(fixture_payload("slack", "Events API event_callback wrapping a plain message event"))
    poison["event"]["channel"] = general
    del poison["event"]["ts"]
    behind = tb.slack.post_user_message(general, "queued behind the poison", ids["bob"])

    assert (await tb.deliver_slack(integration, signed_slack_delivery(tb.slack, poison))).status_code == 200
    assert (await tb.deliver_slack(integration, behind)).status_code == 200
    await tb.settle()

    chat = await tb.daemon.store.find_chat("cust-1", "slack", general)
    assert "queued behind the poison" in [m.text for m in await stored_messages(tb.daemon.store, chat.id)]
    status = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()
    assert status["inbox"] == {"pending": 0, "done": 1, "failed": 1}
    (failed,) = status["failedDeliveries"]
    assert failed["deliveryId"] == poison["event_id"]
    assert failed["attempts"] == tb.daemon.settings.inbox_max_attempts
    assert "MappingError" in failed["error"] and "externalMessageId" in failed["error"]
