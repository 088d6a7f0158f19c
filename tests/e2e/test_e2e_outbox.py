"""The outbox: an accepted app event reaches the platform exactly once, through restarts and
platform errors; what can never be sent is dead-lettered with its error; an edit waits for
the create it depends on."""

from __future__ import annotations

import asyncio

import pytest
from e2esupport import stored_messages, wait_for

from syncd.testbed import Testbed


def created(chat: str, n: int, **message) -> dict:
    return {"id": f"evt-create-{n}", "type": "message.created", "customerId": "cust-1", "platform": "slack",
            "externalChatId": chat, "message": {"id": f"app-{n}", "text": f"app message {n}", **message}}


def updated(n: int, **message) -> dict:
    return {"id": f"evt-update-{n}", "type": "message.updated", "customerId": "cust-1", "platform": "slack",
            "message": {"id": f"app-{n}", **message}}


def posted(tb, chat: str, text: str) -> int:
    """How many times ``text`` was posted to the Slack channel."""
    return [m["text"] for m in tb.slack.truth(chat)].count(text)


@pytest.fixture
async def strict_tb():
    """A testbed that gives up on an event after three attempts."""
    bed = await Testbed.start(outbox_max_attempts=3)
    yield bed
    await bed.stop()


async def test_an_event_accepted_while_no_worker_runs_is_sent_once_after_a_restart(idle_tb) -> None:
    tb = idle_tb
    ids = tb.slack.seed_workspace()
    await tb.create_slack()
    general = ids["general"]

    answer = await tb.post_event(created(general, 1))
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    assert tb.slack.faults.calls["chat.postMessage"] == 0
    await tb.engine.stop(grace_s=0)  # the process that accepted it goes away

    restarted = await tb.replica()
    await tb.settle()
    again = await tb.post_event(created(general, 1))
    await tb.settle()

    assert again.status_code == 202 and again.json()["status"] == "sent"
    assert posted(tb, general, "app message 1") == 1
    message = await restarted.store.find_message("cust-1", "slack", app_message_id="app-1")
    assert message.external_message_id is not None and message.delivery_state == "sent"


async def test_platform_server_errors_are_retried_and_the_message_is_sent_once(tb) -> None:
    ids = tb.slack.seed_workspace()
    await tb.create_slack()
    general = ids["general"]
    # More failures than one attempt's HTTP retries: the outbox itself has to try again.
    tb.slack.faults.fail_next("chat.postMessage", "server_error", times=tb.daemon.settings.http_max_retries + 2)

    assert (await tb.post_event(created(general, 1))).status_code == 202
    await tb.settle()

    item = await tb.daemon.store.find_outbox("cust-1", "evt-create-1")
    assert item.status == "sent" and item.attempts == 2
    assert posted(tb, general, "app message 1") == 1


async def test_an_event_that_keeps_failing_is_dead_lettered_with_its_error(strict_tb) -> None:
    tb = strict_tb
    ids = tb.slack.seed_workspace()
    await tb.create_slack()
    tb.slack.faults.fail_next("chat.postMessage", "server_error", times=1000)

    assert (await tb.post_event(created(ids["general"], 1))).status_code == 202
    await tb.settle()

    item = await tb.daemon.store.find_outbox("cust-1", "evt-create-1")
    assert item.status == "dead" and item.attempts == tb.daemon.settings.outbox_max_attempts
    assert "503" in item.error
    message = await tb.daemon.store.find_message("cust-1", "slack", app_message_id="app-1")
    assert message.delivery_state == "failed" and message.external_message_id is None


async def test_an_event_the_platform_refuses_is_dead_lettered_at_once(tb) -> None:
    tb.slack.seed_workspace()
    await tb.create_slack()

    assert (await tb.post_event(created("C0NOSUCHCHAN", 1))).status_code == 202
    await tb.settle()

    item = await tb.daemon.store.find_outbox("cust-1", "evt-create-1")
    assert item.status == "dead" and item.attempts == 1
    assert "channel_not_found" in item.error


