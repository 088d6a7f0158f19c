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
    requests: int  # per endpoint and round
    rounds: int
    connections: int = 32


QUICK = Size(requests=1000, rounds=3)
FULL = Size(requests=5000, rounds=9)
TINY = Size(requests=100, rounds=1, connections=8)


async def drained(daemon: Daemon, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await daemon.stats()
        if not stats["inbox"].get("pending"):
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"inbox not drained: {stats['inbox']}")
        await asyncio.sleep(0.05)


async def run(size: Size = QUICK) -> Record:
    sim = slack_events.simulator()
    with ServerThread(sim) as platform:
        async with Daemon(base_urls={"slack": platform.url}) as daemon:
            seeded = await daemon.call("POST", "/bench/seed", json={
                "count": 1, "platform": "slack", "credentials": slack_events.credentials(sim)})
            path = f"/webhooks/slack/{seeded['ids'][0]}"
            warm = min(500, size.requests)
            bodies = slack_events.deliveries(size.requests * size.rounds + warm, sim.signing_secret)
            hooks = [request_bytes(path, b, h, daemon.port) for b, h in bodies]
            bare = [request_bytes("/bench/bare", b, h, daemon.port) for b, h in bodies]
            # Warm both paths (connector built, bot identity cached, code paths hot).
            await closed_loop(daemon.port, hooks[-warm:], connections=size.connections)
            await closed_loop(daemon.port, bare[-warm:], connections=size.connections)
            await drained(daemon)
            bare_rates: list[float] = []
            hook_rates: list[float] = []
            ratios: list[float] = []
            failed = 0
            drain_s = 0.0
            # Short alternating rounds: a noisy neighbour slows both sides of a pair alike.
            for r in range(size.rounds):
                part = slice(r * size.requests, (r + 1) * size.requests)
                base_run = await closed_loop(daemon.port, bare[part], connections=size.connections)
                hook_run = await closed_loop(daemon.port, hooks[part], connections=size.connections)
                started = time.monotonic()
                await drained(daemon)
                drain_s += time.monotonic() - started
                bare_rates.append(base_run.rate)
                hook_rates.append(hook_run.rate)
                ratios.append(hook_run.rate / base_run.rate if base_run.rate else 0.0)
                failed += (hook_run.sent - hook_run.ok) + hook_run.errors + (base_run.sent - base_run.ok) \
                    + base_run.errors + (size.requests - hook_run.sent) + (size.requests - base_run.sent)
            stats = await drained(daemon)
    ratio = statistics.median(ratios)
    lost = size.requests * size.rounds + warm - stats["messages"]
    events = size.requests * size.rounds
    webhook_s = sum(size.requests / r for r in hook_rates if r)
    return Record(
        name=NAME, value=statistics.median(hook_rates), unit="req/s", baseline=statistics.median(bare_rates),
        ratio=ratio, target=f"ratio >= {TARGET} (webhook accepted / bare JSON endpoint, same server stack)",
        meets_target=ratio >= TARGET and failed == 0 and lost == 0,
        details={"requests_per_round": size.requests, "rounds": size.rounds, "connections": size.connections,
                 "pair_ratios": [round(x, 3) for x in ratios], "failed_or_non_2xx": failed,
                 "messages_stored": stats["messages"], "messages_lost": lost,
                 # Accepting is not processing: the backlog a burst leaves is worked off after it.
                 "processed_per_s_incl_backlog": round(events / (webhook_s + drain_s)) if webhook_s else 0},
    )
