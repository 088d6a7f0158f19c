"""Scenario 5: outbox and inbox durability.

A replica accepts app events (202) and acknowledges Slack webhooks (200), then dies at one
of six points: with the events only accepted, with a send in flight, with a send done but its
outbox item not closed; with the webhooks only acknowledged, with one being processed, or
processed but its inbox item not closed. Another replica starts on the same database. Every
event must reach Slack exactly once and every webhook be stored once and announced to the app
once (a callback repeated after a crash carries the same id, so the app sees one change).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from bench.faults.harness import (
    Mortal,
    app_event,
    create_slack,
    deliver_slack,
    dies_in,
    imported,
    mortal,
    post_event,
    seed_channel,
    settle,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import Row, compare_exports, tally_slack
from syncd.engine import exporter as exporter_module
from syncd.engine import inbox as inbox_module

NAME = "5 outbox/inbox durability"
CUTS = (
    "events accepted, none sent",
    "send in flight",
    "sent, outbox item not closed",
    "webhooks acknowledged, none processed",
    "webhook being processed",
    "webhook processed, inbox item not closed",
)


async def durability_once(cut: str, size: int, seed: int = 0) -> Row:
    row = Row(NAME, runs=1)
    async with testbed(seed) as (tb, wire):
        store = tb.daemon.store
        channel = seed_channel(tb.slack, "durable", 3)
        integration = await create_slack(tb.api, tb)
        await wait_for(lambda: imported(store, integration["id"]), what="the import")
        works = cut not in (CUTS[0], CUTS[3])
        victim: Mortal = await mortal(tb, run=works)
        # Sends go one by one: the replica dies at the middle one. The inbox processes what is
        # due in batches: it dies in its first batch, with the rest acknowledged behind it.
        nth = max(1, size // 2) if cut in CUTS[:3] else 1
        counter = {"n": 0}

        def nth_call(*_: object) -> bool:
            counter["n"] += 1
            return counter["n"] == nth

        events = [app_event(i, "created", "slack", channel, f"durable app {i}") for i in range(size)]
        users = [tb.slack.ids["alice"], tb.slack.ids["bob"]]
        deliveries = [tb.slack.post_user_message(channel, f"durable webhook {i}", users[i % 2])
                      for i in range(size)] if cut in CUTS[3:] else []
        hold = wire.hold(lambda seen: seen.endpoint == "chat.postMessage" and nth_call())
        if cut != CUTS[1]:
            hold.times = 0
        exporter_cut = dies_in(exporter_module.Exporter, "deliver", victim,
                               after=nth_call if cut == CUTS[2] else None)
        inbox_cut = dies_in(inbox_module, "ingest", victim, before=nth_call if cut == CUTS[4] else None,
                            after=nth_call if cut == CUTS[5] else None)
        with exporter_cut, inbox_cut:
            if cut in CUTS[:3]:
                for event in events:
                    response = await post_event(victim.api, event)
                    row.expect(response.status_code == 202, f"event answered {response.status_code}")
            else:
                for delivery in deliveries:
                    response = await deliver_slack(victim.api, tb, integration, delivery)
                    row.expect(response.status_code == 200, f"webhook answered {response.status_code}")
            if cut == CUTS[1]:
                await asyncio.wait_for(hold.reached.wait(), 30)
                await victim.die()
            elif works:
                await wait_for(lambda: victim.dead, what=f"the crash at {cut}")
            else:
                await victim.die()
        await asyncio.sleep(0)
        row.expect(victim.dead, f"{cut}: the replica never reached its cut point")
        left = (await store.outbox_counts()) if cut in CUTS[:3] else (await store.inbox_counts())
        row.fact("items_left_by_crashes", left.get("queued", 0) + left.get("sending", 0) + left.get("pending", 0))

        survivor = await tb.replica()
        tb.clock.advance(tb.daemon.settings.lease_ttl_s + 1)  # the dead replica's claims expire
        await settle(store, survivor)
        # Callbacks the dead replica was sending are taken over once their claims expire too.
        tb.clock.advance(tb.daemon.settings.lease_ttl_s + 1)
        await settle(store, survivor)

        row.tally = await tally_slack(tb.api, integration["id"], tb.slack, [channel])
        if cut in CUTS[:3]:
            bot = [m["text"] for m in tb.slack.truth(channel) if m["user"] == tb.slack.bot_user_id]
            row.tally.add(compare_exports([e["message"]["text"] for e in events], bot))
            items = [await store.find_outbox("cust-1", e["id"]) for e in events]
            row.expect(all(i.status == "sent" for i in items), f"{cut}: events not all sent")
        else:
            told: dict[str, set[str]] = defaultdict(set)
            for callback in tb.app.received:
                if callback["type"] == "message.created":
                    told[callback["message"]["text"]].add(callback["id"])
            wrong = [f"durable webhook {i}" for i in range(size) if len(told[f"durable webhook {i}"]) != 1]
            row.expect(not wrong, f"{cut}: not announced exactly once: {wrong[:3]}")
            counts = await store.inbox_counts(integration["id"])
            row.expect(counts == {"pending": 0, "done": size, "failed": 0}, f"{cut}: inbox {counts}")
            row.fact("callbacks_repeated", len([c for c in tb.app.received if c["type"] == "message.created"])
                     - sum(len(ids) for ids in told.values()))
    return row


@timed
async def run(size: int, seed: int = 0) -> Row:
    """Each of the six cut points once, with ``size`` events or webhooks in hand."""
    row = Row(NAME)
    for cut in CUTS:
        row.merge(await durability_once(cut, size, seed))
    return row
