"""Benchmark: how the cost of one webhook event grows with the deployment (issue 16, target 5).

One daemon (``syncd run``'s code path, counting store double inside), Slack deliveries signed
as Slack signs them, 16 keep-alive connections; each step sends the same number of distinct
events to one integration and waits until every one is stored. Per event: the daemon
process's CPU time (user + system, from ``/proc``: what it spent, whatever the neighbours on
the machine do) and its MongoDB round-trips.

- integrations: 1, then 100, then 10,000 integrations in the store (added between steps, as a
  finished import leaves them; their polls are scheduled a day apart so they stay idle);
- stored messages: 10^3, then 10^4 ... 10^6 messages in the double (added between steps through
  its indexes, into the chats the events go to, so those chats grow too).

The baseline of each is its first step, measured in the same run; flat is a ratio <= 1.25 in
CPU and the same round-trips.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from bench import slack_events
from bench.common import Daemon, Record
from bench.ingest import drained
from bench.load import closed_loop, request_bytes
from syncd.sim.base import ServerThread

CPU_FLAT = 1.25
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Size:
    events: int  # per step
    integrations: tuple[int, ...]
    messages: tuple[int, ...]
    connections: int = 16


QUICK = Size(events=1000, integrations=(1, 100, 1000), messages=(1000, 10_000, 100_000))
FULL = Size(events=4000, integrations=(1, 100, 10_000), messages=(1000, 10_000, 100_000, 1_000_000))
TINY = Size(events=40, integrations=(1, 3), messages=(100, 300), connections=4)


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class Events:
    """Distinct signed deliveries to one integration, handed out step by step."""

    def __init__(self, daemon: Daemon, integration: str, secret: str, total: int):
        bodies = slack_events.deliveries(total, secret)
        self.requests = [request_bytes(f"/webhooks/slack/{integration}", b, h, daemon.port) for b, h in bodies]
        self.daemon, self.used = daemon, 0

    async def step(self, count: int, connections: int) -> dict[str, Any]:
        part = self.requests[self.used:self.used + count]
        self.used += count
        before, cpu = await drained(self.daemon), cpu_s(self.daemon.pid)
        run = await closed_loop(self.daemon.port, part, connections=connections)
        after = await drained(self.daemon)
        used = cpu_s(self.daemon.pid) - cpu
        return {"cpu_ms_per_event": round(1000 * used / count, 3),
                "roundtrips_per_event": round((after["totals"]["total"] - before["totals"]["total"]) / count, 3),
                "non_2xx": count - run.ok, "stored": after["messages"] - before["messages"]}


async def _series(sim: Any, url: str, size: Size, axis: str) -> list[dict[str, Any]]:
    steps = size.integrations if axis == "integrations" else size.messages
    credentials = slack_events.credentials(sim)
    out: list[dict[str, Any]] = []
    async with Daemon(base_urls={"slack": url}, poll_interval_s=86_400) as daemon:
        seeded = await daemon.call("POST", "/bench/seed", json={"count": 1, "platform": "slack",
                                                               "credentials": credentials})
        events = Events(daemon, seeded["ids"][0], sim.signing_secret, size.events * (len(steps) + 1))
        await events.step(size.events, size.connections)  # warm: connector built, chats created
        have = 1 if axis == "integrations" else (await daemon.stats())["messages"]
        for target in steps:
            if target > have and axis == "integrations":
                await daemon.call("POST", "/bench/seed", json={
                    "count": target - have, "platform": "slack", "distinct": True, "customer": f"grow-{target}",
                    "credentials": credentials})
            elif target > have:
                await daemon.call("POST", "/bench/fill", json={"count": target - have})
            have = max(have, target)
            out.append({axis: target, **await events.step(size.events, size.connections)})
    return out


def _record(name: str, axis: str, series: list[dict[str, Any]], events: int) -> Record:
    first, last = series[0], series[-1]
    ratio = last["cpu_ms_per_event"] / first["cpu_ms_per_event"] if first["cpu_ms_per_event"] else 0.0
    same_trips = abs(last["roundtrips_per_event"] - first["roundtrips_per_event"]) <= 0.05
    complete = all(s["non_2xx"] == 0 and s["stored"] == events for s in series)
    return Record(
        name=name, value=last["cpu_ms_per_event"], unit="CPU ms per event", baseline=first["cpu_ms_per_event"],
        ratio=ratio,
        target=f"flat from {first[axis]:,} to {last[axis]:,} {axis}: CPU per event <= {CPU_FLAT}x and the same "
               "round-trips per event (else the slope is explained in bench/README.md)",
        meets_target=ratio <= CPU_FLAT and same_trips and complete,
        details={"steps": series, "events_per_step": events, "load_average": os.getloadavg()})


async def run(size: Size = QUICK) -> list[Record]:
    sim = slack_events.simulator()
    with ServerThread(sim) as platform:
        by_integrations = await _series(sim, platform.url, size, "integrations")
        by_messages = await _series(sim, platform.url, size, "messages")
    return [_record("cost_growth_integrations", "integrations", by_integrations, size.events),
            _record("cost_growth_messages", "messages", by_messages, size.events)]
