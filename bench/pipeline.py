"""Benchmark: the whole webhook pipeline, per platform.

For every platform whose manifest declares webhooks and whose simulator builds signed
deliveries (``Trial.trial_delivery``), found by discovery so that a platform added later is
covered without editing this file: the simulator is seeded and served over loopback, the
daemon (``syncd run``'s code path, app callbacks on) creates the trial integration through
``POST /integrations`` and finishes whatever that starts (an import, a subscription), and then
distinct deliveries, signed by the simulator as the platform signs them, go to
``/webhooks/<platform>/<id>``. Two figures per platform, both against the bare endpoint (the
same server, app and middleware, parsing the same bodies and answering 200) in alternating
rounds of the same run:

- accepted: deliveries acknowledged per second;
- processed: deliveries taken from the signed POST to a stored, deduplicated message with its
  app callback queued, per second, backlog included (the time to drain the inbox after the
  round counts);
- ``processed_cpu_ratio``: the same as the daemon's CPU seconds (bare run over webhook run and
  drain), little moved by neighbours' load;
- ``delivered_ratio`` (no target): to every callback received by the app's sink.

Each round's callbacks are all sent before the next bare run starts (outside the timed
windows), so that work left over from the measured side does not slow the baseline.

The platform's own API (where a delivery makes the connector fetch the message) is the
simulator in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.common import LOOPBACK, Daemon, Record, base_url_env
from bench.cost_growth import cpu_s
from bench.load import closed_loop, request_bytes
from syncd.kit.loader import load_all
from syncd.providers import simulator as simulator_of
from syncd.sim.base import ServerThread

NAME = "pipeline"
#: ``SYNCD_BENCH_PROFILE=/tmp/prof``: each daemon writes its cProfile to ``/tmp/prof.<platforms>``.
PROFILE = os.environ.get("SYNCD_BENCH_PROFILE")
TARGET = 0.6


@dataclass(frozen=True)
class Size:
    requests: int  # per endpoint and round
    rounds: int
    connections: int = 32
    warm: int = 200
    #: At most this many daemons (groups of platforms); None: every platform. The test suite's
    #: smoke run starts one, a daemon's start being most of its time.
    daemons: int | None = None


QUICK = Size(requests=300, rounds=3, warm=50)
FULL = Size(requests=3000, rounds=5)
TINY = Size(requests=30, rounds=1, connections=4, warm=10, daemons=1)


class Sink:
    """The app's callback endpoint: answers 204 and counts."""

    def __init__(self) -> None:
        self.received = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.received += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def platforms() -> tuple[list[str], dict[str, str]]:
    """Platforms to measure, and the ones left out with why. ``SYNCD_BENCH_PLATFORMS=gmail,teams``
    measures only those (a run's worst ratio is then over them alone)."""
    measured, skipped = [], {}
    only = {p.strip() for p in os.environ.get("SYNCD_BENCH_PLATFORMS", "").split(",") if p.strip()}
    for name, loaded in sorted(load_all().items()):
        if only and name not in only:
            skipped[name] = "not in SYNCD_BENCH_PLATFORMS"
            continue
        if not loaded.manifest.capabilities.webhooks:
            skipped[name] = "no webhooks"
            continue
        try:
            sim = simulator_of(name)
        except KeyError:
            skipped[name] = "no simulator"
            continue
        sim.trial_seed()
        if sim.trial_delivery(0) is None:
            skipped[name] = "its simulator builds no trial delivery"
            continue
        measured.append(name)
    return measured, skipped


async def settled(daemon: Daemon, integration: str | None = None, timeout_s: float = 300,
                  callbacks: bool = False) -> None:
    """Until no inbox item is pending and (with ``integration``) no chat is still importing,
    (with ``callbacks``) every queued callback delivered. Without ``integration`` the daemon
    itself waits and answers once it is so (``/bench/pending?wait=``): the drain's end is seen
    within a millisecond, at the cost of one request rather than one every 20 ms."""
    deadline = time.monotonic() + timeout_s
    while True:
        if integration:
            stats = await daemon.stats(integration=integration)
            busy = stats["inbox"].get("pending") or any(s["phase"] in ("pending", "importing") for s in stats["sync"])
        else:
            counts = await daemon.call("GET", "/bench/pending", params={
                "wait": min(10.0, max(0.0, deadline - time.monotonic())), **({"callbacks": 1} if callbacks else {})})
            busy = counts["pending"] or (callbacks and counts["callbacks"])
        if not busy:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not settled: {busy}")
        if integration:
            await asyncio.sleep(0.02)


