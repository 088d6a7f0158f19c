"""Benchmark: each platform's initial import against its own documented rate limit.

For every platform whose manifest declares history, found by discovery so that a platform
added later is covered without editing this file: its simulator seeds many chats
(``Trial.trial_history``) and is served behind :class:`bench.ratelimit.RateLimited`, holding
every request to the budget the manifest declares (``api.rateLimit``: requests, or quota units
with their ``costs``, per ``perS`` seconds), 429 + ``Retry-After`` beyond it, each answer after
150 ms. The daemon imports from ``POST /integrations`` until every chat is done.

The budget is enforced in windows shorter than the documented one where that one is long
(Slack's 50 per minute becomes 5 per 6 s): the same rate, granted in finer steps, which is
stricter than the platform (no client can burst a minute's budget at once). The figure is the
share of the budget the import used in every full window between its first and its last
request, with failed pages, duplicates and missing messages counted from the store. The
target is judged on the windows that open after the chats are listed (``budget_use_after_listing``):
a listing is a walk of pages, each asking for the next, so no number of lanes makes it use a
budget; ``budget_use`` (every full window, the listing's included) and ``listing_windows`` are
reported beside it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import Daemon, Record, base_url_env
from bench.ratelimit import RateLimited
from syncd.kit.loader import load_all
from syncd.kit.manifest import Manifest, RateLimit
from syncd.providers import simulator as simulator_of
from syncd.sim.base import ServerThread

NAME = "import_limits"
TARGET = 0.95
PER_CHAT = 10


@dataclass(frozen=True)
class Size:
    windows: int  # full budget windows the import should last
    latency_s: float = 0.15
    #: Requests of the dearest read a window grants at least (a window is never under 1 s):
    #: fewer make a long documented window (X's 15 minutes) shorter at the same rate.
    per_window: int = 5
    #: At most this many platforms, the quickest to import first; None: every one. The test
    #: suite's smoke run takes one.
    platforms: int | None = None


QUICK = Size(windows=2, per_window=4)
FULL = Size(windows=8)
TINY = Size(windows=1, latency_s=0.02, platforms=1)


@dataclass(frozen=True)
class Budget:
    """A manifest's rate limit as the limiter enforces it: ``units`` per ``window_s``."""

    units: int
    window_s: float
    costs: tuple[tuple[re.Pattern[str], int], ...]

    @classmethod
    def of(cls, limit: RateLimit, per_window: int) -> Budget:
        costs = tuple((re.compile(p), c) for p, c in limit.costs.items())
        # History is read with GETs: a window grants a few of the dearest of those.
        typical = max((c for p, c in limit.costs.items() if p.lstrip("^").startswith("GET")), default=1)
        window = max(1.0, limit.per_s * per_window * typical / limit.requests)
        return cls(max(1, round(limit.requests * window / limit.per_s)), window, costs)

    def cost(self, method: str, path: str) -> int:
        line = f"{method} {path}"
        return next((c for pattern, c in self.costs if pattern.search(line)), 1)


def platforms() -> tuple[dict[str, Manifest], dict[str, str]]:
    measured, skipped = {}, {}
    for name, loaded in sorted(load_all().items()):
        manifest = loaded.manifest
        if not manifest.capabilities.history:
            continue
        if manifest.api is None or manifest.api.rate_limit is None:
            skipped[name] = "its manifest declares no rate limit (api.rateLimit)"
            continue
        try:
            simulator_of(name)
        except KeyError:
            skipped[name] = "no simulator"
            continue
        measured[name] = manifest
    return measured, skipped


