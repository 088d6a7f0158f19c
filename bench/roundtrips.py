"""Benchmark 5: MongoDB round-trips, what a real deployment pays per unit of work.

Counted by the store double (one call = one round-trip), in-process, the daemon wired as
``syncd run`` wires it and the Slack simulator behind an in-memory transport (round-trips do
not depend on how the platform is reached):

- per imported page: the marginal cost of a page, from two imports of one chat that differ
  only in their number of pages (so per-chat and per-integration costs cancel out);
- per webhook event, end to end (received, stored in the inbox, processed, message stored),
  at a steady 500 deliveries per second through the HTTP API.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from bench import ratelimit, slack_events
from bench.common import ADMIN_TOKEN, APP_SECRET, SECRET_KEY, Record
from bench.mongo_double import Client
from syncd.config import Settings
from syncd.daemon import Daemon, build
from syncd.kit.loader import load_manifest
from syncd.mapping import mappings_dir
from syncd.providers.slack.sim import SlackSimulator
from syncd.store import Store, _fernet

#: Messages per history page the Slack connector asks for (its manifest's api.pageSize).
SLACK_PAGE = load_manifest(mappings_dir() / "slack.yaml").manifest.api.page_size

PAGE_TARGET = 1.0
EVENT_TARGET = 2.0
BASE = "http://syncd.bench"


@dataclass(frozen=True)
class Size:
    pages: int  # extra pages of the longer import
    events: int
    rate: float


QUICK = Size(pages=10, events=1500, rate=500)
FULL = Size(pages=20, events=5000, rate=500)
TINY = Size(pages=2, events=60, rate=500)


async def _daemon(sim: SlackSimulator) -> tuple[Daemon, Client]:
    client = Client()
    store = Store(client, client["syncd"], _fernet(SECRET_KEY))
    settings = Settings(mongodb_uri="mongodb://bench-double/syncd", public_url=BASE, admin_token=ADMIN_TOKEN,
                        app_webhook_secret=APP_SECRET, secret_key=SECRET_KEY, log_level="WARNING")
    daemon = await build(settings, transports={"slack": httpx.ASGITransport(sim)}, store=store)
    return daemon, client


def _api(daemon: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(daemon.app), base_url=BASE,
                             headers={"authorization": f"Bearer {ADMIN_TOKEN}"})


async def _import(pages: int) -> tuple[Counter, int]:
    """Round-trips of importing one chat of ``pages`` full pages; and the pages imported."""
    sim = SlackSimulator()
    ratelimit.seed(sim, 1, pages * SLACK_PAGE)
    daemon, client = await _daemon(sim)
    # No inbox or outbox worker: their idle polls are not the import's cost.
    try:
        async with _api(daemon) as api:
            before = client.snapshot()
            response = await api.post("/integrations", json={
                "platform": "slack", "customerId": "bench-pages", "credentials": slack_events.credentials(sim)})
            response.raise_for_status()
            await daemon.engine.importer.wait()
            spent = client.snapshot() - before
            statuses = [s for s in await daemon.store.list_sync_status(response.json()["integration"]["id"])
                        if s.chat_id is not None]
        if [s.phase for s in statuses] != ["done"]:
            raise RuntimeError(f"import did not finish: {[(s.phase, s.last_error) for s in statuses]}")
        return spent, statuses[0].counts.pages
    finally:
        await daemon.stop()


async def per_page(size: Size) -> Record:
    short, short_pages = await _import(2)
    long, long_pages = await _import(2 + size.pages)
    pages = long_pages - short_pages
    marginal = long - short
    totals = Client.totals(marginal)
    by_call = {f"{c}.{op}": round(n / pages, 3) for (c, op), n in sorted(marginal.items()) if n}
    writes, reads = totals["writes"] / pages, totals["reads"] / pages
    return Record(
        name="roundtrips_per_import_page", value=writes, unit="writes/page", baseline=None, ratio=None,
        target=f"<= {PAGE_TARGET:g} write per imported page",
        meets_target=writes <= PAGE_TARGET,
        details={"reads_per_page": reads, "roundtrips_per_page": writes + reads, "per_call": by_call,
                 "page_size": SLACK_PAGE, "pages_compared": pages},
    )


async def per_event(size: Size) -> Record:
    sim = SlackSimulator()
    daemon, client = await _daemon(sim)
    await daemon.start(schedule=False)
    try:
        async with _api(daemon) as api:
            created = await api.post("/integrations", json={
                "platform": "slack", "customerId": "bench-events", "credentials": slack_events.credentials(sim)})
            created.raise_for_status()
            integration = created.json()["integration"]
            await daemon.engine.importer.wait()
            path = integration["webhookUrl"].replace(BASE, "")
            deliveries = slack_events.deliveries(size.events + 20, sim.signing_secret)
            for body, headers in deliveries[size.events:]:  # warm: bot identity, code paths
                await api.post(path, content=body, headers=headers)
            await _settled(daemon)
            before = client.snapshot()
            loop = asyncio.get_running_loop()
            start = loop.time()
            sent: list[Any] = []
            for n, (body, headers) in enumerate(deliveries[:size.events]):
                delay = start + n / size.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent.append(asyncio.create_task(api.post(path, content=body, headers=headers)))
            answers = await asyncio.gather(*sent)
            await _settled(daemon)
            spent = client.snapshot() - before
    finally:
        await daemon.stop()
    failed = sum(1 for a in answers if a.status_code != 200)
    totals = Client.totals(spent)
    value = totals["total"] / size.events
    return Record(
        name="roundtrips_per_webhook_event", value=value, unit="round-trips/event", baseline=None, ratio=None,
        target=f"<= {EVENT_TARGET:g} per event end to end at {size.rate:g} events/s",
        meets_target=value <= EVENT_TARGET and failed == 0,
        details={"writes_per_event": round(totals["writes"] / size.events, 3),
                 "reads_per_event": round(totals["reads"] / size.events, 3),
                 "per_call": {f"{c}.{op}": round(n / size.events, 3) for (c, op), n in sorted(spent.items()) if n},
                 "events": size.events, "non_200": failed},
    )


async def _settled(daemon: Daemon, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    db = daemon.store.db
    while any(d.get("status") == "pending" for d in db["inbox"].docs.values()):
        if time.monotonic() > deadline:
            raise TimeoutError("inbox did not drain")
        await asyncio.sleep(0.01)


async def run(size: Size = QUICK) -> list[Record]:
    return [await per_page(size), await per_event(size)]
