"""The composition root: wires settings, store, mappings, connectors, engine, API and the
poll scheduler, and runs them until SIGTERM.

Only this module and the CLI open MongoDB, configure logging or start the scheduler.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import secrets
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
import uvicorn
from fastapi import FastAPI
from pymongo.errors import PyMongoError

from syncd.api import create_app
from syncd.config import Settings
from syncd.engine.connectors import Connectors, UnknownPlatform
from syncd.engine.context import EngineContext
from syncd.engine.engine import Engine, work_budget
from syncd.engine.lifecycle import check_every, full_sync_period
from syncd.engine.schedule import Schedule
from syncd.kit.http import close_shared_clients
from syncd.kit.loader import api_roots, extra_dir, load_all
from syncd.logs import configure_logging
from syncd.serving import server_config
from syncd.store import Store
from syncd.store.integrations import YIELD_EVERY

log = structlog.get_logger(__name__)


#: A restarted daemon's first maintenance runs (subscriptions, watches) are spread over this
#: many poll intervals.
MAINTAIN_SPREAD_POLLS = 5


def spread(key: str, over_s: float) -> float:
    """Where in ``over_s`` the first run of ``key``'s job falls: the same on every replica and
    every restart (a hash of the key), and even over many keys. A thousand integrations added
    at once (a start, a restart) then neither poll in one instant every interval, nor all
    renew their subscriptions in the first second."""
    fraction = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()) / 2**64
    return fraction * over_s


class ConfigError(Exception):
    """The configuration cannot work; the message says which variable to set."""


@dataclass
class Daemon:
    settings: Settings
    store: Store
    engine: Engine
    app: FastAPI
    scheduler: Schedule | None = None

    async def start(self, *, schedule: bool = True) -> None:
        """Start workers, resume unfinished imports, and (unless told not to) schedule polls."""
        self.engine.start()
        if not schedule:
            await self.engine.resume()  # else the first reconcile resumes, once
        else:
            self.scheduler = Schedule()
            interval = self.settings.poll_interval_s
            self.scheduler.add_job(self.reconcile, id="reconcile", every_s=interval, first_at=time.time() + interval)
            # Paused until every job is in: with thousands of integrations, polls that fire
            # while the rest are still being scheduled slow every store round-trip of the
            # start (one event-loop turn each) and push readiness out by minutes.
            self.scheduler.start(paused=True)
            await self.reconcile()
            self.scheduler.resume()

    async def reconcile(self) -> None:
        """Keep one poll, maintenance and full-sync job per live integration, resume imports that
        stalled, and retry disconnects that failed. A paused integration keeps its jobs (they
        skip it), so a resume on any replica needs no rescheduling."""
        if self.scheduler is None:
            return
        integrations = {i.id: i for i in await self.store.list_integrations(status=("active", "paused"))}
        for job in self.scheduler.get_jobs():
            kind, _, integration_id = job.id.partition(":")
            if kind in ("poll", "maintain", "full-sync") and integration_id not in integrations:
                job.remove()
        await asyncio.sleep(0)
        now = time.time()
        for n, (integration_id, integration) in enumerate(integrations.items(), 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # polls due meanwhile run, not wait for all 10,000
            try:
                cls = self.engine.ctx.connectors.connector_class(integration.platform)
            except UnknownPlatform:
                continue  # its mapping file was removed: nothing can run for it
            if cls.can_poll and self.scheduler.get_job(f"poll:{integration_id}") is None:
                every = cls.poll_every_s or self.settings.poll_interval_s
                self.scheduler.add_job(self.engine.poll, args=[integration_id], id=f"poll:{integration_id}",
                                       every_s=every, first_at=now + spread(f"poll:{integration_id}", every))
            if cls.maintain_every_s and self.scheduler.get_job(f"maintain:{integration_id}") is None:
                # First run within a few poll intervals, not a whole maintenance interval (hours
                # for a watch): subscriptions may have lapsed while no daemon was running, and
                # polls cover until they are back. Not within one: a restart of thousands of
                # integrations would make every first poll wait behind every maintenance run.
                first = spread(f"maintain:{integration_id}",
                               min(cls.maintain_every_s, MAINTAIN_SPREAD_POLLS * self.settings.poll_interval_s))
                self.scheduler.add_job(self.engine.maintain, args=[integration_id], id=f"maintain:{integration_id}",
                                       every_s=cls.maintain_every_s, first_at=now + first)
            period = full_sync_period(cls, integration)
            if period and self.scheduler.get_job(f"full-sync:{integration_id}") is None:
                # The job only asks whether a run is due; the due times (with their jitter) are
                # in the store, shared by every replica.
                every = check_every(period)
                self.scheduler.add_job(self.engine.full_sync, args=[integration_id], id=f"full-sync:{integration_id}",
                                       every_s=every, first_at=now + spread(f"full-sync:{integration_id}", every))
        await self.engine.resume(list(integrations.values()))
        await self.engine.retry_disconnects()

    async def stop(self) -> None:
        await self.stop_work()
        await self.store.close()

    async def stop_work(self) -> None:
        """Stop the scheduler and the engine (within the grace period); the store stays open
        for HTTP requests still being answered."""
        if self.scheduler is not None:
            self.scheduler.shutdown()
            self.scheduler = None
        await self.engine.stop()


def _secret_key(settings: Settings) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    if settings.mongodb_uri.startswith("mongomock://"):
        # The in-memory store dies with the process, so a process key loses nothing.
        return secrets.token_urlsafe(32)
    raise ConfigError("SYNCD_SECRET_KEY is required with a real MongoDB: it encrypts stored credentials")


async def _connect(settings: Settings) -> Store:
    try:
        return await Store.connect(settings.mongodb_uri, secret_key=_secret_key(settings),
                                   timeout_s=settings.mongodb_timeout_s)
    except (PyMongoError, ValueError) as exc:  # a URI pymongo cannot parse; never print the URI itself
        raise ConfigError(f"SYNCD_MONGODB_URI is not usable: {type(exc).__name__}: "
                          f"{_without(str(exc), settings.mongodb_uri)}") from None


def _without(text: str, uri: str) -> str:
    """``text`` with the URI's password (if it has one) replaced."""
    _, _, rest = uri.partition("://")
    credentials, at, _ = rest.rpartition("@")
    password = credentials.partition(":")[2] if at else ""
    return text.replace(password, "[redacted]") if password else text


