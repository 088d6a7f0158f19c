"""The daemon under benchmark, in its own process: ``syncd run``'s code path
(:func:`syncd.daemon.serve`, uvloop when installed) with the store's MongoDB calls answered by
the counting double, plus probes under ``/bench`` that the benchmarks read.

``python -m bench.server --port P [--options JSON]``; it listens on 127.0.0.1 only and stops
on SIGTERM like the real daemon. The probes read the double directly, so they add no
round-trips to what they report.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import tracemalloc
from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from bench.common import ADMIN_TOKEN, APP_SECRET, LOOPBACK, SECRET_KEY, rss_mb
from bench.double_process import RemoteClient
from bench.hooks import GcPauses, PollTrace, double_stats, dump, fill, preload, process_rss, wait_pending
from bench.mongo_double import Client
from syncd import daemon as daemon_module
from syncd.config import Settings
from syncd.daemon import Daemon
from syncd.models import Chat, Integration, SyncStatus, UserPlatform
from syncd.store import Store, _fernet
from syncd.universal import ChatData

#: Options of the benchmark's own, not ``Settings`` fields.
BENCH_OPTIONS = frozenset({"slim", "timestamps", "log_level", "profile", "preload", "trace_polls", "tracemalloc",
                           "double_process"})


def _probes(client: Client | RemoteClient, options: dict[str, Any]) -> Any:
    def attach(daemon: Daemon) -> None:
        app, store, engine = daemon.app, daemon.store, daemon.engine
        trace = PollTrace()
        pauses = GcPauses()
        if options.get("trace_polls"):
            trace.wrap(daemon)

        async def polls(request: Request) -> JSONResponse:
            # Asked every half second while waiting: the count only, not the whole trace.
            return JSONResponse(trace.report() if request.query_params.get("full") else {"polled": len(trace.starts)})

        async def filled(request: Request) -> JSONResponse:
            return JSONResponse({"messages": await client.run(fill, int((await request.json())["count"]))})

        async def dumped(request: Request) -> Response:
            return Response(await client.run(dump, request.query_params["integration"]),
                            media_type="application/octet-stream")

        async def bare(request: Request) -> JSONResponse:
            # The floor the webhook endpoint is compared with: the same stack, middleware and
            # parser (JSON, a form, or XML, as the platform posts), none of the verification,
            # storage or bookkeeping.
            body = await request.body()
            kind = request.headers.get("content-type", "")
            if kind.startswith("application/x-www-form-urlencoded"):
                parse_qsl(body.decode(), keep_blank_values=True)
            elif kind.startswith("multipart/form-data"):
                await request.form()
            elif body[:1] == b"<":
                ElementTree.fromstring(body)
            else:
                json.loads(body)
            return JSONResponse({"ok": True})

        async def stats(request: Request) -> JSONResponse:
            body = await client.run(double_stats, dict(request.query_params))
            body.update({
                "rss_mb": rss_mb(), "poll_jobs": len(daemon.scheduler.get_jobs()) if daemon.scheduler else 0,
                "connectors": len(engine.ctx.connectors._cache), "gc": pauses.report(),
            })
            if isinstance(client, RemoteClient):
                body["double_process"] = {"pid": client.process.pid, "rss_mb": await client.run(process_rss)}
            return JSONResponse(body)

        async def pending(request: Request) -> JSONResponse:
            """Deliveries not yet processed, and callbacks not yet delivered (queued or being
            sent), read from the indexes' status buckets. ``wait=S`` answers once there are
            none (or after S seconds; with ``callbacks=1`` the callbacks count too): one
            request per wait instead of one per poll, so waiting costs the measured daemon
            next to nothing and ends within ~1 ms of the inbox emptying."""
            wait = float(request.query_params.get("wait", 0))
            keys = ["pending", "callbacks"] if request.query_params.get("callbacks") else ["pending"]
            counts = await client.run(wait_pending, keys, wait)
            return JSONResponse(counts)

        async def seed(request: Request) -> JSONResponse:
            """Integrations as a finished import leaves them: active, chats imported, a poll
            mark set. The benchmarks need hundreds without replaying hundreds of imports."""
            spec = await request.json()
            ids = []
            now = engine.ctx.now()
            mark = f"{now.timestamp():.6f}"
            for n in range(int(spec["count"])):
                customer = f"{spec.get('customer', 'bench-customer')}-{n}" if spec.get("distinct") else \
                    spec.get("customer", "bench-customer")
                integration = Integration(customer_id=customer, platform=spec["platform"], name=f"bench {n}")
                await store.insert_integration(integration, spec["credentials"])
                for external_id in spec.get("self_ids", []):
                    await store.upsert_user_platform(UserPlatform(
                        customer_id=customer, platform=spec["platform"], integration_id=integration.id,
                        external_user_id=external_id, is_self=True))
                marks: dict[str, str] = {"*": mark}
                for external_chat_id in spec.get("chats", []):
                    chat: Chat = await store.upsert_chat(customer, integration.id, spec["platform"],
                                                         ChatData(external_chat_id=external_chat_id), imported=True)
                    await store.save_sync_status(SyncStatus(
                        integration_id=integration.id, chat_id=chat.id, external_chat_id=external_chat_id,
                        phase="done", started_at=now, finished_at=now))
                    marks[external_chat_id] = mark
                await store.save_sync_status(SyncStatus(
                    integration_id=integration.id, phase="done", high_watermark=marks,
                    started_at=now - timedelta(seconds=1), finished_at=now))
                ids.append(integration.id)
            await daemon.reconcile()
            return JSONResponse({"ids": ids})

        async def memory(request: Request) -> JSONResponse:
            """Read-only: the largest allocation sites still held (when the daemon runs with
            ``tracemalloc``), counts of live objects by type, and the double's share."""
            top = int(request.query_params.get("top", 40))
            body: dict[str, Any] = {"rss_mb": rss_mb()}
            if tracemalloc.is_tracing():
                snapshot = tracemalloc.take_snapshot()
                stats = snapshot.statistics("lineno")
                body["traced_mb"] = round(sum(s.size for s in stats) / 2**20, 1)
                # What the double holds (documents, indexes, the preloaded clones): in MongoDB's
                # process in a deployment. Exact only with enough frames to reach the double.
                double = snapshot.filter_traces([tracemalloc.Filter(True, "*/bench/*", all_frames=True)])
                body["double_mb"] = round(sum(s.size for s in double.statistics("filename")) / 2**20, 1)
                body["sites"] = [{"site": str(s.traceback[0]), "kb": round(s.size / 1024, 1), "count": s.count}
                                 for s in stats[:top]]
            if request.query_params.get("types"):
                counts = Counter(type(o).__qualname__ for o in gc.get_objects())
                body["types"] = counts.most_common(top)
            return JSONResponse(body)

        app.add_api_route("/bench/bare", bare, methods=["POST"], include_in_schema=False)
        # Routes are matched in order: the bare route goes where the webhook route is, so
        # neither pays more than the other for finding its handler.
        routes = app.router.routes
        bare_route = routes.pop()
        at = next(i for i, r in enumerate(routes) if getattr(r, "path", "") == "/webhooks/{platform}/{integration_id}")
        routes.insert(at, bare_route)
        app.add_api_route("/bench/stats", stats, methods=["GET"], include_in_schema=False)
        app.add_api_route("/bench/pending", pending, methods=["GET"], include_in_schema=False)
        app.add_api_route("/bench/seed", seed, methods=["POST"], include_in_schema=False)
        app.add_api_route("/bench/polls", polls, methods=["GET"], include_in_schema=False)
        app.add_api_route("/bench/fill", filled, methods=["POST"], include_in_schema=False)
        app.add_api_route("/bench/memory", memory, methods=["GET"], include_in_schema=False)
        app.add_api_route("/bench/dump", dumped, methods=["GET"], include_in_schema=False)

    return attach


