"""Benchmark 6: resident memory of one daemon at scale.

One daemon process (``syncd run``'s code path) holds 1,000 Slack integrations that have
finished their import and are scheduled for polling; once every one of them has polled at
least once (so each holds its connector and HTTP client, as in steady state) its resident
set size is sampled for a while. Then a 50-chat import runs in the same daemon and the peak
RSS during it is taken. The baseline is the same process right after start, before any
integration exists. The store double counts and drops message documents here: a real
deployment keeps them, and their indexes, in the MongoDB process, not in syncd's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench import ratelimit, slack_events
from bench.common import Daemon, Record, rss_mb
from syncd.sim.base import ServerThread

TARGET_MB = 150.0


@dataclass(frozen=True)
class Size:
    integrations: int
    poll_interval_s: float
    chats: int
    messages: int  # per chat of the import


QUICK = Size(integrations=1000, poll_interval_s=5, chats=20, messages=400)
FULL = Size(integrations=1000, poll_interval_s=10, chats=50, messages=1000)
TINY = Size(integrations=20, poll_interval_s=1, chats=3, messages=50)


async def _sample(pid: int, seconds: float, every: float = 0.1) -> float:
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(every)
    return peak


async def run(size: Size = QUICK) -> list[Record]:
    sim = slack_events.simulator()
    idle_channel = sim.add_channel("idle")
    sim.add_message(idle_channel, "a message from long ago", sim.add_user("old", "Old Timer"),
                    ts=f"{int(time.time()) - 86_400}.000100")
    chats = ratelimit.seed(sim, size.chats, size.messages)
    with ServerThread(sim) as platform:
        async with Daemon(base_urls={"slack": platform.url}, slim=True,
                          poll_interval_s=size.poll_interval_s) as daemon:
            await asyncio.sleep(1.0)
            started_mb = rss_mb(daemon.pid)
            await daemon.call("POST", "/bench/seed", json={
                "count": size.integrations, "platform": "slack", "distinct": True, "chats": [idle_channel],
                "credentials": slack_events.credentials(sim)})
            deadline = time.monotonic() + 60 + 4 * size.poll_interval_s
            while (stats := await daemon.stats())["connectors"] < size.integrations:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {stats['connectors']} of {size.integrations} integrations polled")
                await asyncio.sleep(0.2)
            idle_mb = await _sample(daemon.pid, max(1.0, size.poll_interval_s))
            jobs = (await daemon.stats())["poll_jobs"]

            started = time.monotonic()
            created = await daemon.call("POST", "/integrations", json={
                "platform": "slack", "customerId": "bench-scale-import", "settings": {"importChats": chats},
                "credentials": slack_events.credentials(sim)})
            integration_id = created["integration"]["id"]
            peak = rss_mb(daemon.pid)
            deadline = time.monotonic() + 300
            while True:
                peak = max(peak, rss_mb(daemon.pid))
                stats = await daemon.stats(integration=integration_id)
                phases = [s["phase"] for s in stats["sync"]]
                if len(phases) > size.chats and not any(p in ("pending", "importing") for p in phases):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the import did not finish")
                await asyncio.sleep(0.05)
            import_s = time.monotonic() - started
            failed = [p for p in phases if p != "done"]
    idle = Record(
        name="rss_idle_integrations", value=idle_mb, unit="MB", baseline=started_mb, ratio=idle_mb / started_mb,
        target=f"<= {TARGET_MB:g} MB with {size.integrations} idle integrations scheduled for polling",
        meets_target=idle_mb <= TARGET_MB,
        details={"integrations": size.integrations, "poll_jobs": jobs, "poll_interval_s": size.poll_interval_s,
                 "baseline_is": "the same daemon right after start, before any integration"},
    )
    during = Record(
        name="rss_during_import", value=peak, unit="MB", baseline=started_mb, ratio=peak / started_mb,
        target=f"<= {TARGET_MB:g} MB peak during a {size.chats}-chat import (idle integrations still held)",
        meets_target=peak <= TARGET_MB and not failed,
        details={"chats": size.chats, "messages": size.chats * size.messages, "seconds": round(import_s, 2),
                 "chats_not_done": len(failed)},
    )
    return [idle, during]