def warn_unconfigured(settings: Settings) -> None:
    """Say at start what will not work, rather than at the first request."""
    if settings.admin_token is None:
        log.warning("SYNCD_ADMIN_TOKEN is not set: the admin API (integrations, chats, status, dead letters) "
                    "answers 503 until it is")
    if settings.app_webhook_secret is None:
        log.warning("SYNCD_APP_WEBHOOK_SECRET is not set: POST /events (app events) and signed connect "
                    "links answer 503, and callbacks to the app cannot be signed")
    if settings.mongodb_uri.startswith("mongomock://"):
        log.warning("SYNCD_MONGODB_URI=mongomock:// is an in-memory store: everything is forgotten when "
                    "syncd stops")
    for key, url in sorted(settings.base_urls.items()):
        log.info("platform API root overridden", key=key, url=url)


def _listen(settings: Settings) -> socket.socket:
    """The HTTP socket, bound before anything starts, so a port in use stops the start."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.http_host, settings.http_port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {settings.http_host}:{settings.http_port} ({exc.strerror}); "
                          "set SYNCD_HTTP_PORT or --port") from None
    return sock


async def build(
    settings: Settings,
    *,
    transports: dict[str, httpx.AsyncBaseTransport] | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] | None = None,
    store: Store | None = None,
) -> Daemon:
    """Everything wired and indexes created, nothing running yet."""
    platforms = load_all(extra=extra_dir())
    settings = settings.model_copy(update={"api_roots": {**api_roots(platforms), **settings.api_roots}})
    if store is None:
        store = await _connect(settings)
    try:
        await store.ensure_indexes()
    except PyMongoError as exc:
        await store.close()
        # pymongo names hosts and timeouts, never the URI's password; its topology
        # description after the first line adds nothing an operator can act on.
        reason = str(exc).split(", Timeout:")[0].split("\n")[0]
        raise ConfigError(f"cannot reach MongoDB within {settings.mongodb_timeout_s:g}s (SYNCD_MONGODB_TIMEOUT_S): "
                          f"{type(exc).__name__}: {reason}") from None
    connectors = Connectors(settings, platforms, transports=transports, sleep=sleep, clock=clock)
    ctx = EngineContext(settings=settings, store=store, connectors=connectors)
    engine = Engine(ctx, callback_transport=callback_transport)
    return Daemon(settings=settings, store=store, engine=engine, app=create_app(engine))


def _stop_on_signals(server: uvicorn.Server) -> None:
    """SIGTERM/SIGINT ask the server to stop (a second one stops waiting for requests).

    uvicorn re-raises the signal it caught once it has shut down, to the handler that was
    installed before it started; with the default one that kills the process before the
    engine has checkpointed its work and given its leases back. This handler makes the
    re-raised signal harmless, so ``serve`` goes on to stop the daemon and exit 0.
    """

    def handle(signum: int, frame: Any) -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    if threading.current_thread() is threading.main_thread():  # elsewhere, uvicorn skips signals too
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handle)


def _tune_gc() -> None:
    """Garbage collection for a long-running server: what exists once the daemon runs
    (modules, schemas, mappings, the app) lives as long as the process, so it is moved out of
    the collector's sight, and collections run less often. Under webhook load the default
    settings spent about a fifth of the CPU walking objects that can never be freed."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


