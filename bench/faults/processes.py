"""syncd as real processes on a real MongoDB, and the simulators on real sockets: what the
MongoDB variants of scenarios 1, 5 and 6 (``tests/reliability/test_*_mongodb.py``) kill with
SIGKILL. Nothing here runs without ``SYNCD_TEST_MONGODB_URI``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.responses import JSONResponse

from bench.faults.harness import Seen
from syncd.testbed import ADMIN_TOKEN, APP_SECRET

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "fault-suite-secret-key-0123456789"


def database_uri(uri: str, name: str) -> str:
    """``uri`` with its database replaced by ``name`` (each test gets a database of its own)."""
    parts = urllib.parse.urlsplit(uri)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def drop_database(uri: str) -> None:
    from pymongo import MongoClient

    client = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(client.get_default_database().name)
    finally:
        client.close()


@dataclass
class TapRule:
    """Requests matching ``match`` (at most ``times``): ``hold`` keeps them until released and
    then drops them without the simulator ever seeing them (their caller is dead by then);
    ``notify`` lets them through and says so once the simulator has answered."""

    match: Callable[[Seen], bool]
    action: str = "hold"
    times: int = 1
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    async def wait(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.reached.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError("the tapped request never came")
            await asyncio.sleep(0.005)


class Tap:
    """An ASGI wrapper around a simulator that records every request and applies rules; the
    simulator runs in a server thread, the test in its own loop, so state is locked."""

    def __init__(self, app: Any, sim: str):
        self.app, self.sim = app, sim
        self.seen: list[Seen] = []
        self.rules: list[TapRule] = []
        self.lock = threading.RLock()  # rules may look at what was seen

    def rule(self, match: Callable[[Seen], bool], action: str = "hold", times: int = 1) -> TapRule:
        rule = TapRule(match, action, times)
        with self.lock:
            self.rules.append(rule)
        return rule

    def calls(self, endpoint: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.endpoint == endpoint]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        params = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode()))
        seen = Seen(self.sim, scope["method"], scope["path"], params)
        with self.lock:
            self.seen.append(seen)
            rule = next((r for r in self.rules if r.times > 0 and r.match(seen)), None)
            if rule is not None:
                rule.times -= 1
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.action == "notify":
            await self.app(scope, receive, send)
            rule.reached.set()
            return
        rule.reached.set()
        while not rule.released.is_set():
            await asyncio.sleep(0.01)
        await JSONResponse({"error": "dropped"}, status_code=503)(scope, receive, send)


class SyncdProcess:
    """``python -m syncd.cli run`` on a free loopback port with exactly the given settings."""

    def __init__(self, env: dict[str, str], name: str = "syncd"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
        clean.update({"SYNCD_HTTP_HOST": "127.0.0.1", "SYNCD_HTTP_PORT": str(self.port),
                      "SYNCD_PUBLIC_URL": self.url, **env})
        self.name = name
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, "-m", "syncd.cli", "run"], env=clean, cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=self.stderr)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)

    async def healthy(self, timeout_s: float = 60) -> SyncdProcess:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as http:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}: {self.log()[-2000:]}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} never became ready: {self.log()[-2000:]}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: nothing of the process runs after this, no finally, no lease release."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def log(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


def signed_event(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """An app event's body and headers, signed as the app signs ``POST /events``."""
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-syncd-signature": signature}


def syncd_env(mongodb_uri: str, **base_urls: str) -> dict[str, str]:
    """Settings for syncd processes of a fault test: short leases and poll intervals so that
    takeovers happen in seconds; ``base_urls`` maps platform -> simulator root."""
    env = {
        "SYNCD_MONGODB_URI": mongodb_uri, "SYNCD_SECRET_KEY": SECRET_KEY, "SYNCD_ADMIN_TOKEN": ADMIN_TOKEN,
        "SYNCD_APP_WEBHOOK_SECRET": APP_SECRET, "SYNCD_LEASE_TTL_S": "2", "SYNCD_POLL_INTERVAL_S": "1",
        "SYNCD_WORKER_POLL_S": "0.05", "SYNCD_RETRY_BASE_S": "0.2", "SYNCD_RETRY_MAX_S": "1",
        "SYNCD_SHUTDOWN_GRACE_S": "3", "SYNCD_LOG_LEVEL": "WARNING",
    }
    for platform, url in base_urls.items():
        env[f"SYNCD_{platform.upper()}_BASE_URL"] = url
    return env


async def eventually(condition: Callable[[], Any], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def import_done(api: httpx.AsyncClient, integration_id: str) -> bool:
    try:
        statuses = (await api.get(f"/integrations/{integration_id}/status")).json()["status"]
    except (httpx.TransportError, KeyError, ValueError):
        return False
    return bool(statuses) and all(s["phase"] == "done" for s in statuses)