async def test_an_update_waits_for_its_create_and_is_applied_after_it(strict_tb) -> None:
    tb = strict_tb
    ids = tb.slack.seed_workspace()
    await tb.create_slack()
    general = ids["general"]
    store = tb.daemon.store
    # Slack throttles the create for 30 s: it is rescheduled, and the update comes first.
    http_tries = tb.daemon.settings.http_max_retries + 1
    tb.slack.faults.fail_next("chat.postMessage", "rate_limit", times=http_tries, retry_after_s=30)

    assert (await tb.post_event(created(general, 1))).status_code == 202
    assert (await tb.post_event(updated(1, text="app message 1, edited"))).status_code == 202

    async def update_tried_past_its_budget() -> bool:
        update = await store.find_outbox("cust-1", "evt-update-1")
        return update.status == "dead" or update.attempts > tb.daemon.settings.outbox_max_attempts

    await wait_for(update_tried_past_its_budget, what="the update to be tried")
    assert (await store.find_outbox("cust-1", "evt-update-1")).status == "queued"
    tb.clock.advance(31)
    await tb.settle()

    create = await store.find_outbox("cust-1", "evt-create-1")
    update = await store.find_outbox("cust-1", "evt-update-1")
    assert (create.status, update.status) == ("sent", "sent")
    assert posted(tb, general, "app message 1, edited") == 1 and posted(tb, general, "app message 1") == 0
    message = await store.find_message("cust-1", "slack", app_message_id="app-1")
    assert message.text == "app message 1, edited" and message.edited_at is not None


async def test_an_edit_that_only_changes_the_text_keeps_the_rest_of_the_message(tb) -> None:
    ids = tb.slack.seed_workspace()
    await tb.create_slack()
    general = ids["general"]
    await tb.post_event(created(general, 1, html="<p>app message 1</p>", subject="Hello"))
    await tb.settle()

    await tb.post_event(updated(1, text="app message 1, edited"))
    await tb.settle()

    message = await tb.daemon.store.find_message("cust-1", "slack", app_message_id="app-1")
    assert message.text == "app message 1, edited"
    assert message.html == "<p>app message 1</p>" and message.subject == "Hello"


async def test_an_echo_processed_before_the_send_returns_is_merged_and_not_announced_to_the_app(tb) -> None:
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    await tb.settle()
    general = ids["general"]
    store = tb.daemon.store

    async def echo_first(delivery) -> None:
        # Slack's echo webhook arrives, and is fully processed, before chat.postMessage answers.
        assert (await tb.deliver_slack(integration, delivery)).status_code == 200
        await wait_for(lambda: _inbox_idle(store), what="the echo to be processed")
        await asyncio.sleep(0.05)  # the callback worker gets its chance at the echo

    tb.slack.on_echo = echo_first
    callbacks_before = len(tb.app.received)
    assert (await tb.post_event(created(general, 1))).status_code == 202
    await tb.settle()

    chat = await store.find_chat("cust-1", "slack", general)
    mine = [m for m in await stored_messages(store, chat.id) if m.text == "app message 1"]
    assert len(mine) == 1 and mine[0].app_message_id == "app-1" and mine[0].origin == "app"
    assert mine[0].external_message_id == f"{general}:{tb.slack.truth(general)[-1]['ts']}"
    assert tb.app.received[callbacks_before:] == []


async def _inbox_idle(store) -> bool:
    counts = await store.inbox_counts()
    return counts["pending"] == 0 and counts["done"] >= 1


async def test_events_for_revoked_credentials_wait_for_new_ones_and_are_then_sent_once(strict_tb) -> None:
    tb = strict_tb
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    general = ids["general"]
    store = tb.daemon.store
    tb.slack.revoked_tokens.update(tb.slack.valid_tokens)  # the workspace uninstalled the app

    assert (await tb.post_event(created(general, 1))).status_code == 202

    async def tried_past_its_budget() -> bool:
        item = await store.find_outbox("cust-1", "evt-create-1")
        return item.status == "dead" or item.attempts > tb.daemon.settings.outbox_max_attempts

    await wait_for(tried_past_its_budget, what="the event to be tried")
    assert (await store.find_outbox("cust-1", "evt-create-1")).status == "queued"
    shown = (await tb.api.get(f"/integrations/{integration['id']}")).json()["integration"]
    assert shown["status"] == "error" and "token_revoked" in shown["statusReason"]

    tb.slack.valid_tokens.add("xoxb-reinstalled")
    response = await tb.api.put(f"/integrations/{integration['id']}/credentials", json={"credentials": {
        "botToken": "xoxb-reinstalled", "signingSecret": tb.slack.signing_secret}})
    assert response.status_code == 200, response.text
    await tb.settle()

    assert (await store.find_outbox("cust-1", "evt-create-1")).status == "sent"
    assert posted(tb, general, "app message 1") == 1