async def serve(settings: Settings, *, on_built: Callable[[Daemon], None] | None = None, **kwargs: Any) -> None:
    """``syncd run``: the daemon until SIGTERM/SIGINT, then a graceful stop.

    ``on_built`` sees the wired daemon before it starts (the benchmarks add their probes)."""
    configure_logging(settings.log_level, settings.log_format)
    warn_unconfigured(settings)
    sock = _listen(settings)
    try:
        daemon = await build(settings, **kwargs)
    except BaseException:
        sock.close()
        raise
    if on_built is not None:
        on_built(daemon)
    server = uvicorn.Server(server_config(
        daemon.app, settings,
        # Seconds, not whole seconds: int() made a grace under 1 s "wait for ever" (None).
        timeout_graceful_shutdown=work_budget(settings.shutdown_grace_s),
    ))
    _stop_on_signals(server)
    await daemon.start()
    _tune_gc()
    stopping = asyncio.create_task(_stop_when_asked(server, daemon))
    started = asyncio.create_task(_say_started(server, settings))
    try:
        # uvicorn turns SIGTERM/SIGINT into a graceful HTTP shutdown and returns.
        await server.serve(sockets=[sock])
    finally:
        if not server.should_exit:  # the server failed rather than being asked to stop
            server.should_exit = True
        await stopping
        started.cancel()
        await daemon.store.close()
        await close_shared_clients()
        log.info("syncd stopped")


async def _say_started(server: uvicorn.Server, settings: Settings) -> None:
    """"syncd started" once the server accepts connections, not before."""
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    log.info("syncd started", host=settings.http_host, port=settings.http_port,
             store="in-memory" if settings.mongodb_uri.startswith("mongomock://") else "mongodb")


async def _stop_when_asked(server: uvicorn.Server, daemon: Daemon) -> None:
    """Stop the engine the moment the server is asked to stop, so draining HTTP requests and
    stopping the work share one grace period instead of taking one each, in turn."""
    while not server.should_exit:
        await asyncio.sleep(0.05)
    log.info("syncd stopping")
    await daemon.stop_work()


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` to completion on uvloop when it is installed (``pip install syncd[fast]``),
    else on asyncio's own loop: uvloop's socket and timer handling is markedly cheaper under
    webhook load, and nothing in syncd depends on which loop runs it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    run_on_uvloop: Callable[[Coroutine[Any, Any, Any]], Any] = uvloop.run
    return run_on_uvloop(main)
