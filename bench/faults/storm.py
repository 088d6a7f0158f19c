"""Scenario 2: provider storm.

About 30 % of all calls to Slack and Gmail fail, during the import, the polls and the exports:
429 with a Retry-After of 0 to 2 s, 500/502/503, connection resets and timeouts. Everything
must still complete: the stored state equals the platforms', every app message is sent
exactly once, nothing keeps retrying once the work is done, and what was dead-lettered on
purpose (events for a channel that does not exist) is visible with its error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.faults.harness import (
    app_event,
    create_gmail,
    create_slack,
    deliver_slack,
    imported,
    post_event,
    push_gmail,
    seed_channel,
    seed_mailbox,
    settle,
    slack_pages,
    testbed,
    timed,
)
from bench.faults.report import Row, compare_exports, tally_gmail, tally_slack
from syncd.engine.poller import PollBusy
from syncd.kit.errors import ProviderError
from syncd.sim.base import FaultPlan, Faults

NAME = "2 provider storm"
#: The simulators answer 429 or 5xx to this share of the calls that reach them...
SIM_RATE_LIMIT, SIM_SERVER_ERROR = 0.11, 0.125
#: ...and the network drops this share before they get there: 0.1 + 0.9 * 0.221 = 30 %.
DROPPED = 0.10
MAX_ROUNDS = 40


def storm_plan() -> FaultPlan:
    return FaultPlan(rate_limit_probability=SIM_RATE_LIMIT, retry_after_s=0, retry_after_max_s=2,
                     server_error_probability=SIM_SERVER_ERROR, server_error_statuses=(500, 502, 503))


class ScaledSleep:
    """Waits between HTTP retries as asked, at 1/100 of the time, and remembers the longest."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.count = 0

    async def __call__(self, seconds: float) -> None:
        self.count += 1
        self.longest = max(self.longest, seconds)
        await asyncio.sleep(seconds / 100)


async def _until_imported(engine: Any, store: Any, integration_id: str, row: Row) -> None:
    """Resume the import (as the daemon's reconcile does every poll interval) until done."""
    for _ in range(MAX_ROUNDS):
        await engine.importer.wait()
        if await imported(store, integration_id):
            return
        row.fact("import_resumes", 1)
        await engine.resume()
    row.problems.append(f"import of {integration_id} did not complete in {MAX_ROUNDS} rounds")


