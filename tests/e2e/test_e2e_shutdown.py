"""Graceful shutdown: work in hand is checkpointed, every lease is given back, and stop()
returns within the grace period, even when a platform call hangs."""

from __future__ import annotations

import asyncio

from e2esupport import seed_channel, stored_messages, wait_for

from syncd.providers.slack.connector import SlackConnector
from syncd.sim.base import FaultPlan


async def _chat_status(tb, integration: dict, channel: str):
    chat = await tb.daemon.store.find_chat("cust-1", "slack", channel)
    return chat, await tb.daemon.store.get_sync_status(integration["id"], chat.id) if chat else None


async def test_stop_during_an_import_checkpoints_it_and_gives_back_every_lease(tb, small_pages: int) -> None:
    channel = seed_channel(tb, "history", 40)  # 8 pages
    tb.slack.faults.plan = FaultPlan(latency_s=0.02, endpoints=frozenset({"conversations.history"}))
    integration = await tb.create_slack(wait=False)

    async def two_pages_stored() -> bool:
        _, status = await _chat_status(tb, integration, channel)
        return status is not None and status.counts.pages >= 2

    await wait_for(two_pages_stored, what="two pages")
    await asyncio.wait_for(tb.engine.stop(grace_s=2), timeout=5)

    chat, status = await _chat_status(tb, integration, channel)
    assert status.phase == "importing" and status.cursor is not None
    assert status.counts.pages < 8
    assert await tb.daemon.store.lease_holder(f"import:{integration['id']}") is None
    assert await tb.daemon.store.leases.count_documents({}) == 0

    # The next process carries on from the checkpoint.
    restarted = await tb.replica()
    await restarted.engine.importer.wait()
    messages = await stored_messages(tb.daemon.store, chat.id)
    assert len(messages) == len({m.external_message_id for m in messages}) == 40


async def test_stop_returns_within_the_grace_period_when_a_platform_call_hangs(
    tb, small_pages: int, monkeypatch
) -> None:
    channel = seed_channel(tb, "history", 20)
    original = SlackConnector.fetch_history_page
    hanging = asyncio.Event()

    async def hangs_on_the_third_page(self, chat, cursor):
        if tb.slack.faults.calls["conversations.history"] >= 2:
            hanging.set()
            await asyncio.Event().wait()
        return await original(self, chat, cursor)

    monkeypatch.setattr(SlackConnector, "fetch_history_page", hangs_on_the_third_page)
    integration = await tb.create_slack(wait=False)
    await asyncio.wait_for(hanging.wait(), 10)

    await asyncio.wait_for(tb.engine.stop(grace_s=0.2), timeout=3)

    _, status = await _chat_status(tb, integration, channel)
    assert status.counts.pages == 2 and status.cursor is not None
    assert await tb.daemon.store.lease_holder(f"import:{integration['id']}") is None


async def test_deleting_an_integration_during_its_import_stops_the_import(tb, small_pages: int, monkeypatch) -> None:
    channel = seed_channel(tb, "history", 20)
    original = SlackConnector.fetch_history_page
    hanging = asyncio.Event()

    async def hangs_on_the_second_page(self, chat, cursor):
        if cursor is not None:
            hanging.set()
            await asyncio.Event().wait()
        return await original(self, chat, cursor)

    monkeypatch.setattr(SlackConnector, "fetch_history_page", hangs_on_the_second_page)
    integration = await tb.create_slack(wait=False)
    await asyncio.wait_for(hanging.wait(), 10)

    response = await tb.api.delete(f"/integrations/{integration['id']}")

    assert response.status_code == 200
    assert await tb.daemon.store.lease_holder(f"import:{integration['id']}") is None
    _, status = await _chat_status(tb, integration, channel)
    assert status.counts.pages == 1
    await tb.engine.resume()  # a deleted integration is not resumed
    await tb.engine.importer.wait()
    assert tb.slack.faults.calls["conversations.history"] == 1  # the second page was never asked for


async def test_stop_lets_a_poll_in_hand_finish_before_giving_its_lease_back(tb) -> None:
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    tb.slack.post_user_message(ids["general"], "read by the last poll", ids["bob"])
    tb.slack.faults.plan = FaultPlan(latency_s=0.05, endpoints=frozenset({"conversations.history"}))
    polling = asyncio.create_task(tb.engine.poll(integration["id"]))
    await wait_for(lambda: tb.slack.faults.calls["conversations.history"] > 0, what="the poll to start")

    await asyncio.wait_for(tb.engine.stop(grace_s=3), timeout=5)

    assert polling.done() and polling.exception() is None
    chat = await tb.daemon.store.find_chat("cust-1", "slack", ids["general"])
    assert "read by the last poll" in [m.text for m in await stored_messages(tb.daemon.store, chat.id)]
    assert await tb.daemon.store.lease_holder(f"poll:{integration['id']}") is None
    await tb.engine.poll(integration["id"])  # a stopped engine takes no new work
    assert await tb.daemon.store.lease_holder(f"poll:{integration['id']}") is None


async def test_a_stopped_worker_stops_at_once_and_starts_again(tb) -> None:
    worker = tb.engine.outbox.events

    await asyncio.wait_for(worker.stop(grace_s=30), timeout=2)
    assert not worker.running and (await tb.api.get("/readyz")).status_code == 503

    worker.start()
    assert worker.running and (await tb.api.get("/readyz")).status_code == 200
