"""Resync: a full one marks what the platform no longer has as deleted (and tells the app);
a plain one re-reads idempotently."""

from __future__ import annotations

import asyncio

from e2esupport import seed_channel, stored_messages, wait_for

from syncd.sim.base import FaultPlan


async def _resync(tb, integration: dict, **body) -> None:
    response = await tb.api.post(f"/integrations/{integration['id']}/resync", json=body)
    assert response.status_code == 202, response.text
    await tb.wait_imported(integration["id"])
    await tb.settle()


async def test_a_full_resync_marks_messages_gone_at_the_platform_as_deleted_and_tells_the_app(tb) -> None:
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    await tb.settle()
    general = ids["general"]
    gone_ts = tb.slack.truth(general)[1]["ts"]
    tb.slack.delete_message(general, gone_ts)  # its webhook never arrives
    callbacks_before = len(tb.app.received)

    await _resync(tb, integration, full=True)

    chat = await tb.daemon.store.find_chat("cust-1", "slack", general)
    stored = {m.external_message_id: m for m in await stored_messages(tb.daemon.store, chat.id)}
    assert stored[f"{general}:{gone_ts}"].deleted_at is not None
    alive = {f"{general}:{m['ts']}" for m in tb.slack.truth(general) if not m["deleted"]}
    assert {k for k, m in stored.items() if m.deleted_at is None} == alive
    new_callbacks = tb.app.received[callbacks_before:]
    assert [(c["type"], c["message"]["externalMessageId"]) for c in new_callbacks] == [
        ("message.deleted", f"{general}:{gone_ts}")]


async def test_a_plain_resync_rereads_without_duplicates_or_callbacks(tb) -> None:
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    await tb.settle()
    chats = await tb.daemon.store.list_chats(integration_id=integration["id"])
    before = {c.id: sorted(m.id for m in await stored_messages(tb.daemon.store, c.id)) for c in chats}
    callbacks_before = len(tb.app.received)

    await _resync(tb, integration)
    await _resync(tb, integration, chatIds=[c.id for c in chats if c.external_chat_id == ids["general"]])

    after = {c.id: sorted(m.id for m in await stored_messages(tb.daemon.store, c.id)) for c in chats}
    assert after == before
    assert sum(len(v) for v in after.values()) == sum(len(tb.slack.truth(c.external_chat_id)) for c in chats)
    assert len(tb.app.received) == callbacks_before
    statuses = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
    general = next(s for s in statuses if s.get("externalChatId") == ids["general"])
    assert general["phase"] == "done"
    assert general["counts"]["inserted"] == 0 and general["counts"]["unchanged"] == general["counts"]["fetched"]


async def test_a_full_resync_asked_for_during_the_import_is_not_lost(tb, small_pages: int) -> None:
    channel = seed_channel(tb, "history", 30)  # 6 pages, newest first
    tb.slack.faults.plan = FaultPlan(latency_s=0.02, endpoints=frozenset({"conversations.history"}))
    integration = await tb.create_slack(wait=False)
    store = tb.daemon.store

    async def three_pages_stored() -> bool:
        chat = await store.find_chat("cust-1", "slack", channel)
        status = chat and await store.get_sync_status(integration["id"], chat.id)
        return bool(status) and status.counts.pages >= 3

    await wait_for(three_pages_stored, what="three pages")
    newest = tb.slack.truth(channel)[-1]["ts"]  # stored with the first page
    tb.slack.delete_message(channel, newest)  # its webhook never arrives
    chat = await store.find_chat("cust-1", "slack", channel)
    response = await tb.api.post(f"/integrations/{integration['id']}/resync", json={"chatIds": [chat.id], "full": True})
    assert response.status_code == 202
    await tb.wait_imported(integration["id"])
    await tb.engine.importer.wait()

    stored = {m.external_message_id: m for m in await stored_messages(store, chat.id)}
    assert len(stored) == 30
    assert stored[f"{channel}:{newest}"].deleted_at is not None
    assert (await store.get_sync_status(integration["id"], chat.id)).full is False


async def test_a_resync_planned_while_an_import_is_finishing_is_not_left_pending(tb) -> None:
    # The import's last look for pending chats is behind it, its lease not yet given back:
    # a resync planned and kicked in that moment must still run (in this process, now).
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    store, importer = tb.daemon.store, tb.engine.importer
    finishing, go_on = asyncio.Event(), asyncio.Event()
    release = store.release_lease

    async def slow_release(name: str, owner: str) -> None:
        if name == f"import:{integration['id']}":
            finishing.set()
            await go_on.wait()
        await release(name, owner)

    store.release_lease = slow_release
    drain = importer.kick(integration["id"])
    await asyncio.wait_for(finishing.wait(), 10)
    full = await tb.api.post(f"/integrations/{integration['id']}/resync", json={"full": True})
    assert full.status_code == 202, full.text
    go_on.set()
    store.release_lease = release
    await asyncio.wait_for(drain, 10)
    await importer.wait()
    statuses = await store.list_sync_status(integration["id"])
    chats = [s for s in statuses if s.chat_id is not None]
    assert chats and all(s.phase == "done" and not s.full for s in chats), \
        [(s.external_chat_id, s.phase, s.full) for s in chats]
    general = await store.find_chat("cust-1", "slack", ids["general"])
    assert len(await stored_messages(store, general.id)) == len(tb.slack.truth(ids["general"]))
