"""Two replicas on one database: each import, poll and delivery has one owner at a time, and a
replica that dies holding work has it taken over once its leases expire."""

from __future__ import annotations

import asyncio

from e2esupport import (
    kill,
    never_releasing,
    seed_channel,
    slack_credentials,
    stored_messages,
    wait_for,
)

from syncd.engine.poller import PollBusy
from syncd.providers.slack.connector import SlackConnector
from syncd.sim.base import FaultPlan


async def test_two_replicas_import_an_integration_once(tb) -> None:
    tb.slack.seed_workspace()
    other = await tb.replica()
    tb.slack.faults.plan = FaultPlan(latency_s=0.02, endpoints=frozenset({"conversations.history"}))

    integration = await tb.create_slack(wait=False)
    # Both replicas are told to import at the same moment; the lease picks one.
    drained = await asyncio.gather(tb.engine.importer.kick(integration["id"]),
                                   other.engine.importer.drain(integration["id"]))
    await tb.wait_imported(integration["id"])

    assert sorted(drained) == [False, True]
    chats = await tb.daemon.store.list_chats(integration_id=integration["id"])
    assert tb.slack.faults.calls["conversations.history"] == len(chats) == 4


async def test_two_replicas_never_poll_one_integration_at_once(tb) -> None:
    ids = tb.slack.seed_workspace()
    other = await tb.replica()
    integration = await tb.create_slack()
    tb.slack.post_user_message(ids["general"], "missed webhook", ids["bob"])
    tb.slack.faults.reset()
    tb.slack.faults.plan = FaultPlan(latency_s=0.02, endpoints=frozenset({"conversations.history"}))

    results = await asyncio.gather(tb.engine.poller.poll(integration["id"]),
                                   other.engine.poller.poll(integration["id"]), return_exceptions=True)

    assert sum(isinstance(r, PollBusy) for r in results) == 1
    assert tb.slack.faults.calls["conversations.history"] == 4  # one poll of each chat
    chat = await tb.daemon.store.find_chat("cust-1", "slack", ids["general"])
    texts = [m.text for m in await stored_messages(tb.daemon.store, chat.id)]
    assert texts.count("missed webhook") == 1


async def test_one_replica_never_polls_one_integration_twice_at_once(tb) -> None:
    tb.slack.seed_workspace()
    integration = await tb.create_slack()
    tb.slack.faults.reset()
    tb.slack.faults.plan = FaultPlan(latency_s=0.02, endpoints=frozenset({"conversations.history"}))

    # The scheduled poll and one a Gmail-style push asks for, at the same moment.
    results = await asyncio.gather(tb.engine.poller.poll(integration["id"]),
                                   tb.engine.poller.poll(integration["id"]), return_exceptions=True)

    assert sum(isinstance(r, PollBusy) for r in results) == 1
    assert tb.slack.faults.calls["conversations.history"] == 4


async def test_an_app_event_is_sent_once_with_two_replicas_working_the_outbox(tb) -> None:
    ids = tb.slack.seed_workspace()
    await tb.replica()
    await tb.create_slack()
    for i in range(5):
        response = await tb.post_event({
            "id": f"evt-{i}", "type": "message.created", "customerId": "cust-1", "platform": "slack",
            "externalChatId": ids["general"], "message": {"id": f"app-{i}", "text": f"from the app {i}"}})
        assert response.status_code == 202
    await tb.settle()

    assert tb.slack.faults.calls["chat.postMessage"] == 5
    texts = [m["text"] for m in tb.slack.truth(ids["general"])]
    assert all(texts.count(f"from the app {i}") == 1 for i in range(5))


async def test_a_replica_that_dies_holding_an_import_and_a_send_has_both_taken_over(
    idle_tb, small_pages: int, monkeypatch
) -> None:
    tb = idle_tb  # its daemon only accepts; the replica that will die does the work
    channel = seed_channel(tb, "history", 14)  # 3 pages
    survivor_store = tb.daemon.store
    doomed = await tb.replica(store=never_releasing(survivor_store))

    original = SlackConnector.fetch_history_page
    stuck = asyncio.Event()

    async def hangs_on_the_second_page(self, chat, cursor):
        if cursor is not None and not stuck.is_set():
            stuck.set()
            await asyncio.Event().wait()  # until the process dies
        return await original(self, chat, cursor)

    monkeypatch.setattr(SlackConnector, "fetch_history_page", hangs_on_the_second_page)
    doomed_api = tb.client(doomed)
    response = await doomed_api.post("/integrations", json={
        "platform": "slack", "customerId": "cust-1", "credentials": slack_credentials(tb)})
    integration = response.json()["integration"]
    await asyncio.wait_for(stuck.wait(), 10)
    # A send that hangs at the platform (before the message is posted) when the replica dies.
    tb.slack.faults.plan = FaultPlan(latency_s=60, endpoints=frozenset({"chat.postMessage"}))
    await tb.post_event({"id": "evt-1", "type": "message.created", "customerId": "cust-1", "platform": "slack",
                         "externalChatId": channel, "message": {"id": "app-1", "text": "sent by a dying replica"}})
    await wait_for(_event_is(survivor_store, "sending"), what="the send to start")
    await kill(doomed)
    await doomed_api.aclose()
    tb.slack.faults.plan = FaultPlan()

    survivor = await tb.replica(store=survivor_store)
    await survivor.engine.importer.wait()
    await asyncio.sleep(0.1)  # the survivor's workers look for work a few times
    assert [m["text"] for m in tb.slack.truth(channel)].count("sent by a dying replica") == 0
    assert (await survivor_store.find_outbox("cust-1", "evt-1")).status == "sending"
    assert await survivor_store.lease_holder(f"import:{integration['id']}") == doomed.engine.ctx.owner

    tb.clock.advance(tb.daemon.settings.lease_ttl_s + 1)
    await survivor.engine.resume()
    await survivor.engine.importer.wait()
    await wait_for(_event_is(survivor_store, "sent"), what="the send to be taken over")

    chat = await survivor_store.find_chat("cust-1", "slack", channel)
    stored = await stored_messages(survivor_store, chat.id)
    assert sorted(m.external_message_id for m in stored) == sorted(
        f"{channel}:{m['ts']}" for m in tb.slack.truth(channel))
    assert [m["text"] for m in tb.slack.truth(channel)].count("sent by a dying replica") == 1
    assert await survivor_store.lease_holder(f"import:{integration['id']}") is None


def _event_is(store, status: str):
    async def check() -> bool:
        return (await store.find_outbox("cust-1", "evt-1")).status == status
    return check
