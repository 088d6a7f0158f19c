"""Benchmark 2: history import against a platform's rate limit.

A Slack workspace of 50 channels that allows R requests per second of each Web API method
(Slack's tiers are per method; 429 + ``Retry-After`` beyond that) and answers each after
150 ms (see :mod:`bench.ratelimit`), served over loopback; the daemon
imports it from ``POST /integrations`` until every chat is done. The bound no client can
beat is R full pages of ``conversations.history`` per second, so the figure is messages per
second divided by R x page size (Slack's 200), with failed pages and duplicates counted from
the store.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench import ratelimit, slack_events
from bench.common import Daemon, Record
from syncd.kit.loader import load_manifest
from syncd.mapping import mappings_dir
from syncd.sim.base import ServerThread

#: Messages per history page the Slack connector asks for (its manifest's api.pageSize).
SLACK_PAGE = load_manifest(mappings_dir() / "slack.yaml").manifest.api.page_size

NAME = "import_rate_limited"
TARGET = 0.95


@dataclass(frozen=True)
class Size:
    chats: int
    messages: int  # per chat
    rate: int  # requests per second the platform allows


# R x page size stays well inside what one daemon core stores per second on a shared machine,
# so the figure shows how the budget is used, not how fast pages are mapped.
QUICK = Size(chats=25, messages=800, rate=10)
FULL = Size(chats=50, messages=1000, rate=10)
TINY = Size(chats=3, messages=250, rate=20)


async def import_once(size: Size, daemon: Daemon, sim, limited: ratelimit.RateLimited) -> dict:
    """Create the integration and wait for its import; what it took and what it left."""
    started = time.monotonic()
    created = await daemon.call("POST", "/integrations", json={
        "platform": "slack", "customerId": "bench-import", "credentials": slack_events.credentials(sim)})
    integration_id = created["integration"]["id"]
    deadline = started + 30 + 4 * size.chats * size.messages / (size.rate * SLACK_PAGE)
    while True:
        stats = await daemon.stats(integration=integration_id)
        phases = [s["phase"] for s in stats["sync"]]
        if len(phases) > size.chats and not any(p in ("pending", "importing") for p in phases):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"import not done: {phases.count('done')} of {size.chats + 1} done")
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    return {"elapsed_s": elapsed, "started": started, "finished": started + elapsed,
            "stats": await daemon.stats(integration=integration_id, ids=1)}


async def run(size: Size = QUICK) -> Record:
    sim = slack_events.simulator()
    ratelimit.seed(sim, size.chats, size.messages)
    # A budget per method, as Slack's: with one shared budget the few requests beside the
    # history (auth.test, conversations.list, users.list) took 4 % of a quick import's, and
    # R x page size was out of reach of any client.
    limited = ratelimit.RateLimited(sim, size.rate, per_method=True)
    with ServerThread(limited) as platform:
        async with Daemon(base_urls={"slack": platform.url}) as daemon:
            before = (await daemon.stats())["totals"]
            outcome = await import_once(size, daemon, sim, limited)
            stats = outcome["stats"]
            after = stats["totals"]
    elapsed = outcome["elapsed_s"]
    page = SLACK_PAGE
    total = size.chats * size.messages
    rate = stats["stored_ids"] / elapsed
    bound = size.rate * page
    chats = [s for s in stats["sync"] if s["chatId"] is not None]
    failed_pages = sum(1 for s in stats["sync"] if s["phase"] != "done" or s["lastError"])
    pages = sum((s["counts"] or {}).get("pages", 0) for s in chats)
    fetched = sum((s["counts"] or {}).get("fetched", 0) for s in chats)
    duplicates = (stats["stored_ids"] - stats["distinct_ids"]) + max(0, fetched - total)
    missing = total - stats["distinct_ids"]
    ratio = rate / bound
    writes = after["writes"] - before["writes"]
    return Record(
        name=NAME, value=rate, unit="messages/s", baseline=float(bound), ratio=ratio,
        target=f"ratio >= {TARGET} of R x page size, 0 failed pages, 0 duplicates",
        meets_target=ratio >= TARGET and failed_pages == 0 and duplicates == 0 and missing == 0,
        details={"chats": size.chats, "messages": total, "R_per_s": size.rate, "page_size": page,
                 "elapsed_s": round(elapsed, 3), "history_pages": pages,
                 # From the first to the last request the platform let through, and the
                 # time before and after that window (creating the integration, storing the last page).
                 "platform_window_s": round((limited.last or 0) - (limited.first or 0), 3),
                 "before_first_request_s": round((limited.first or 0) - outcome["started"], 3),
                 "after_last_request_s": round(outcome["finished"] - (limited.last or 0), 3),
                 "requests": dict(limited.calls), "budget": "R per method", "refused_429": limited.refused,
                 "failed_pages": failed_pages, "duplicates": duplicates, "missing": missing,
                 "store_writes_per_page": round(writes / pages, 3) if pages else None,
                 "store_roundtrips_per_page": round((after["total"] - before["total"]) / pages, 3) if pages else None},
    )