async def _double(options: dict[str, Any]) -> Client | RemoteClient:
    """The counting double: in this process, or with ``double_process`` in its own (where
    MongoDB would be). In this process the memory benchmarks drop message documents
    (``slim``), which MongoDB would hold in its own process."""
    discard = ["messages"] if options.get("slim") else []
    if options.get("double_process"):
        return await RemoteClient.spawn(discard=discard, timestamps=bool(options.get("timestamps")))
    return Client(discard=frozenset(discard), timestamps=bool(options.get("timestamps")))


async def main(port: int, options: dict[str, Any]) -> None:
    if options.get("tracemalloc"):
        tracemalloc.start(int(options["tracemalloc"]))
    client = await _double(options)
    if options.get("preload"):  # before the daemon starts: what a restart finds in the store
        spec = options["preload"]
        await client.run(preload, [open(path, "rb").read() for path in spec["files"]], int(spec["count"]))
    store = Store(client, client["syncd"], _fernet(SECRET_KEY))
    settings = Settings(
        mongodb_uri="mongodb://bench-double/syncd", http_host=LOOPBACK, http_port=port,
        public_url=f"http://{LOOPBACK}:{port}", admin_token=ADMIN_TOKEN, app_webhook_secret=APP_SECRET,
        secret_key=SECRET_KEY, log_level=options.get("log_level", "WARNING"),
        **{k: v for k, v in options.items() if k not in BENCH_OPTIONS},
    )
    if not options.get("profile"):
        await daemon_module.serve(settings, store=store, on_built=_probes(client, options))
        return
    # A cProfile of the whole daemon, written when it stops (SIGTERM): where its CPU goes.
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await daemon_module.serve(settings, store=store, on_built=_probes(client, options))
    finally:
        profiler.disable()
        profiler.dump_stats(options["profile"])


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="default")
    parser.add_argument("--options", default="{}", help="JSON: Settings fields, plus slim/timestamps/profile (a file for cProfile stats)")
    args = parser.parse_args()
    daemon_module.run(main(args.port, json.loads(args.options)))


if __name__ == "__main__":
    cli()
