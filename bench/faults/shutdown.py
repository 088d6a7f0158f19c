"""Scenario 8: graceful shutdown.

SIGTERM arrives while an import runs. In process, through ``syncd.daemon.serve`` (the code
``syncd run`` runs) with a real signal: the import stops at a page boundary (pages are slow)
or is cut after the grace period (a page hangs), its checkpoint is saved, every lease is
given back, and a fresh engine then finishes the import from the checkpoint. As a real
``python -m syncd.cli run`` process with a Slack simulator on a socket: SIGTERM while a page
request and an API request hang at Slack, and the process exits 0 within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import structlog

from bench.faults.harness import (
    imported,
    seed_channel,
    slack_credentials,
    slack_pages,
    testbed,
    timed,
    wait_for,
)
from bench.faults.report import Row, tally_slack
from syncd.daemon import serve
from syncd.providers.slack.sim import SlackSimulator, us_to_ts
from syncd.sim.base import FaultPlan, ServerThread
from syncd.testbed import ADMIN_TOKEN

NAME = "8 graceful shutdown"
GRACE_S = 3.0
ROOT = Path(__file__).resolve().parents[2]
KINDS = ("slow pages", "hung page")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def restored_process_state() -> Iterator[None]:
    """``serve`` configures logging and installs signal handlers for the whole process, as
    ``syncd run`` should; put both back for whatever runs next in this process."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    root = logging.getLogger()
    root_handlers, root_level = root.handlers[:], root.level
    config = structlog.get_config()
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in root_handlers:
            root.addHandler(handler)
        root.setLevel(root_level)
        structlog.configure(**config)


async def sigterm_in_process(kind: str, seed: int = 0) -> Row:
    row = Row(NAME, runs=1)
    with slack_pages(5):
        async with testbed(seed) as (tb, wire):
            channels = [seed_channel(tb.slack, f"busy-{c}", 30, start=1_700_000_000 + c * 100_000) for c in range(2)]
            total_pages = 12
            if kind == KINDS[0]:
                tb.slack.faults.plan = FaultPlan(latency_s=0.03, endpoints=frozenset({"conversations.history"}))
            else:
                # From the third page on, every page request hangs at Slack.
                wire.hold(lambda s: s.endpoint == "conversations.history"
                          and len(wire.calls("slack", "conversations.history")) >= 3, times=100)
            port = free_port()
            settings = tb.daemon.settings.model_copy(update={
                "http_host": "127.0.0.1", "http_port": port, "shutdown_grace_s": GRACE_S, "log_level": "CRITICAL"})
            store = copy.copy(tb.daemon.store)
            store.close = _keep_open  # type: ignore[method-assign]  # the database outlives the process
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
                with restored_process_state():
                    served = asyncio.create_task(serve(
                        settings, transports={n: wire.transport(n, s) for n, s in tb.sims.items()},
                        sleep=tb.sleep, store=store))
                    await wait_for(lambda: _healthy(http), what="the daemon to serve")
                    response = await http.post("/integrations", json={
                        "platform": "slack", "customerId": "cust-1", "credentials": slack_credentials(tb)})
                    integration = response.json()["integration"]

                    async def importing() -> bool:
                        statuses = await tb.daemon.store.list_sync_status(integration["id"])
                        return sum(s.counts.pages for s in statuses) >= 2
                    await wait_for(importing, what="the import to be under way")
                    started = time.monotonic()
                    os.kill(os.getpid(), signal.SIGTERM)
                    await asyncio.wait_for(served, GRACE_S + 10)
                    stopped = time.monotonic() - started
            row.fact("max_stop_ms", round(stopped * 1000))
            row.expect(stopped <= GRACE_S, f"{kind}: stopped {stopped:.2f} s after SIGTERM, grace {GRACE_S} s")

            # The checkpoint accounts for every stored message: nothing was stored past it.
            store = tb.daemon.store
            statuses = [s for s in await store.list_sync_status(integration["id"]) if s.chat_id]
            checkpointed = sum(s.counts.pages for s in statuses)
            stored = await store.messages.count_documents({})
            row.fact("pages_checkpointed", checkpointed)
            row.expect(0 < checkpointed < total_pages, f"{kind}: {checkpointed} pages checkpointed of {total_pages}")
            row.expect(stored == sum(s.counts.fetched for s in statuses),
                       f"{kind}: {stored} messages stored, the checkpoint says {sum(s.counts.fetched for s in statuses)}")
            row.expect(await store.leases.count_documents({}) == 0, f"{kind}: leases left behind")

            # The next process carries on from the checkpoint.
            for hold in wire.holds:
                hold.times = 0
            tb.slack.faults.reset()
            successor = await tb.replica()
            await successor.engine.importer.wait()
            await wait_for(lambda: imported(store, integration["id"]), what="the import to be finished")
            row.tally = await tally_slack(tb.api, integration["id"], tb.slack, channels)
    return row