def _chats(manifest: Manifest, limit: RateLimit, size: Size) -> tuple[int, int]:
    """Chats of one history page each (at most ``PER_CHAT`` messages: seeding stays short, and
    the figure is the budget used, not messages per page),
    enough for ``size.windows`` full windows and one more."""
    assert manifest.api is not None
    typical = max((c for p, c in limit.costs.items() if p.lstrip("^").startswith("GET")), default=1)
    budget = Budget.of(limit, size.per_window)
    chats = max(2, budget.units // typical * (size.windows + 1))
    return chats, min(manifest.api.page_size, PER_CHAT)


def _duration(manifest: Manifest, size: Size) -> tuple[float, int]:
    """How long an import of ``manifest``'s platform takes at ``size`` (its windows), and how
    many messages it seeds."""
    assert manifest.api is not None and manifest.api.rate_limit is not None
    chats, per_chat = _chats(manifest, manifest.api.rate_limit, size)
    return Budget.of(manifest.api.rate_limit, size.per_window).window_s * (size.windows + 1), chats * per_chat


async def measure(platform: str, manifest: Manifest, size: Size,
                  started_import: Callable[[], None] | None = None,
                  go: asyncio.Event | None = None) -> dict[str, Any] | str:
    """The import of ``platform``'s seeded history; ``started_import`` is called once the daemon
    is up and the import under way. With ``go``, the simulator is seeded and the daemon started
    at once, and the import waits for it."""
    assert manifest.api is not None and manifest.api.rate_limit is not None
    budget = Budget.of(manifest.api.rate_limit, size.per_window)
    sim = simulator_of(platform)
    chats, per_chat = _chats(manifest, manifest.api.rate_limit, size)
    begun = time.monotonic()
    # Off the event loop: seeding takes seconds for some platforms (Gmail renders every message),
    # and the imports running beside this one are watched from that loop.
    expected = await asyncio.to_thread(sim.trial_history, chats, per_chat)
    if expected is None:
        return "its simulator seeds no history (trial_history)"
    limited = RateLimited(sim, budget.units, window_s=budget.window_s, latency_s=size.latency_s,
                          cost=budget.cost)
    seeded = time.monotonic()
    with ServerThread(limited) as served:
        base_urls = sim.trial_base_urls(served.url)
        async with Daemon(base_urls=base_urls, env=base_url_env(base_urls)) as daemon:
            up = time.monotonic() - seeded
            if go is not None:
                await go.wait()
            started = time.monotonic()
            created = await daemon.call("POST", "/integrations", json={
                "platform": platform, "customerId": f"bench-import-{platform}",
                "credentials": sim.trial_credentials()})
            integration = created["integration"]["id"]
            if started_import is not None:
                started_import()
            # Looked at often enough to see the end within a tenth of a window, and no oftener:
            # each look is a request the daemon answers beside the import it measures.
            every = min(0.5, max(0.05, budget.window_s / 10))
            # Bounded: an import that uses a tenth of its budget is reported, not waited for.
            deadline = started + 30 + 10 * (size.windows + 2) * budget.window_s
            timed_out, listed = False, None
            while True:
                stats = await daemon.stats(integration=integration)
                phases = [s["phase"] for s in stats["sync"]]
                top = next((s for s in stats["sync"] if s["chatId"] is None), None)
                if listed is None and top is not None and top["finishedAt"] is not None:
                    # When the daemon finished listing the chats, on this process's clock.
                    listed = time.monotonic() - (time.time() - top["finishedAt"])
                if len(phases) > 1 and not any(p in ("pending", "importing") for p in phases):
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    break
                await asyncio.sleep(every)
            elapsed = time.monotonic() - started
            stats = await daemon.stats(integration=integration, ids=1)
    # What the harness spent beside the import: the run's length is mostly these.
    harness = {"seed_s": round(seeded - begun, 1), "daemon_start_s": round(up, 1),
               "daemon_stop_s": round(time.monotonic() - started - elapsed, 1)}
    used = limited.window_use()
    full = used[:-1]  # the last window is cut short by the import's end
    # Windows that opened once the chats were listed: the listing is a walk of pages, each
    # asking for the next, so it cannot use a budget however many lanes wait for it.
    after = full[limited.window_at(listed) + 1:] if listed is not None else []
    failed = sum(1 for s in stats["sync"] if s["phase"] != "done" or s["lastError"])
    return {
        "budget": f"{budget.units} per {budget.window_s:g} s",
        "documented": f"{manifest.api.rate_limit.requests} per {manifest.api.rate_limit.per_s:g} s",
        "budget_use": round(sum(full) / (budget.units * len(full)), 3) if full else None,
        "budget_use_after_listing": round(sum(after) / (budget.units * len(after)), 3) if after else None,
        "listing_windows": len(full) - len(after),
        "windows": len(used), "window_use": used[:12],
        "messages": expected, "stored": stats["stored_ids"], "messages_per_s": round(stats["stored_ids"] / elapsed, 1),
        "elapsed_s": round(elapsed, 2), "requests": dict(limited.calls), "refused_429": limited.refused,
        "failed_pages": failed, "duplicates": stats["stored_ids"] - stats["distinct_ids"],
        "missing": expected - stats["distinct_ids"], "timed_out": timed_out,
        "harness": harness,
    }


async def run(size: Size = QUICK) -> list[Record]:
    measured, skipped = platforms()
    records = []
    for platform in sorted(measured, key=lambda p: _duration(measured[p], size))[size.platforms:] \
            if size.platforms is not None else []:
        skipped[platform] = "left out at this size"
        del measured[platform]
    results: dict[str, dict[str, Any] | str] = {}

    # Budgets of a few requests per window of seconds keep an import waiting, not working: each
    # of those platforms runs beside the others (its own daemon, simulator and limiter), so a
    # quick run does not wait out X's windows after Slack's. The platforms whose budgets take
    # many requests a second keep the daemon and their simulator busy: they run one after
    # another, each import from when every waiting one is under way, so that no daemon's start
    # (a few seconds of CPU) competes with their measurement (the first one's seeding and daemon
    # start go on meanwhile).
    waiting = [p for p in measured if _duration(measured[p], size)[0] > size.windows + 1]  # windows over 1 s
    under_way: set[str] = set()
    all_under_way = asyncio.Event()

    def started(platform: str) -> None:
        under_way.add(platform)
        if under_way >= set(waiting):
            all_under_way.set()

    async def one(platform: str, go: asyncio.Event | None = None) -> None:
        try:
            results[platform] = await measure(platform, measured[platform], size, lambda: started(platform), go)
        except Exception as exc:  # one platform's failure is its result, not the run's
            results[platform] = f"could not run: {exc}"[:300]
        finally:
            started(platform)

    async def one_by_one(names: list[str]) -> None:
        for platform in names:
            await one(platform, go=all_under_way)

    if not waiting:
        all_under_way.set()
    await asyncio.gather(*(one(p) for p in waiting), one_by_one([p for p in measured if p not in waiting]))
    for platform in measured:
        result = results[platform]
        if isinstance(result, str):
            skipped[platform] = result
            continue
        use = result["budget_use_after_listing"]
        clean = result["failed_pages"] == 0 and result["duplicates"] == 0 and result["missing"] == 0
        records.append(Record(
            name=f"import_limit_{platform}", value=use if use is not None else 0.0, unit="share of budget",
            baseline=1.0, ratio=use,
            target=f">= {TARGET} of {platform}'s documented limit in every full window after the chat listing "
                   "(budget_use: from the first request, listing included), 0 failed pages, 0 duplicates, "
                   "0 missing",
            meets_target=use is not None and use >= TARGET and clean, details={**result, "platform": platform}))
    worst = min((r.ratio for r in records if r.ratio is not None), default=0.0)
    records.append(Record(
        name=NAME, value=worst, unit="worst share of budget", baseline=None, ratio=worst,
        target=f">= {TARGET} on every platform with history",
        meets_target=bool(records) and all(r.meets_target for r in records) and not skipped,
        details={"platforms": sorted(r.details["platform"] for r in records), "not_measured": skipped}))
    return records
