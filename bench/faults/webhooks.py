"""Scenario 3: webhook chaos.

People post, reply in threads, edit (several times) and delete in a Slack workspace; every
Events API delivery reaches syncd one to three times (Slack's retries: same event, fresh
signature), in shuffled order and partly late, so edits arrive before their message,
deletes before edits, and old edits after new ones. Meanwhile polls read the same messages.
The stored state must equal Slack's: the latest edit by Slack's timestamp wins, deletes stay
deleted.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from bench.faults.harness import (
    create_slack,
    deliver_slack,
    imported,
    seed_channel,
    settle,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import Row, tally_slack
from syncd.providers.slack.sim import SlackDelivery

NAME = "3 webhook chaos"
ROUNDS = 5


def _subject(delivery: SlackDelivery) -> tuple[str, str, str]:
    """(kind, channel, ts of the message it is about)."""
    event = delivery.payload["event"]
    subtype = event.get("subtype")
    if subtype == "message_changed":
        return "edit", event["channel"], event["message"]["ts"]
    if subtype == "message_deleted":
        return "delete", event["channel"], event["deleted_ts"]
    return "create", event["channel"], event["ts"]


def _inversions(order: list[SlackDelivery]) -> tuple[int, int]:
    """How many edits came before their message's first create, and deletes before an edit."""
    first: dict[tuple[str, str, str], int] = {}
    for i, delivery in enumerate(order):
        kind, channel, ts = _subject(delivery)
        first.setdefault((kind, channel, ts), i)
    edit_first = sum(1 for (k, c, t), i in first.items() if k == "edit" and i < first.get(("create", c, t), -1))
    delete_first = sum(1 for (k, c, t), i in first.items() if k == "delete" and i < first.get(("edit", c, t), -1))
    return edit_first, delete_first


def _activity(sim: Any, rng: random.Random, channels: list[str], users: list[str], n: int, live: list) -> list[SlackDelivery]:
    """``n`` things people do at Slack; returns the deliveries Slack would send."""
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.5 or len(live) < 3:
            channel = rng.choice(channels)
            parents = [m for m in live if m[0] == channel and m[2] is None]
            thread = rng.choice(parents)[1] if parents and rng.random() < 0.25 else None
            delivery = sim.post_user_message(channel, f"chaos {len(out)}-{rng.random():.6f}", rng.choice(users),
                                             thread_ts=thread)
            live.append((channel, delivery.payload["event"]["ts"], thread))
        elif roll < 0.8:
            channel, ts, _ = rng.choice(live)
            delivery = sim.edit_message(channel, ts, f"edited {len(out)}-{rng.random():.6f}")
        else:
            # A deleted thread parent's replies stay (Slack shows them under a tombstone).
            channel, ts, _ = live.pop(rng.randrange(len(live)))
            delivery = sim.delete_message(channel, ts)
        out.append(delivery)
    return out


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` things done at Slack, delivered 1-3 times each, shuffled, racing polls."""
    row = Row(NAME, runs=1)
    rng = random.Random(seed)
    async with testbed(seed, run=True, callbacks=False) as (tb, wire):
        api, store, engine = tb.api, tb.daemon.store, tb.daemon.engine
        channels = [seed_channel(tb.slack, "chaos-a", 5, thread_replies=2),
                    seed_channel(tb.slack, "chaos-b", 5, start=1_700_100_000)]
        integration = await create_slack(api, tb)
        await wait_for(lambda: imported(store, integration["id"]), what="the import")
        users = [tb.slack.ids[n] for n in ("alice", "bob", "carol")]

        live: list[tuple[str, str, str | None]] = []
        pool: list[SlackDelivery] = []
        delivered: list[SlackDelivery] = []

        # Every run starts with the two orders that matter most, whatever the shuffle does:
        # an edit before its message, and a delete before the edit before the message.
        x = tb.slack.post_user_message(channels[0], "edited before it was created", users[0])
        y = tb.slack.post_user_message(channels[1], "deleted before it was edited", users[1])
        x_ts, y_ts = x.payload["event"]["ts"], y.payload["event"]["ts"]
        x_edit = tb.slack.edit_message(channels[0], x_ts, "edited before it was created, edited")
        y_edit = tb.slack.edit_message(channels[1], y_ts, "deleted before it was edited, edited")
        y_delete = tb.slack.delete_message(channels[1], y_ts)
        for delivery in (x_edit, x, y_delete, y_edit, y):
            response = await deliver_slack(api, tb, integration, delivery)
            row.expect(response.status_code == 200, f"delivery answered {response.status_code}")
            delivered.append(delivery)
        live.append((channels[0], x_ts, None))
        per_round = max(1, size // ROUNDS)
        for round_ in range(ROUNDS):
            done = size - per_round * round_ if round_ == ROUNDS - 1 else per_round
            for delivery in _activity(tb.slack, rng, channels, users, done, live):
                pool += [delivery] + [tb.slack.retry(delivery, attempt) for attempt in range(1, rng.randint(1, 3))]
            rng.shuffle(pool)
            # Most of what is due now arrives now; the rest arrives in a later round.
            cut = len(pool) if round_ == ROUNDS - 1 else int(len(pool) * 0.7)
            now, pool = pool[:cut], pool[cut:]
            delivered += now

            async def deliver_all(batch: list[SlackDelivery]) -> None:
                for delivery in batch:
                    response = await deliver_slack(api, tb, integration, delivery)
                    row.expect(response.status_code == 200, f"delivery answered {response.status_code}")

            # Two delivery streams and a poll of the same messages, all at once.
            await asyncio.gather(deliver_all(now[0::2]), deliver_all(now[1::2]), engine.poll(integration["id"]))
            row.fact("polls_racing", 1)
        await settle(store, tb.daemon)

        row.tally = await tally_slack(api, integration["id"], tb.slack, channels)
        edit_first, delete_first = _inversions(delivered)
        row.fact("deliveries", len(delivered))
        row.fact("edit_before_create", edit_first)
        row.fact("delete_before_edit", delete_first)
        counts = await store.inbox_counts(integration["id"])
        row.expect(counts["failed"] == 0, f"{counts['failed']} deliveries failed")
    return row
