"""Benchmark: one replica at scale (issue 16, target 3).

Integrations of mixed platforms on one daemon (``syncd run``'s code path, the counting store
double in a process of its own, where MongoDB would be: ``bench/double_process.py``). The platforms are found by discovery: every platform that polls on the
configured interval and has a simulator. For each, a first daemon creates the simulator's
trial integration through ``POST /integrations`` and finishes its import; its documents
(integration with encrypted credentials, chats, sync marks, identities) are the template.
The measured daemon starts with ``size.integrations`` copies of them, round-robin, already
in its store, as a restarted daemon finds them, and every poll goes to the simulators over
loopback. Four figures:

- RSS of the daemon once every integration has polled once (it holds each one's connector;
  the documents are in the double's process, reported beside it with that process's CPU);
- ready: from spawning the process to its ``/healthz`` answering (every poll scheduled);
- p99 poll lateness at steady state (after every integration polled once): the scheduler's
  job start minus the time it was scheduled for, from the daemon's own clock;
- starvation: the largest gap between two polls of one integration (the gap still open at
  the end counts), over its interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.common import Daemon, Record, base_url_env, percentile, rss_mb
from bench.cost_growth import cpu_s
from bench.pipeline import settled
from syncd import providers
from syncd.kit.loader import load_all
from syncd.providers import simulator as simulator_of
from syncd.sim.base import ServerThread

#: ``SYNCD_BENCH_PROFILE=/tmp/prof``: the measured daemon writes its cProfile there when it stops.
PROFILE = os.environ.get("SYNCD_BENCH_PROFILE")
#: ``SYNCD_BENCH_TRACEMALLOC=12``: the daemon traces allocations (12 frames deep) and the result
#: carries its largest allocation sites once every integration has polled (slow: not for timing).
TRACEMALLOC = int(os.environ.get("SYNCD_BENCH_TRACEMALLOC", 0))
RSS_MB = 250.0
READY_S = 15.0
LATENESS_S = 1.0
GAP_RATIO = 2.0


@dataclass(frozen=True)
class Size:
    integrations: int
    interval_s: float
    steady_intervals: float = 2


QUICK = Size(integrations=500, interval_s=10, steady_intervals=1)
FULL = Size(integrations=10_000, interval_s=60)
TINY = Size(integrations=12, interval_s=2, steady_intervals=1)


def platforms() -> tuple[list[str], dict[str, str]]:
    """Platforms that poll on the configured interval and have a simulator; the others, and why."""
    mixed, left = [], {}
    for name, loaded in sorted(load_all().items()):
        cls = providers.connector_for(loaded)
        if not cls.can_poll:
            continue
        if cls.poll_every_s is not None:
            left[name] = f"polls every {cls.poll_every_s:g} s whatever the configured interval"
            continue
        try:
            simulator_of(name)
        except KeyError:
            left[name] = "no simulator"
            continue
        mixed.append(name)
    return mixed, left


async def templates(names: list[str], sims: dict[str, Any], base_urls: dict[str, str], folder: str) -> list[str]:
    """One trial integration per platform, created and imported through the API; its documents
    pickled to a file each."""
    files = []
    async with Daemon(base_urls=base_urls, env=base_url_env(base_urls), slim=True) as daemon:
        for name in names:
            created = await daemon.call("POST", "/integrations", json={
                "platform": name, "customerId": f"bench-replica-{name}", "credentials": sims[name].trial_credentials()})
            integration = created["integration"]["id"]
            await settled(daemon, integration, timeout_s=120)
            response = await daemon.admin.get("/bench/dump", params={"integration": integration})
            response.raise_for_status()
            path = os.path.join(folder, f"{name}.pickle")
            with open(path, "wb") as out:
                out.write(response.content)
            files.append(path)
    return files


def figures(trace: dict[str, Any], since: float, interval: float) -> dict[str, Any]:
    """Lateness of the polls that started at or after ``since``; each integration's largest gap
    between polls ending at or after it, the gap still open at the end included."""
    late = [lateness for started, lateness in trace["lateness"] if started >= since]
    took = [duration for started, duration in trace["durations"] if started >= since]
    buckets: dict[int, list[float]] = {}
    for started, lateness in trace["lateness"]:
        if started >= since:
            buckets.setdefault(int((started - since) // 10), []).append(lateness)
    worst_gap, worst_id = 0.0, None
    for integration, starts in trace["starts"].items():
        points = [*sorted(starts), trace["now"]]
        for before, after in itertools.pairwise(points):
            if after >= since and after - before > worst_gap:
                worst_gap, worst_id = after - before, integration
    return {
        "polls_steady": len(late), "lateness_p50_s": round(percentile(late, 50), 4),
        "lateness_p99_s": round(percentile(late, 99), 4), "lateness_max_s": round(max(late, default=0.0), 4),
        "largest_gap_s": round(worst_gap, 3), "largest_gap_ratio": round(worst_gap / interval, 3),
        "largest_gap_integration": worst_id,
        "poll_wall_p50_s": round(percentile(took, 50), 4), "poll_wall_p99_s": round(percentile(took, 99), 4),
        "lateness_p99_by_10s": [round(percentile(buckets[k], 99), 3) for k in sorted(buckets)],
    }


async def served_templates(stack: contextlib.ExitStack, names: list[str]) -> tuple[dict[str, str], list[str]]:
    """The simulators of ``names``, seeded and served until ``stack`` closes: their base URLs,
    and one template file per platform (see :func:`templates`)."""
    sims = {name: simulator_of(name) for name in names}
    base_urls: dict[str, str] = {}
    for sim in sims.values():
        sim.trial_seed()
        base_urls.update(sim.trial_base_urls(stack.enter_context(ServerThread(sim)).url))
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="syncd-templates-"))
    return base_urls, await templates(names, sims, base_urls, folder)


async def measure(size: Size) -> dict[str, Any]:
    names, left = platforms()
    with contextlib.ExitStack() as stack:
        base_urls, files = await served_templates(stack, names)
        spawned = time.monotonic()
        profile: dict[str, Any] = {"profile": PROFILE} if PROFILE else {}
        if TRACEMALLOC:
            profile["tracemalloc"] = TRACEMALLOC
            profile["start_timeout_s"] = 600  # tracing every allocation slows the start tenfold
        async with Daemon(base_urls=base_urls, env=base_url_env(base_urls), double_process=True, trace_polls=True,
                          **profile,
                          poll_interval_s=size.interval_s,
                          preload={"files": files, "count": size.integrations}) as daemon:
            ready_s = time.monotonic() - spawned
            deadline = time.monotonic() + 60 + 3 * size.interval_s
            while (polled := (await daemon.call("GET", "/bench/polls"))["polled"]) < size.integrations:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {polled} of {size.integrations} integrations polled")
                await asyncio.sleep(0.5)
            all_polled = time.time()  # the same clock as the trace's: this machine's
            polled_s = time.monotonic() - spawned
            rss = rss_mb(daemon.pid)
            memory = await daemon.call("GET", "/bench/memory", params={"types": 1}) if TRACEMALLOC else None
            double_pid = (await daemon.stats())["double_process"]["pid"]
            peak, cpu, double_cpu, sims_cpu = rss, cpu_s(daemon.pid), cpu_s(double_pid), cpu_s(os.getpid())
            steady_until = time.monotonic() + size.steady_intervals * size.interval_s
            while time.monotonic() < steady_until:
                await asyncio.sleep(0.5)
                peak = max(peak, rss_mb(daemon.pid))
            cpu, double_cpu = cpu_s(daemon.pid) - cpu, cpu_s(double_pid) - double_cpu
            sims_cpu = cpu_s(os.getpid()) - sims_cpu
            stats = await daemon.stats()
            trace = await daemon.call("GET", "/bench/polls", params={"full": 1})
    steady = figures(trace, all_polled, size.interval_s)
    return {
        "daemon_cpu_share_steady": round(cpu / (size.steady_intervals * size.interval_s), 3),
        # The simulators (and this benchmark) in this process: the platforms' side, on the
        # same two cores.
        "simulators_cpu_share_steady": round(sims_cpu / (size.steady_intervals * size.interval_s), 3),
        "cpu_ms_per_poll_steady": round(1000 * cpu / steady["polls_steady"], 2) if steady["polls_steady"] else None,
        "integrations": size.integrations, "platforms": names, "not_mixed": left,
        "interval_s": size.interval_s, "ready_s": round(ready_s, 2), "all_polled_after_s": round(polled_s, 1),
        "rss_mb": round(rss, 1), "rss_peak_steady_mb": round(peak, 1), "connectors": stats["connectors"],
        "poll_jobs": stats["poll_jobs"], "steady_s": round(size.steady_intervals * size.interval_s, 1),
        **steady,
        "roundtrips": stats["totals"], "gc_pauses": stats["gc"],
        "double_process": {"rss_mb": round(stats["double_process"]["rss_mb"], 1),
                           "cpu_share_steady": round(double_cpu / (size.steady_intervals * size.interval_s), 3),
                           "messages": stats["messages"]},
        **({"memory": memory} if memory else {}),
    }


async def run(size: Size = QUICK) -> list[Record]:
    n = size.integrations
    try:
        r = await measure(size)
    except (TimeoutError, httpx.TimeoutException) as exc:
        # A daemon too busy to answer its probes is a result: every target missed, and why.
        return [Record(name="replica", value=0.0, unit="targets met", baseline=None, ratio=0.0,
                       target=f"RSS, ready, lateness and gap targets with {n} integrations",
                       meets_target=False, details={"error": f"{type(exc).__name__}: {exc}"[:300],
                                                    "integrations": n, "interval_s": size.interval_s,
                                                    "load_average": os.getloadavg()})]
    details = {"load_average": os.getloadavg(), **r}
    return [
        Record(name="replica_rss", value=r["rss_mb"], unit="MB", baseline=None, ratio=r["rss_mb"] / RSS_MB,
               target=f"<= {RSS_MB:g} MB once each of {n} integrations has polled once",
               meets_target=r["rss_mb"] <= RSS_MB, details=details),
        Record(name="replica_ready", value=r["ready_s"], unit="s", baseline=None, ratio=r["ready_s"] / READY_S,
               target=f"ready (/healthz) within {READY_S:g} s of start with {n} integrations in the store",
               meets_target=r["ready_s"] <= READY_S),
        Record(name="replica_poll_lateness_p99", value=r["lateness_p99_s"], unit="s", baseline=None,
               ratio=r["lateness_p99_s"] / LATENESS_S,
               target=f"p99 poll start minus scheduled start < {LATENESS_S:g} s at steady state",
               meets_target=r["lateness_p99_s"] < LATENESS_S and r["polls_steady"] > 0),
        Record(name="replica_poll_gap", value=r["largest_gap_s"], unit="s", baseline=float(size.interval_s),
               ratio=r["largest_gap_ratio"],
               target=f"largest gap between two polls of one integration <= {GAP_RATIO:g}x its interval",
               meets_target=r["largest_gap_ratio"] <= GAP_RATIO),
    ]
