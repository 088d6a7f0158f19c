"""Scenario 4: echo races at scale.

The app exports messages to Slack through two replicas; Slack delivers each message's echo
(the ``message`` event of the bot's own post) before the send reply is back (and it is fully
processed by then), during it (acknowledged while the reply is being recorded), or after it,
and sometimes twice. Each app message must end as exactly one stored message carrying the
app's id and Slack's id, and the app must not be told about its own messages.
"""

from __future__ import annotations

import asyncio
import random
import re

from bench.faults.harness import (
    app_event,
    create_slack,
    deliver_slack,
    imported,
    post_event,
    seed_channel,
    settle,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import (
    Row,
    compare_exports,
    stored_chats,
    stored_messages,
    tally_slack,
)
from syncd.providers.slack.sim import SlackDelivery

NAME = "4 echo races"
MODES = ("before", "during", "after")


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` app messages, each echo's timing drawn at random."""
    row = Row(NAME, runs=1)
    rng = random.Random(seed)
    modes = {i: rng.choice(MODES) for i in range(size)}
    twice = {i for i in range(size) if rng.random() < 0.2}
    async with testbed(seed, run=True) as (tb, wire):
        api, store = tb.api, tb.daemon.store
        channels = [seed_channel(tb.slack, "echo-a", 3), seed_channel(tb.slack, "echo-b", 3, start=1_700_100_000)]
        integration = await create_slack(api, tb)
        await wait_for(lambda: imported(store, integration["id"]), what="the import")
        other = await tb.replica()
        late: list[asyncio.Task[None]] = []

        async def processed(delivery: SlackDelivery) -> bool:
            item = await store.inbox.find_one({"deliveryId": delivery.event_id})
            return item is not None and item["status"] == "done"

        async def deliver(delivery: SlackDelivery, i: int) -> None:
            await deliver_slack(api, tb, integration, delivery)
            if i in twice:
                await deliver_slack(api, tb, integration, tb.slack.retry(delivery))

        async def after_the_reply(delivery: SlackDelivery, i: int) -> None:
            async def sent() -> bool:
                item = await store.find_outbox("cust-1", f"evt-created-{i}")
                return item is not None and item.status == "sent"
            await wait_for(sent, what=f"the send of app message {i}")
            await deliver(delivery, i)

        async def on_echo(delivery: SlackDelivery) -> None:
            found = re.fullmatch(r"echo (\d+)", delivery.payload["event"].get("text") or "")
            if found is None:
                return
            i = int(found.group(1))
            if modes[i] == "before":
                await deliver(delivery, i)
                await wait_for(lambda: processed(delivery), what="the echo to be processed")
            elif modes[i] == "during":
                late.append(asyncio.create_task(deliver(delivery, i)))
                await asyncio.sleep(0)
            else:
                late.append(asyncio.create_task(after_the_reply(delivery, i)))

        tb.slack.on_echo = on_echo
        callbacks_before = len(tb.app.received)
        for i in range(size):
            response = await post_event(api, app_event(i, "created", "slack", channels[i % 2], f"echo {i}"))
            row.expect(response.status_code == 202, f"event {i} answered {response.status_code}")
        await settle(store, tb.daemon, other, timeout_s=120)
        await asyncio.gather(*late)
        await settle(store, tb.daemon, other, timeout_s=120)

        row.tally = await tally_slack(api, integration["id"], tb.slack, channels)
        bot = [m["text"] for c in channels for m in tb.slack.truth(c) if m["user"] == tb.slack.bot_user_id]
        row.tally.add(compare_exports([f"echo {i}" for i in range(size)], bot))
        chats = await stored_chats(api, integration["id"])
        docs = [d for c in channels for d in await stored_messages(api, chats[c]["id"])]
        for i in range(size):
            mine = [d for d in docs if d.get("text") == f"echo {i}"]
            row.expect(len(mine) == 1 and mine[0]["appMessageId"] == f"app-{i}" and mine[0]["externalMessageId"],
                       f"app message {i} ({modes[i]}) stored as {[(d['origin'], d['externalMessageId']) for d in mine]}")
        told = [c for c in tb.app.received[callbacks_before:] if (c["message"].get("text") or "").startswith("echo ")]
        row.fact("callbacks_about_own_messages", len(told))
        row.expect(not told, f"the app was told {len(told)} times about its own messages")
        for mode in MODES:
            row.fact(f"echo_{mode}", sum(1 for m in modes.values() if m == mode))
        row.fact("echo_twice", len(twice))
    return row
