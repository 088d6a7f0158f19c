"""Benchmark 1: webhook ingest throughput.

Requests per second that the daemon accepts on ``POST /webhooks/slack/{id}`` (signature
verification, durable inbox write, 2xx) against a bare endpoint on the same server, app and
middleware that only parses the same JSON bodies and answers 200. One load generator, one
set of keep-alive connections over loopback, distinct correctly signed bodies; the two runs
alternate and the inbox worker's backlog is drained before each bare run, so neither side
is measured while the other's work is still on the CPU.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

from bench import slack_events
from bench.common import Daemon, Record
from bench.load import closed_loop, request_bytes
from syncd.sim.base import ServerThread

NAME = "webhook_ingest"
TARGET = 0.5


@dataclass(frozen=True)
class Size:
    requests: int
    rounds: int
    connections: int = 32


QUICK = Size(requests=3000, rounds=1)
FULL = Size(requests=20000, rounds=3)
TINY = Size(requests=200, rounds=1, connections=8)


async def drained(daemon: Daemon, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await daemon.stats()
        if not stats["inbox"].get("pending"):
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"inbox not drained: {stats['inbox']}")
        await asyncio.sleep(0.1)


async def run(size: Size = QUICK) -> Record:
    sim = slack_events.simulator()
    with ServerThread(sim) as platform:
        async with Daemon(base_urls={"slack": platform.url}) as daemon:
            seeded = await daemon.call("POST", "/bench/seed", json={
                "count": 1, "platform": "slack", "credentials": slack_events.credentials(sim)})
            path = f"/webhooks/slack/{seeded['ids'][0]}"
            total = size.requests * size.rounds + 200
            bodies = slack_events.deliveries(total, sim.signing_secret)
            hooks = [request_bytes(path, b, h, daemon.port) for b, h in bodies]
            bare = [request_bytes("/bench/bare", b, h, daemon.port) for b, h in bodies]
            # Warm both paths (connector built, bot identity cached, code paths hot).
            await closed_loop(daemon.port, hooks[-200:], connections=size.connections)
            await closed_loop(daemon.port, bare[-200:], connections=size.connections)
            await drained(daemon)
            bare_rates, hook_rates, rejected = [], [], 0
            accept_trips: list[float] = []
            for r in range(size.rounds):
                part = slice(r * size.requests, (r + 1) * size.requests)
                base_run = await closed_loop(daemon.port, bare[part], connections=size.connections)
                before = (await daemon.stats())["calls"]
                hook_run = await closed_loop(daemon.port, hooks[part], connections=size.connections)
                after = (await daemon.stats())["calls"]
                inbox_writes = after.get("inbox.insert_one", 0) - before.get("inbox.insert_one", 0)
                accept_trips.append(inbox_writes / max(1, hook_run.sent))
                bare_rates.append(base_run.rate)
                hook_rates.append(hook_run.rate)
                rejected += (hook_run.sent - hook_run.ok) + hook_run.errors + (base_run.sent - base_run.ok)
                await drained(daemon)
            stats = await drained(daemon)
    value, baseline = statistics.median(hook_rates), statistics.median(bare_rates)
    ratio = value / baseline if baseline else 0.0
    return Record(
        name=NAME, value=value, unit="req/s", baseline=baseline, ratio=ratio,
        target=f"ratio >= {TARGET} (webhook accepted / bare JSON endpoint, same server stack)",
        meets_target=ratio >= TARGET and rejected == 0,
        details={"requests_per_round": size.requests, "rounds": size.rounds, "connections": size.connections,
                 "webhook_rates": [round(x) for x in hook_rates], "bare_rates": [round(x) for x in bare_rates],
                 "non_2xx_or_errors": rejected, "messages_stored": stats["messages"]},
    )
