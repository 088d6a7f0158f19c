"""What a scheduled poll costs the database when it finds nothing (most polls do): its leases
and the reads it needs, no write of an unchanged mark and no read of the account's
identities; a poll that finds something still writes its mark. Counted on the benchmarks'
store double."""

from __future__ import annotations

from collections import Counter

import pytest

from syncd.engine.poller import MARK_REFRESH_S
from syncd.testbed import Testbed


@pytest.fixture
async def bed(double_store):
    tb = await Testbed.start(store=await double_store(), callbacks=False)
    yield tb
    await tb.stop()


async def _settled_slack(tb: Testbed) -> tuple[str, dict[str, str]]:
    """An imported Slack integration polled once (the first poll turns the import's mark into
    the poll's own), and the ids of its seeded workspace."""
    ids = tb.slack.seed_workspace()
    integration = (await tb.create_slack())["id"]
    await tb.wait_imported(integration)
    await tb.engine.poll(integration)
    await tb.engine.wait_background()
    return integration, ids


async def _counted_poll(tb: Testbed, integration: str) -> Counter[tuple[str, str]]:
    """The store calls one scheduled poll makes, by (collection, operation)."""
    client = tb.daemon.store.client
    before = client.snapshot()
    # The poll's turn of this interval is this replica's own already (a turn is re-entrant).
    await tb.engine.poll(integration)
    await tb.engine.wait_background()
    return client.snapshot() - before


def _writes_outside_leases(calls: Counter[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The writes of ``calls`` but the leases' (and the queues': the inbox and outbox workers
    claim from them in the background, whatever the poll does)."""
    reads = {"find", "find_one", "aggregate", "count_documents"}
    return {key: n for key, n in calls.items()
            if key[0] not in ("leases", "inbox", "outbox") and key[1] not in reads}


async def test_a_poll_that_finds_nothing_writes_nothing_but_its_leases(bed: Testbed) -> None:
    integration, _ = await _settled_slack(bed)
    status = await bed.daemon.store.get_sync_status(integration)
    bed.clock.advance(1)  # well under MARK_REFRESH_S

    calls = await _counted_poll(bed, integration)

    assert calls[("chats", "find")] == 1  # it did poll (the chats it polls are read)
    assert _writes_outside_leases(calls) == {}
    # The interval's turn and the poll's lease in one round-trip, the lease given back in one.
    assert {key: n for key, n in calls.items() if key[0] == "leases"} == \
        {("leases", "bulk_write"): 1, ("leases", "delete_one"): 1}
    assert calls[("user_platforms", "find")] == 0  # the identities are read only for messages
    after = await bed.daemon.store.get_sync_status(integration)
    assert after.high_watermark == status.high_watermark and after.updated_at == status.updated_at


async def test_a_poll_that_finds_a_message_stores_it_and_writes_its_mark(bed: Testbed) -> None:
    integration, ids = await _settled_slack(bed)
    mark = (await bed.daemon.store.get_sync_status(integration)).high_watermark
    bed.slack.post_user_message(ids["general"], "missed by the webhook", ids["bob"])  # the webhook is lost

    calls = await _counted_poll(bed, integration)

    assert calls[("sync_status", "find_one_and_update")] == 1
    assert (await bed.daemon.store.get_sync_status(integration)).high_watermark != mark
    chat = await bed.daemon.store.find_chat("cust-1", "slack", ids["general"])
    page, _ = await bed.daemon.store.list_messages(chat.id, limit=50)
    assert "missed by the webhook" in [m.text for m in page]


async def test_an_unchanged_mark_is_written_again_once_the_status_is_old(bed: Testbed) -> None:
    integration, _ = await _settled_slack(bed)
    status = await bed.daemon.store.get_sync_status(integration)
    bed.clock.advance(MARK_REFRESH_S)

    calls = await _counted_poll(bed, integration)

    assert calls[("sync_status", "find_one_and_update")] == 1
    after = await bed.daemon.store.get_sync_status(integration)
    assert after.high_watermark == status.high_watermark and after.updated_at > status.updated_at



async def test_a_replica_polls_in_no_interval_whose_turn_another_took(bed: Testbed) -> None:
    integration, _ = await _settled_slack(bed)  # this replica's scheduled poll took the turn
    other = await bed.replica(store=bed.daemon.store)
    bed.slack.faults.reset()

    await other.engine.poll(integration)
    await other.engine.wait_background()
    assert bed.slack.faults.calls["conversations.history"] == 0

    bed.clock.advance(bed.daemon.settings.poll_interval_s)  # the next interval: a turn again
    await other.engine.poll(integration)
    await other.engine.wait_background()
    assert bed.slack.faults.calls["conversations.history"] == 4  # one read of each chat
