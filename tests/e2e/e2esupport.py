"""Helpers of the end-to-end suite: crashing a replica the way a dead process would (no lease
given back), seeding the simulators, waiting for outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from syncd.daemon import Daemon
from syncd.providers.slack.sim import SlackDelivery, SlackSimulator, us_to_ts
from syncd.store import Store
from syncd.testbed import Testbed

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_payload(platform: str, description_start: str) -> dict[str, Any]:
    """A real payload from ``tests/fixtures/<platform>.json``, found by its description."""
    samples = json.loads((FIXTURES / f"{platform}.json").read_text())["samples"]
    return next(s["payload"] for s in samples if s["description"].startswith(description_start))


def signed_slack_delivery(sim: SlackSimulator, payload: dict[str, Any]) -> SlackDelivery:
    """``payload`` signed with the workspace's signing secret, as Slack would send it now."""
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(sim.signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": "v0=" + digest.hexdigest()}
    return SlackDelivery(payload, body, headers)


def never_releasing(store: Store) -> Store:
    """The same database as ``store``, seen by a process that will die holding its leases:
    releasing is a no-op, so only expiry frees them (what a crash or kill -9 leaves)."""
    dead = copy.copy(store)

    async def keep(*_: Any) -> int:
        return 0

    dead.release_lease = keep  # type: ignore[method-assign]
    dead.release_all = keep  # type: ignore[method-assign]
    return dead


async def kill(daemon: Daemon) -> None:
    """Stop a replica abruptly: its tasks are cancelled mid-work and ``stop()`` never runs."""
    engine = daemon.engine
    await engine.importer.cancel()
    tasks = [w.task for w in (engine.inbox.worker, engine.outbox.events, engine.outbox.notify)
             if w.task is not None and not w.task.done()]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


def slack_credentials(tb: Testbed) -> dict[str, str]:
    return {"botToken": next(iter(tb.slack.valid_tokens)), "signingSecret": tb.slack.signing_secret}


def seed_channel(tb: Testbed, name: str, count: int, *, start: int = 1_700_000_000) -> str:
    """A channel with ``count`` messages from one person, one second apart (old history)."""
    sim = tb.slack
    user = sim.ids.get("alice") or sim.add_user("alice", "Alice Archer", email="alice@example.com")
    sim.ids["alice"] = user
    channel = sim.add_channel(name)
    for i in range(count):
        sim.add_message(channel, f"{name} message {i}", user, ts=us_to_ts((start + i) * 1_000_000))
    return channel


async def wait_for(condition, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Until ``await condition()`` (or ``condition()``) is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def stored_messages(store: Store, chat_id: str) -> list[Any]:
    """Every stored message of a chat (tombstones included), newest first."""
    out, cursor = [], None
    while True:
        page, cursor = await store.list_messages(chat_id, cursor=cursor, limit=500)
        out += page
        if cursor is None:
            return out


class DaemonProcess:
    """``python -m syncd.cli run`` as a real child process on a free port, with a clean
    environment (only the ``SYNCD_*`` variables given) and its stderr kept in a file."""

    def __init__(self, tmp_path: Path, **env: str):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = env.get("SYNCD_ADMIN_TOKEN", "")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
        clean.update({"SYNCD_MONGODB_URI": "mongomock://", "SYNCD_HTTP_HOST": "127.0.0.1",
                      "SYNCD_HTTP_PORT": str(self.port), "SYNCD_SHUTDOWN_GRACE_S": "3", **env})
        self.env = clean
        self.stderr_path = tmp_path / f"syncd-{self.port}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "syncd.cli", "run"], env=clean,
                                        stdout=subprocess.DEVNULL, stderr=self._stderr)

    def wait_healthy(self, attempts: int = 150) -> None:
        for _ in range(attempts):
            if self.process.poll() is not None:
                raise AssertionError(f"syncd exited with {self.process.returncode}: {self.stderr()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"syncd did not answer /healthz: {self.stderr()}")

    def terminate(self, timeout_s: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._stderr.close()

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")