async def _poll_until_clean(engine: Any, store: Any, daemon: Any, integration_ids: list[str], row: Row) -> None:
    """Poll every integration (as the scheduler would) until one round succeeds for all."""
    for _ in range(MAX_ROUNDS):
        clean = True
        for integration_id in integration_ids:
            try:
                await engine.poller.poll(integration_id)
            except (ProviderError, PollBusy):
                row.fact("polls_failed", 1)
                clean = False
        await settle(store, daemon)
        if clean:
            return
    row.problems.append(f"no clean poll round in {MAX_ROUNDS}")


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` app messages and ``size`` platform messages live, on top of a history of
    about ``2 * size`` messages, with a third of the Slack ones edited or deleted."""
    row = Row(NAME, runs=1)
    sleep = ScaledSleep()
    # Two HTTP retries instead of five, so failures reach the engine's own retries (outbox,
    # inbox, import resume, the next poll) instead of being absorbed by the HTTP layer. (With
    # one, a Gmail poll of a few dozen changes never succeeds whole: see the README.)
    overrides = dict(retry_base_s=0.01, retry_max_s=2.0, poll_lookback_s=3600, http_max_retries=2)
    with slack_pages(10):
        async with testbed(seed, run=True, sleep=sleep, callbacks=False, **overrides) as (tb, wire):
            daemon, store, engine, api = tb.daemon, tb.daemon.store, tb.daemon.engine, tb.api
            channels = [seed_channel(tb.slack, f"storm-{c}", max(3, size // 3), start=1_700_000_000 + c * 100_000,
                                     thread_replies=3) for c in range(3)]
            threads = seed_mailbox(tb.gmail, max(2, size // 10), 3)
            for sim in (tb.slack, tb.gmail):
                sim.faults = Faults(plan=storm_plan(), seed=seed)
            wire.drop_probability = DROPPED

            # Import under the storm.
            slack = await create_slack(api, tb)
            gmail = await create_gmail(api, tb)
            for integration in (slack, gmail):
                await _until_imported(engine, store, integration["id"], row)

            # Live traffic both ways under the storm.
            users = [tb.slack.ids["alice"], tb.slack.ids["bob"]]
            posted = [tb.slack.post_user_message(channels[i % 3], f"live {i}", users[i % 2]) for i in range(size)]
            for i, delivery in enumerate(posted):
                ts, channel = delivery.payload["event"]["ts"], delivery.payload["event"]["channel"]
                if i % 3 == 1:
                    tb.slack.edit_message(channel, ts, f"live {i} edited")  # the poll reads the edit
                elif i % 3 == 2:
                    # Slack's history no longer shows a deleted message: only its webhook says so.
                    await deliver_slack(api, tb, slack, tb.slack.delete_message(channel, ts))
            sender = "Outsider <outsider@example.org>"
            for i in range(max(2, size // 5)):
                thread = threads[i % len(threads)] if i % 2 else None
                tb.gmail.add_incoming(thread, sender, f"Re: Topic {i % len(threads)}" if thread else f"New {i}",
                                      f"gmail live {i}")
            tb.gmail.trash(tb.gmail.truth(threads[0])[0]["id"])

            app_texts: dict[str, str] = {}
            for i in range(size):
                app_texts[f"app-{i}"] = text = f"storm app {i}"
                await post_event(api, app_event(i, "created", "slack", channels[i % 3], text))
            for i in range(0, size, 4):
                app_texts[f"app-{i}"] = text = f"storm app {i} edited"
                await post_event(api, app_event(i, "updated", "slack", None, text))
            for i in range(3, size, 6):
                await post_event(api, app_event(i, "deleted", "slack", None))
            gmail_texts = []
            for i in range(max(2, size // 10)):
                gmail_texts.append(text := f"gmail app {i}")
                await post_event(api, app_event(f"g{i}", "created", "gmail", threads[i % len(threads)], text))
            doomed = [app_event(f"x{i}", "created", "slack", "C0NOSUCHCHAN", f"nowhere {i}") for i in range(2)]
            for event in doomed:
                await post_event(api, event)
            for _ in range(3):
                await push_gmail(api, tb, gmail)

            await settle(store, daemon)
            await _poll_until_clean(engine, store, daemon, [slack["id"], gmail["id"]], row)
            await settle(store, daemon)

            # Nothing keeps knocking at the platforms once the work is done.
            before = wire.count()
            await asyncio.sleep(0.3)
            row.expect(wire.count() == before, f"{wire.count() - before} platform calls after the work was done")

            for sim in (tb.slack, tb.gmail):
                sim.faults.reset()
            wire.drop_probability = 0.0
            tally = await tally_slack(api, slack["id"], tb.slack, channels)
            tally.add(await tally_gmail(api, gmail["id"], tb.gmail))
            bot = [m["text"] for c in channels for m in tb.slack.truth(c) if m["user"] == tb.slack.bot_user_id]
            tally.add(compare_exports(app_texts.values(), bot))
            sent = [m["text"] for t in threads for m in tb.gmail.truth(t) if "SENT" in m["labelIds"]]
            tally.add(compare_exports(gmail_texts, sent))
            row.tally = tally

            # Dead letters are visible with their error: the event's own id answers with it.
            for event in doomed:
                answer = (await post_event(api, event)).json()
                row.expect(answer.get("status") == "dead" and "channel_not_found" in answer.get("error", ""),
                           f"dead-lettered event {event['id']} answered {answer}")
            dead = [await store.find_outbox("cust-1", e["id"]) for e in doomed]
            row.fact("dead_letters_visible", sum(1 for item in dead if item.status == "dead" and item.error))
            attempts = [i.attempts for i in await store.list_outbox(limit=1000)]
            row.fact("max_outbox_attempts", max(attempts, default=0))
            row.expect(max(attempts, default=0) <= tb.daemon.settings.outbox_max_attempts, "an event retried past its budget")

            faults = sum(n for status, n in wire.statuses.items() if status >= 429) + sum(wire.dropped.values())
            row.fact("platform_calls", wire.count())
            row.fact("max_fault_percent", round(100 * faults / max(1, wire.count())))
            row.fact("max_retry_after_s", round(sleep.longest))
    return row