async def _keep_open() -> None:
    return None


async def _healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


def sigterm_process() -> Row:
    """``syncd run`` as a real process: SIGTERM with a page request and an API request hanging
    at Slack; it must exit 0 within its grace period."""
    row = Row(NAME, runs=1)
    sim = SlackSimulator()
    channel = sim.add_channel("busy")
    user = sim.add_user("alice", "Alice Archer")
    for i in range(450):  # three pages of 200
        sim.add_message(channel, f"busy message {i}", user, ts=us_to_ts((1_700_000_000 + i) * 10**6))
    hang_s = GRACE_S + 3
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    with ServerThread(sim) as server, tempfile.TemporaryFile() as stderr:
        env.update({"SYNCD_MONGODB_URI": "mongomock://", "SYNCD_HTTP_HOST": "127.0.0.1", "SYNCD_HTTP_PORT": str(port),
                    "SYNCD_ADMIN_TOKEN": ADMIN_TOKEN, "SYNCD_SHUTDOWN_GRACE_S": str(GRACE_S),
                    "SYNCD_SLACK_BASE_URL": server.url + "/api", "SYNCD_LOG_FORMAT": "json"})
        process = subprocess.Popen([sys.executable, "-m", "syncd.cli", "run"], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            url, headers = f"http://127.0.0.1:{port}", {"authorization": f"Bearer {ADMIN_TOKEN}"}
            _wait_sync(lambda: _healthy_sync(url), "syncd run to serve")
            sim.faults.plan = FaultPlan(latency_s=hang_s,
                                        endpoints=frozenset({"conversations.history", "conversations.list"}))
            created = httpx.post(url + "/integrations", headers=headers, timeout=10, json={
                "platform": "slack", "customerId": "cust-1",
                "credentials": {"botToken": next(iter(sim.valid_tokens)), "signingSecret": sim.signing_secret}})
            row.expect(created.status_code == 201, f"create answered {created.status_code}")
            _wait_sync(lambda: sim.faults.calls["conversations.list"] > 0, "the import to ask Slack")
            # An API request in flight too: it hangs at Slack like the import's page.
            hanging = _background_get(url + f"/integrations/{created.json()['integration']['id']}/chats/available",
                                      headers)
            _wait_sync(lambda: sim.faults.calls["conversations.list"] > 1, "the API request to reach Slack")
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=GRACE_S + hang_s + 10)
            exited = time.monotonic() - started
            hanging.join(timeout=hang_s + 5)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            sim.faults.plan = FaultPlan()
        stderr.seek(0)
        log = stderr.read().decode(errors="replace")
    row.fact("max_exit_ms", round(exited * 1000))
    row.expect(code == 0, f"syncd run exited {code}: {log[-500:]}")
    row.expect(exited <= GRACE_S, f"syncd run exited {exited:.2f} s after SIGTERM, grace {GRACE_S} s")
    row.expect('"syncd stopped"' in log, "no 'syncd stopped' line in the log")
    return row


def _healthy_sync(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _wait_sync(condition: Any, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _background_get(url: str, headers: dict[str, str]) -> Any:
    import threading

    def get() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, headers=headers, timeout=30)

    thread = threading.Thread(target=get, daemon=True)
    thread.start()
    return thread


@timed
async def run(size: int, seed: int = 0) -> Row:
    """``size`` SIGTERMs in process (alternating slow and hung pages) and one to a real
    ``syncd run`` process."""
    row = Row(NAME)
    for i in range(size):
        row.merge(await sigterm_in_process(KINDS[i % 2], seed + i))
    row.merge(await asyncio.to_thread(sigterm_process))
    row.fact("max_grace_ms", round(GRACE_S * 1000))
    return row
