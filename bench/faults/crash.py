"""Scenario 1: crash during import.

A replica imports a Slack workspace in small pages and is killed abruptly at one cut point
per run: mid-page (a history or thread-replies request in flight), after a page was fetched
but before it was stored, or after it was stored but before its checkpoint. A fresh engine is
then started on the same store; once the dead owner's lease has expired it finishes the
import. The final state must equal the simulator's, and at most one page may be fetched
twice per crash.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

from bench.faults.harness import (
    Seen,
    Wire,
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
from bench.faults.report import Row, tally_slack
from syncd.engine import importer as importer_module

NAME = "1 crash during import"
PAGE = 4
KINDS = ("mid-page", "after fetch, before store", "after store, before checkpoint")


@dataclass(frozen=True)
class CutPoint:
    kind: str
    n: int  # the n-th history/replies request (mid-page) or the n-th page (the others)

    def __str__(self) -> str:
        return f"{self.kind} #{self.n}"


def _workspace(tb) -> None:
    seed_channel(tb.slack, "general", 11, thread_replies=5)  # 3 pages, a thread on the first
    seed_channel(tb.slack, "random", 9, start=1_700_100_000)  # 3 pages
    seed_channel(tb.slack, "support", 6, start=1_700_200_000, thread_replies=2)  # 2 pages


# What one uninterrupted import of ``_workspace`` does: 8 pages, 11 page requests (history
# and thread replies).
PAGES, REQUESTS = 8, 11


def cut_points(size: int, seed: int) -> list[CutPoint]:
    """``size`` distinct cut points, every kind before any repeats, spread over the import."""
    by_kind = [
        [CutPoint(KINDS[0], n) for n in range(1, REQUESTS + 1)],
        [CutPoint(KINDS[1], n) for n in range(1, PAGES + 1)],
        [CutPoint(KINDS[2], n) for n in range(1, PAGES + 1)],
    ]
    rng = random.Random(seed)
    for points in by_kind:
        rng.shuffle(points)
    chosen: list[CutPoint] = []
    while len(chosen) < size and any(by_kind):
        for points in by_kind:
            if points and len(chosen) < size:
                chosen.append(points.pop())
    return chosen


def _page_request(seen: Seen) -> bool:
    return seen.sim == "slack" and seen.endpoint in ("conversations.history", "conversations.replies")


def refetched_pages(wire: Wire) -> int:
    """History pages asked for more than once (the same channel and cursor)."""
    pages = Counter((s.params.get("channel"), s.params.get("cursor")) for s in wire.calls("slack", "conversations.history"))
    return sum(n - 1 for n in pages.values())


async def crash_once(point: CutPoint, seed: int = 0) -> Row:
    row = Row(NAME, runs=1)
    with slack_pages(PAGE):
        async with testbed(seed) as (tb, wire):
            _workspace(tb)
            victim = await mortal(tb)
            counter = {"pages": 0, "requests": 0}

            def nth_request(seen: Seen) -> bool:
                if not _page_request(seen):
                    return False
                counter["requests"] += 1
                return point.kind == KINDS[0] and counter["requests"] == point.n

            def nth_page(kind: str):
                def pick(args: tuple, kwargs: dict) -> bool:
                    if kwargs.get("source") != "import" or point.kind != kind:
                        return False
                    counter["pages"] += 1
                    return counter["pages"] == point.n
                return pick

            hold = wire.hold(nth_request)
            with dies_in(importer_module, "ingest", victim, before=nth_page(KINDS[1]), after=nth_page(KINDS[2])):
                integration = await create_slack(victim.api, tb)
                if point.kind == KINDS[0]:
                    await asyncio.wait_for(hold.reached.wait(), 30)
                    await victim.die()
                else:
                    await wait_for(lambda: victim.dead, what=f"the crash at {point}")
                    await asyncio.sleep(0)  # the victim's death finishes
            row.expect(victim.dead, f"{point}: the replica never reached its cut point")
            requests_before = wire.count("slack")

            await survivor_finishes_import(tb, integration["id"])

            row.tally = await tally_slack(tb.api, integration["id"], tb.slack)
            refetched = refetched_pages(wire)
            row.fact("max_pages_refetched", refetched)
            row.fact("requests_after_crash", wire.count("slack") - requests_before)
            row.expect(refetched <= 1, f"{point}: {refetched} pages fetched again")
            row.expect(await tb.daemon.store.lease_holder(f"import:{integration['id']}") is None,
                       f"{point}: the import lease is still held")
    return row


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` crashes, each at its own cut point."""
    row = Row(NAME)
    for point in cut_points(size, seed):
        row.merge(await crash_once(point, seed))
    row.fact("cut_points", size)
    return row
