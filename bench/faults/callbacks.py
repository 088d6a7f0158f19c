"""Scenario 9: app callbacks across a crash.

A replica imports a Slack workspace with app callbacks on and is killed right after a page of
messages was written, before that page's callbacks were queued. A fresh engine on the same
store finishes the import and sweeps the callbacks the dead one owed. Every imported message
must reach the app as exactly one ``message.created`` callback id (the app dedupes on the id):
none lost, none under two ids.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from bench.faults.harness import (
    create_slack,
    dies_in,
    mortal,
    seed_channel,
    slack_pages,
    survivor_finishes_import,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import Row, Tally, slack_truth
from syncd.engine import ingest as ingest_module
from syncd.engine.notifier import OWED_GRACE_S

NAME = "9 callbacks across a crash"
PAGE = 4


def _workspace(tb) -> None:
    seed_channel(tb.slack, "general", 9)
    seed_channel(tb.slack, "random", 6, start=1_700_100_000)


def tally_callbacks(received: list[dict], truth_ids: set[str]) -> Tally:
    """One distinct ``message.created`` callback id per platform message."""
    ids_by_message: dict[str, set[str]] = defaultdict(set)
    for callback in received:
        if callback.get("type") == "message.created":
            ids_by_message[callback["message"]["externalMessageId"]].add(callback["id"])
    tally = Tally(expected=len(truth_ids), stored=len(set(ids_by_message) & truth_ids))
    for external_id in sorted(truth_ids):
        ids = ids_by_message.get(external_id, set())
        if not ids:
            tally.lost += 1
            tally.notes.append(f"{external_id}: no callback")
        elif len(ids) > 1:
            tally.duplicated += 1
            tally.notes.append(f"{external_id}: {len(ids)} callback ids")
    return tally


async def crash_once(page: int, seed: int = 0) -> Row:
    row = Row(NAME, runs=1)
    with slack_pages(PAGE):
        async with testbed(seed) as (tb, _wire):
            _workspace(tb)
            victim = await mortal(tb)
            counter = {"pages": 0}

            def nth_page(args: tuple, kwargs: dict) -> bool:
                counter["pages"] += 1
                return counter["pages"] == page

            with dies_in(ingest_module, "queue_callbacks", victim, before=nth_page):
                integration = await create_slack(victim.api, tb)
                await wait_for(lambda: victim.dead, what=f"the crash before page {page}'s callbacks")
            owed = len(await tb.daemon.store.owed_callbacks(tb.clock.now() + timedelta(days=1)))
            # Its resume (at start, then on schedule) sweeps what the dead replica owed.
            tb.clock.advance(OWED_GRACE_S + 1)
            survivor = await survivor_finishes_import(tb, integration["id"])
            truth = {m.external_message_id for c in tb.slack.channels
                     for m in slack_truth(tb.slack, c).values() if not m.deleted}
            await wait_for(lambda: len({c["id"] for c in tb.app.received}) >= len(truth),
                           what="the callbacks to reach the app")
            await survivor.engine.outbox.notify.stop(5)
            row.tally = tally_callbacks(tb.app.received, truth)
            row.fact("callbacks_received", len(tb.app.received))
            row.fact("owed_at_crash", owed)
            row.expect(owed > 0, f"page {page}: the crash left no owed callback to sweep")
            left = await tb.daemon.store.owed_callbacks(tb.clock.now() + timedelta(days=1))
            row.expect(left == [], f"page {page}: {len(left)} callbacks still owed after the sweep")
    return row


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` crashes, each before the callbacks of another page."""
    row = Row(NAME)
    for n in range(size):
        row.merge(await crash_once(1 + n % 4, seed + n))
    row.fact("crashes", size)
    return row
