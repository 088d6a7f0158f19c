"""An import interrupted by a crash resumes where it stopped, on another process."""

from __future__ import annotations

import asyncio

from e2esupport import (
    kill,
    never_releasing,
    seed_channel,
    slack_credentials,
    stored_messages,
)

from syncd.providers.slack.connector import SlackConnector


async def test_an_import_killed_mid_history_resumes_in_a_new_process_without_duplicates(
    tb, small_pages: int, monkeypatch
) -> None:
    channel = seed_channel(tb, "history", 23)  # 5 pages of 5
    pages = 5
    stored_before_crash = 2
    history_calls = lambda: tb.slack.faults.calls["conversations.history"]
    doomed = await tb.replica(store=never_releasing(tb.daemon.store))

    original = SlackConnector.fetch_history_page
    crashed = asyncio.Event()

    async def dies_after_fetching(self, chat, cursor):
        page = await original(self, chat, cursor)
        if not crashed.is_set() and history_calls() > stored_before_crash:
            # The process dies with this page fetched but not stored.
            crashed.set()
            asyncio.current_task().cancel()
            await asyncio.sleep(0)
        return page

    monkeypatch.setattr(SlackConnector, "fetch_history_page", dies_after_fetching)
    integration = await doomed.engine.create_integration(
        platform="slack", customer_id="cust-1", name=None, credentials=slack_credentials(tb), settings=None)
    await asyncio.wait_for(crashed.wait(), 10)
    await kill(doomed)
    lease = f"import:{integration.id}"
    chat = await tb.daemon.store.find_chat("cust-1", "slack", channel)
    checkpoint = await tb.daemon.store.get_sync_status(integration.id, chat.id)
    assert checkpoint.counts.pages == stored_before_crash and checkpoint.cursor is not None
    assert await tb.daemon.store.lease_holder(lease) == doomed.engine.ctx.owner

    # A new process starts on the same database: the dead owner's lease still stands.
    restarted = await tb.replica()
    await restarted.engine.importer.wait()
    assert history_calls() == stored_before_crash + 1
    assert (await tb.daemon.store.get_sync_status(integration.id, chat.id)).phase == "importing"

    # Once the lease has expired, the new process takes the import over from the checkpoint.
    tb.clock.advance(tb.daemon.settings.lease_ttl_s + 1)
    await restarted.engine.resume()
    await restarted.engine.importer.wait()

    status = await tb.daemon.store.get_sync_status(integration.id, chat.id)
    assert status.phase == "done"
    messages = await stored_messages(tb.daemon.store, chat.id)
    truth = tb.slack.truth(channel)
    assert sorted(m.external_message_id for m in messages) == sorted(f"{channel}:{m['ts']}" for m in truth)
    assert len({m.external_message_id for m in messages}) == len(messages) == 23
    refetched = history_calls() - pages
    assert refetched <= 1
    assert await tb.daemon.store.lease_holder(lease) is None