def _request(delivery: Any, path: str, port: int) -> bytes:
    query = getattr(delivery, "query", "")
    return request_bytes(path + (f"?{query}" if query else ""), delivery.body, delivery.headers, port)


async def measure(platform: str, sim: Any, daemon: Daemon, size: Size) -> dict[str, Any]:
    created = await daemon.call("POST", "/integrations", json={
        "platform": platform, "customerId": f"bench-{platform}", "credentials": sim.trial_credentials()})
    integration = created["integration"]
    await settled(daemon, integration["id"])
    path = sim.trial_webhook(created).split(f"{LOOPBACK}:{daemon.port}", 1)[-1]
    count = size.warm + size.requests * size.rounds

    def due(part: slice) -> tuple[list[bytes], list[bytes]]:
        # Built just before they are sent: a delivery may announce a change the platform makes
        # as it builds it (a Gmail push carries only a historyId; syncd reads what is new).
        deliveries = [sim.trial_delivery(n) for n in range(part.start, part.stop)]
        return ([_request(d, path, daemon.port) for d in deliveries],
                [_request(d, "/bench/bare", daemon.port) for d in deliveries])

    before = await daemon.stats()
    hooks, bare = due(slice(0, size.warm))
    await closed_loop(daemon.port, hooks, connections=size.connections)
    await closed_loop(daemon.port, bare, connections=size.connections)
    # Each round's callbacks are sent before the next bare round starts: left running, they
    # would slow the baseline. Their sending is timed on its own (``delivered_ratio``).
    await settled(daemon, callbacks=True)
    accepted, processed, delivered, bare_rates, failed = [], [], [], [], 0
    cpu: list[float] = []
    pid = daemon.process.pid if daemon.process else None
    for r in range(size.rounds):
        part = slice(size.warm + r * size.requests, size.warm + (r + 1) * size.requests)
        hooks, bare = due(part)
        marks = [cpu_s(pid) if pid else 0.0]
        base = await closed_loop(daemon.port, bare, connections=size.connections)
        marks.append(cpu_s(pid) if pid else 0.0)
        hook = await closed_loop(daemon.port, hooks, connections=size.connections)
        started = time.monotonic()
        await settled(daemon)
        drain_s = time.monotonic() - started
        marks.append(cpu_s(pid) if pid else 0.0)
        if marks[2] > marks[1]:
            cpu.append((marks[1] - marks[0]) / (marks[2] - marks[1]))
        await settled(daemon, callbacks=True)
        sent_s = time.monotonic() - started
        delivered.append(size.requests / (hook.elapsed_s + sent_s) / base.rate if base.rate else 0.0)
        bare_rates.append(base.rate)
        accepted.append(hook.rate / base.rate if base.rate else 0.0)
        processed.append(size.requests / (hook.elapsed_s + drain_s) / base.rate if base.rate else 0.0)
        failed += sum(size.requests - run.ok for run in (base, hook)) + base.errors + hook.errors
    after = await daemon.stats(ids=1)
    return {
        "bare_req_per_s": round(statistics.median(bare_rates)),
        "accepted_ratio": round(statistics.median(accepted), 3),
        "processed_ratio": round(statistics.median(processed), 3),
        "round_processed_ratios": [round(x, 3) for x in processed],
        # The daemon's CPU seconds for the bare round over those from the webhook round's
        # first request to its inbox drained (``/proc``, 10 ms ticks): what the ratio would be
        # on an idle machine, little moved by neighbours' load.
        "processed_cpu_ratio": round(statistics.median(cpu), 3) if cpu else None,
        # To every callback delivered to the app's sink too (no target: a figure to watch).
        "delivered_ratio": round(statistics.median(delivered), 3),
        "deliveries": count, "stored": after["messages"] - before["messages"],
        "duplicates": after["stored_ids"] - after["distinct_ids"],
        "callbacks_queued": sum(after["outbox"].values()) - sum(before["outbox"].values()),
        "failed_or_non_2xx": failed,
        "roundtrips_per_delivery": round((after["totals"]["total"] - before["totals"]["total"]) / count, 2),
        "roundtrips_per_call": {k: round((n - before["calls"].get(k, 0)) / count, 3)
                                for k, n in sorted(after["calls"].items()) if n > before["calls"].get(k, 0)},
    }


