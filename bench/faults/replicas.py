"""Scenario 6: two replicas on one database.

Two engines share one store and the same Slack workspace. Both are told to import at once:
each chat's history is read once (counted at the simulator). Both poll at the same moments:
one poll runs. Events and webhooks reach either replica: each message is sent and stored
once. Their schedulers both tick every poll interval: one of them polls per interval. Then
one replica dies holding a resync and a send; the other takes both over once their leases
expire, and finishes them.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from bench.faults.harness import (
    app_event,
    create_slack,
    deliver_slack,
    imported,
    mortal,
    post_event,
    seed_channel,
    settle,
    slack_pages,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import Row, compare_exports, tally_slack
from syncd.engine.poller import PollBusy
from syncd.sim.base import FaultPlan

NAME = "6 two replicas"
PAGE = 5
POLL_ROUNDS = 3


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` events and ``size`` webhooks across the replicas; four chats of history."""
    row = Row(NAME, runs=1)
    with slack_pages(PAGE):
        async with testbed(seed) as (tb, wire):
            store = tb.daemon.store
            channels = [seed_channel(tb.slack, f"shared-{c}", 12, start=1_700_000_000 + c * 100_000,
                                     thread_replies=3 if c == 0 else 0) for c in range(4)]
            a = await mortal(tb)
            b = await tb.replica()
            b_api = tb.client(b)
            history = lambda: wire.calls("slack", "conversations.history")

            # Both replicas start the import at the same moment; the lease picks one.
            tb.slack.faults.plan = FaultPlan(latency_s=0.005, endpoints=frozenset({"conversations.history"}))
            integration = await create_slack(a.api, tb)
            drained = await asyncio.gather(a.daemon.engine.importer.kick(integration["id"]),
                                           b.engine.importer.drain(integration["id"]))
            await wait_for(lambda: imported(store, integration["id"]), what="the import")
            pages = Counter((s.params.get("channel"), s.params.get("cursor")) for s in history())
            row.fact("import_history_calls", len(history()))
            row.expect(sum(drained) == 1, f"the import ran {sum(drained)} times")
            row.expect(all(n == 1 for n in pages.values()), f"pages read twice: {[p for p, n in pages.items() if n > 1]}")
            row.expect({c for c, _ in pages} == set(channels), "a chat was not imported")

            # Both poll at the same moments: one poll per round reads each chat once.
            users = [tb.slack.ids["alice"], tb.slack.ids["bob"]]
            before = len(history())
            for r in range(POLL_ROUNDS):
                for c in channels:
                    tb.slack.post_user_message(c, f"missed webhook {r} {c}", users[r % 2])
                results = await asyncio.gather(a.daemon.engine.poller.poll(integration["id"]),
                                               b.engine.poller.poll(integration["id"]), return_exceptions=True)
                row.expect(sum(isinstance(x, PollBusy) for x in results) == 1, f"poll round {r}: {results}")
            poll_calls = len(history()) - before
            row.fact("poll_history_calls", poll_calls)
            row.expect(poll_calls == POLL_ROUNDS * len(channels), f"{poll_calls} history calls for {POLL_ROUNDS} polls")
            tb.slack.faults.reset()

            # Each replica's scheduler ticks once per interval: one of them polls per interval.
            before = len(history())
            for r in range(POLL_ROUNDS):
                for daemon in ((a.daemon, b) if r % 2 else (b, a.daemon)):
                    await daemon.engine.poll(integration["id"])
                tb.clock.advance(tb.daemon.settings.poll_interval_s)
            scheduled_calls = len(history()) - before
            row.fact("scheduled_poll_history_calls", scheduled_calls)
            row.expect(scheduled_calls == POLL_ROUNDS * len(channels),
                       f"{scheduled_calls} history calls for {POLL_ROUNDS} intervals of scheduled polls")

            # Events and webhooks reach either replica (each webhook reaches both).
            texts = []
            for i in range(size):
                texts.append(f"shared app {i}")
                await post_event((a.api, b_api)[i % 2], app_event(i, "created", "slack", channels[i % 4], texts[-1]))
                delivery = tb.slack.post_user_message(channels[i % 4], f"shared webhook {i}", users[i % 2])
                for api in (a.api, b_api):
                    await deliver_slack(api, tb, integration, delivery)
            await settle(store, a.daemon, b)

            # One replica dies holding a resync (mid-page) and a send (in flight); the other
            # stands by until their leases expire, then finishes both.
            await b.engine.outbox.events.stop(5)
            resync_page = wire.hold(lambda s: s.endpoint == "conversations.history" and s.params.get("cursor"))
            send = wire.hold(lambda s: s.endpoint == "chat.postMessage")
            response = await a.api.post(f"/integrations/{integration['id']}/resync", json={"full": True})
            row.expect(response.status_code == 202, f"resync answered {response.status_code}")
            texts.append("sent by a dying replica")
            await post_event(a.api, app_event("dying", "created", "slack", channels[1], texts[-1]))
            await asyncio.wait_for(asyncio.gather(resync_page.reached.wait(), send.reached.wait()), 30)
            await a.die()
            b.engine.outbox.events.start()
            await b.engine.resume()
            await b.engine.importer.wait()
            row.expect(await store.lease_holder(f"import:{integration['id']}") == a.owner,
                       "the dead replica's import lease was not respected")
            tb.clock.advance(tb.daemon.settings.lease_ttl_s + 1)
            await b.engine.resume()
            await settle(store, b)
            await wait_for(lambda: imported(store, integration["id"]), what="the resync to be taken over")

            row.tally = await tally_slack(tb.api, integration["id"], tb.slack, channels)
            bot = [m["text"] for c in channels for m in tb.slack.truth(c) if m["user"] == tb.slack.bot_user_id]
            row.tally.add(compare_exports(texts, bot))
            row.fact("sends", len(wire.calls("slack", "chat.postMessage")))
            row.expect(await store.lease_holder(f"import:{integration['id']}") is None, "import lease still held")
            await b_api.aclose()
    return row
