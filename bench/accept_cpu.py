"""CPU per accepted webhook delivery, in one process: signed Slack deliveries sent straight into
the daemon's ASGI app (no HTTP client, no server, no inbox worker), against a bare endpoint on
the same app that only parses the same bodies. ``time.process_time`` per round, best of the
rounds (a shared machine only ever adds time).

``python -m bench.accept_cpu [--count 600] [--rounds 5] [--profile FILE]``. Not in
``python -m bench``'s list: it measures one path's cost, not a target. It only uses what the
tree before the platform kit (4bb0a37) has too, so the same file runs against that tree
(``PYTHONPATH=<old tree> python <this file>``) and the two figures compare.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import time
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from bench import slack_events
from bench.common import ADMIN_TOKEN, APP_SECRET, LOOPBACK, SECRET_KEY
from bench.mongo_double import Client
from syncd import daemon as daemon_module
from syncd.config import Settings
from syncd.logs import configure_logging
from syncd.models import Integration
from syncd.sim.base import ServerThread
from syncd.store import Store, _fernet

WEBHOOK_PATH = "/webhooks/{platform}/{integration_id}"


def _scope(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": (LOOPBACK, 50000), "server": (LOOPBACK, 8000),
    }


async def _send_all(app: Any, path: str, deliveries: list[tuple[bytes, dict[str, str]]]) -> int:
    """Each delivery through the app, one after the other; the number answered 200."""
    ok = 0
    for body, headers in deliveries:
        sent = False
        status: list[int] = []

        async def receive(body: bytes = body) -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)  # no disconnect while the app answers
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any], status: list[int] = status) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(_scope(path, {**headers, "content-length": str(len(body))}), receive, send)
        ok += status == [200]
    return ok


def _add_bare(app: Any) -> None:
    """``POST /bench/bare``: parses the JSON body and answers 200, matched where the webhook
    route is (as ``bench.server`` places it)."""

    async def bare(request: Request) -> JSONResponse:
        json.loads(await request.body())
        return JSONResponse({"ok": True})

    app.add_api_route("/bench/bare", bare, methods=["POST"], include_in_schema=False)
    routes = app.router.routes
    route = routes.pop()
    routes.insert(next(i for i, r in enumerate(routes) if getattr(r, "path", "") == WEBHOOK_PATH), route)


async def measure(count: int, rounds: int, profile: str | None) -> dict[str, Any]:
    sim = slack_events.simulator()
    with ServerThread(sim) as platform:
        client = Client()
        store = Store(client, client["syncd"], _fernet(SECRET_KEY))
        settings = Settings(mongodb_uri="mongodb://bench-double/syncd", http_host=LOOPBACK, http_port=8000,
                            public_url=f"http://{LOOPBACK}:8000", admin_token=ADMIN_TOKEN,
                            app_webhook_secret=APP_SECRET, secret_key=SECRET_KEY, log_level="WARNING",
                            base_urls={"slack": platform.url})
        configure_logging("WARNING", "json")
        daemon = await daemon_module.build(settings, store=store)
        _add_bare(daemon.app)
        integration = Integration(customer_id="bench-customer", platform="slack", name="bench")
        await store.insert_integration(integration, slack_events.credentials(sim))
        path = f"/webhooks/slack/{integration.id}"
        # Fresh timestamps for each round: the replay window is checked on every delivery.
        batches = [slack_events.deliveries(count, sim.signing_secret, start=(r + 1) * count)
                   for r in range(rounds + 1)]
        warm = slack_events.deliveries(count, sim.signing_secret, start=0)
        assert await _send_all(daemon.app, path, warm) == count, "the warm-up deliveries were not all accepted"
        await _send_all(daemon.app, "/bench/bare", warm)
        gc.collect()
        gc.freeze()  # as the daemon does once started (``syncd.daemon._tune_gc``)
        gc.set_threshold(10_000, 50, 100)
        hook_s: list[float] = []
        bare_s: list[float] = []
        profiler = cProfile.Profile() if profile else None
        for batch in batches[:rounds]:
            started = time.process_time()
            await _send_all(daemon.app, "/bench/bare", batch)
            bare_s.append(time.process_time() - started)
            if profiler:
                profiler.enable()
            started = time.process_time()
            accepted = await _send_all(daemon.app, path, batch)
            hook_s.append(time.process_time() - started)
            if profiler:
                profiler.disable()
            assert accepted == count, f"only {accepted} of {count} deliveries accepted"
        if profiler and profile:
            profiler.dump_stats(profile)
    hook_us, bare_us = min(hook_s) / count * 1e6, min(bare_s) / count * 1e6
    return {"webhook_us": round(hook_us, 1), "bare_us": round(bare_us, 1),
            "ratio_bare_to_webhook": round(bare_us / hook_us, 3), "count": count, "rounds": rounds}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=600, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of the webhook rounds to this file")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.count, args.rounds, args.profile))))


if __name__ == "__main__":
    cli()