def _groups(sims: dict[str, Any]) -> list[list[str]]:
    """Platforms split so that no two in one daemon share an API root name (a vendor's
    platforms share one, each simulator serves its own)."""
    groups: list[tuple[list[str], set[str]]] = []
    for platform, sim in sims.items():
        keys = set(sim.trial_roots)
        group = next((g for g in groups if not g[1] & keys), None)
        if group is None:
            groups.append(([platform], keys))
        else:
            group[0].append(platform)
            group[1].update(keys)
    return [g[0] for g in groups]


async def _measure_group(sims: dict[str, Any], size: Size, failures: dict[str, str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        base_urls: dict[str, str] = {}
        for sim in sims.values():
            base_urls.update(sim.trial_base_urls(stack.enter_context(ServerThread(sim)).url))
        app = stack.enter_context(ServerThread(Sink()))
        # One daemon holds several platforms' integrations, as a deployment does; they are
        # measured one after the other.
        profile = {"profile": f"{PROFILE}.{'-'.join(sims)}"} if PROFILE else {}
        async with Daemon(base_urls=base_urls, env=base_url_env(base_urls), app_callback_url=app.url + "/callbacks",
                          **profile) as daemon:
            for platform, sim in sims.items():
                try:
                    results[platform] = await measure(platform, sim, daemon, size)
                except Exception as exc:  # one platform's failure is its result, not the run's
                    failures[platform] = f"could not run: {exc!r}"[:300]
    return results


async def run(size: Size = QUICK) -> list[Record]:
    measured, skipped = platforms()
    sims = {p: simulator_of(p) for p in measured}
    for sim in sims.values():
        sim.trial_seed()
    results: dict[str, dict[str, Any]] = {}
    groups = _groups(sims)
    for group in groups[size.daemons:] if size.daemons is not None else []:
        skipped.update(dict.fromkeys(group, "left out at this size"))
    for group in groups[:size.daemons]:
        results.update(await _measure_group({p: sims[p] for p in group}, size, skipped))
    records = []
    for platform, r in results.items():
        complete = r["stored"] == r["deliveries"] and r["duplicates"] == 0 and r["failed_or_non_2xx"] == 0 \
            and r["callbacks_queued"] >= r["deliveries"]
        records.append(Record(
            name=f"pipeline_{platform}", value=r["processed_ratio"] * r["bare_req_per_s"], unit="events/s",
            baseline=float(r["bare_req_per_s"]), ratio=r["processed_ratio"],
            target=f"processed (signed delivery -> stored, deduplicated, callback queued; backlog included) "
                   f"/ bare >= {TARGET}, and accepted / bare >= {TARGET}",
            meets_target=r["processed_ratio"] >= TARGET and r["accepted_ratio"] >= TARGET and complete,
            details={**r, "platform": platform}))
    if not records:
        raise RuntimeError(f"no platform to measure: {skipped}")
    worst = min(records, key=lambda rec: rec.ratio or 0.0)
    records.append(Record(
        name=NAME, value=worst.ratio or 0.0, unit="worst processed ratio", baseline=None, ratio=worst.ratio,
        target=f">= {TARGET} on every platform with webhooks (worst: {worst.details['platform']})",
        meets_target=all(rec.meets_target for rec in records) and not any(
            v.startswith("could not run") for v in skipped.values()),
        details={"platforms": sorted(results), "skipped": skipped}))
    return records
