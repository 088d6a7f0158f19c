"""Diagnostic: the fixed cost of a scheduled poll, without its HTTP requests (issue 16, target 3).

``python -m bench.poll_cost [platform ...]`` (default: gmail slack teams). For each platform the
simulator's trial integration is created and imported by a daemon as ``bench/replica.py`` does
(its documents are the template), then ``INTEGRATIONS`` copies are loaded into a daemon built in
this process (``syncd run``'s wiring, the counting double as its store) and each is polled
``ROUNDS`` times through ``Engine.poll``, the scheduler's job function, with the poll trace of
``bench/hooks.py`` on. The connectors' ``poll`` answers "nothing new, same mark" without a
request, so what is measured is everything a scheduled poll does around the platform: the gate,
the turn and the lease, the reads of the integration, sync status and chats, the ingest of
nothing, the mark, the release. Printed per platform: CPU ms of this thread per poll (the
simulator's threads are not counted) and store round-trips per poll by operation.

Not a target and not in ``--only``'s list: the replica benchmark measures the whole poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any

from bench.common import SECRET_KEY
from bench.hooks import PollTrace, preload
from bench.mongo_double import Client
from bench.replica import served_templates
from syncd.config import Settings
from syncd.daemon import build
from syncd.store import Store, _fernet
from syncd.universal import Changes, PollResult

INTEGRATIONS = int(os.environ.get("SYNCD_BENCH_POLL_COST_N", 300))
ROUNDS = int(os.environ.get("SYNCD_BENCH_POLL_COST_ROUNDS", 6))
#: Each integration's turn lasts 0.9 of this; one round polls every integration once and
#: takes longer than this, so each poll is a new turn.
INTERVAL_S = 1.0


async def _nothing_new(self: Any, state: Any, chats: Any, lookback_s: float) -> PollResult:
    return PollResult(changes=Changes(), state=state)


async def measure(template: bytes) -> dict[str, Any]:
    client = Client(discard=frozenset({"messages"}))
    store = Store(client, client["syncd"], _fernet(SECRET_KEY))
    settings = Settings(mongodb_uri="mongodb://bench-double/syncd", secret_key=SECRET_KEY,
                        poll_interval_s=INTERVAL_S, log_level="WARNING")
    daemon = await build(settings, store=store)
    preload(client, [template], INTEGRATIONS)
    ids = list(client["syncd"]["integrations"].docs)
    PollTrace().wrap(daemon)
    connectors = daemon.engine.ctx.connectors
    built = connectors.get

    async def without_requests(*args: Any, **kwargs: Any) -> Any:
        connector = await built(*args, **kwargs)
        connector.poll = _nothing_new.__get__(connector)  # type: ignore[method-assign]
        return connector

    connectors.get = without_requests  # type: ignore[method-assign]
    await _round(daemon, ids)  # connectors built, first marks settled
    before, cpu, polls = client.snapshot(), time.thread_time(), 0
    for _ in range(ROUNDS):
        polls += await _round(daemon, ids)
    cpu = time.thread_time() - cpu
    calls = client.snapshot() - before
    await daemon.engine.stop(grace_s=1)
    return {"cpu_ms_per_poll": round(1000 * cpu / polls, 3), "polls": polls,
            "roundtrips_per_poll": {f"{c}.{op}": round(n / polls, 2) for (c, op), n in sorted(calls.items())}}


async def _round(daemon: Any, ids: list[str]) -> int:
    started = time.monotonic()
    for integration_id in ids:
        await daemon.engine.poll(integration_id)
    await daemon.engine.wait_background()
    await asyncio.sleep(max(0.0, INTERVAL_S - (time.monotonic() - started)))
    return len(ids)


async def main(names: list[str]) -> None:
    with contextlib.ExitStack() as stack:
        _, files = await served_templates(stack, names)
        for name, path in zip(names, files, strict=True):
            with open(path, "rb") as template:
                print(name, await measure(template.read()), flush=True)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1:] or ["gmail", "slack", "teams"]))
