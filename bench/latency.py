"""Benchmark 4: webhook-to-stored latency at a steady offered load.

An open-loop generator starts a correctly signed Slack delivery every 1/500 s whatever the
daemon's pace (a request's clock starts when it was due, so a stalled server cannot hide its
queue); the store double notes when each message is first written. Latency is that moment
minus the moment the delivery was due: acknowledgement, inbox, worker, mapping, storage. The
baseline is the bare JSON endpoint's answer time under the same open-loop load.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench import slack_events
from bench.common import Daemon, Record, percentile
from bench.load import closed_loop, open_loop, request_bytes
from syncd.sim.base import ServerThread

NAME = "webhook_to_stored_latency_p99"
TARGET_MS = 250.0


@dataclass(frozen=True)
class Size:
    rate: float
    seconds: float


QUICK = Size(rate=500, seconds=5)
FULL = Size(rate=500, seconds=30)
TINY = Size(rate=100, seconds=1)


def _external_id(body: bytes) -> str:
    import json

    event = json.loads(body)["event"]
    return f"{event['channel']}:{event['ts']}"


async def run(size: Size = QUICK) -> Record:
    count = int(size.rate * size.seconds)
    sim = slack_events.simulator()
    with ServerThread(sim) as platform:
        async with Daemon(base_urls={"slack": platform.url}, timestamps=True) as daemon:
            seeded = await daemon.call("POST", "/bench/seed", json={
                "count": 1, "platform": "slack", "credentials": slack_events.credentials(sim)})
            path = f"/webhooks/slack/{seeded['ids'][0]}"
            bodies = slack_events.deliveries(count * 2 + 200, sim.signing_secret)
            warm = [request_bytes(path, b, h, daemon.port) for b, h in bodies[-200:]]
            await closed_loop(daemon.port, warm, connections=8)
            bare = [request_bytes("/bench/bare", b, h, daemon.port) for b, h in bodies[count:2 * count]]
            base_run = await open_loop(daemon.port, bare, rate=size.rate, timeout_s=size.seconds + 30)
            hooks = [request_bytes(path, b, h, daemon.port) for b, h in bodies[:count]]
            before = (await daemon.stats())["totals"]
            hook_run = await open_loop(daemon.port, hooks, rate=size.rate, timeout_s=size.seconds + 30)
            wanted = {i: _external_id(bodies[i][0]) for i in range(count)}
            deadline = time.monotonic() + 20
            while True:
                stats = await daemon.stats(written=1)
                written = stats["written_at"]
                if all(ext in written for ext in wanted.values()) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            trips = {k: stats["totals"][k] - before[k] for k in before}
    latencies = [(written[ext] - hook_run.started[i]) * 1000 for i, ext in wanted.items()
                 if ext in written and i in hook_run.started]
    base_latencies = [(base_run.answered[i] - base_run.started[i]) * 1000 for i in base_run.answered]
    missing = count - len(latencies)
    p99, p50 = percentile(latencies, 99), percentile(latencies, 50)
    base_p99 = percentile(base_latencies, 99)
    return Record(
        name=NAME, value=p99, unit="ms", baseline=base_p99, ratio=p99 / base_p99 if base_p99 else None,
        target=f"p99 < {TARGET_MS:g} ms at {size.rate:g} events/s offered (open loop); baseline: bare endpoint's "
               "answer p99 at the same load",
        meets_target=p99 < TARGET_MS and missing == 0 and hook_run.ok == count,
        details={"p50_ms": round(p50, 2), "p90_ms": round(percentile(latencies, 90), 2),
                 "max_ms": round(max(latencies, default=float("nan")), 2),
                 "baseline_p50_ms": round(percentile(base_latencies, 50), 3), "events": count,
                 "offered_per_s": size.rate, "not_stored": missing, "non_2xx": count - hook_run.ok,
                 "statuses": {str(k): v for k, v in hook_run.statuses.items()}, "errors": dict(hook_run.error_kinds),
                 "roundtrips_per_event": round(trips["total"] / count, 3),
                 "writes_per_event": round(trips["writes"] / count, 3)},
    )
