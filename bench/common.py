"""What every benchmark shares: the record it prints, sizes, the store double wiring, process
memory, percentiles, and a syncd daemon in a child process reached over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "bench-admin-token"
APP_SECRET = "bench-app-secret"
SECRET_KEY = "bench-secret-key"
LOOPBACK = "127.0.0.1"
#: Printed with every record: what "round-trips" stand for on this machine.
DB_NOTE = ("MongoDB calls are answered by the counting in-memory double in bench/mongo_double.py "
           "(no MongoDB server here); database cost is reported as round-trips, not time")


@dataclass
class Record:
    """One benchmark's result line. ``ratio`` is ``value / baseline`` (both measured in the same
    run); ``meets_target`` compares it (or ``value`` where no baseline applies) with ``target``."""

    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    meets_target: bool
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        out = asdict(self)
        for key in ("value", "baseline", "ratio"):
            if isinstance(out[key], float):
                out[key] = round(out[key], 4)
        if not out["details"]:
            del out["details"]
        return json.dumps(out, separators=(", ", ": "))


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), nearest-rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process, in MiB (Linux /proc)."""
    path = f"/proc/{pid or os.getpid()}/status"
    with open(path, encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def base_url_env(base_urls: dict[str, str]) -> dict[str, str]:
    """The same roots as ``SYNCD_<KEY>_BASE_URL``: some platform code (an OAuth token root)
    reads only the environment, as ``syncd sim`` sets it."""
    return {f"SYNCD_{key.upper()}_BASE_URL": url for key, url in base_urls.items()}


class Daemon:
    """``python -m bench.server``: the real daemon (``syncd run``'s code path, store double
    inside) in a child process on 127.0.0.1, stopped with SIGTERM when the benchmark ends."""

    def __init__(self, mode: str = "default", *, env: dict[str, str] | None = None, start_timeout_s: float = 60,
                 **options: Any):
        self.start_timeout_s = start_timeout_s
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.mode, self.options, self.env = mode, options, env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.admin = httpx.AsyncClient(base_url=self.url, timeout=60,
                                       headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    async def __aenter__(self) -> Daemon:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "bench.server", "--port", str(self.port),
                   "--mode", self.mode, "--options", json.dumps(self.options)]
        # A file, not a pipe: nobody reads a pipe while the daemon runs, and once 64 KB of
        # warnings (a busy start's late jobs) filled it, the daemon blocked in its next log
        # write and answered nothing more: the "probe timeouts" of earlier replica runs.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=self.log)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bench server exited: {self._stderr()}")
            try:
                if (await self.admin.get("/healthz")).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                await self.__aexit__()  # a daemon that never answered is stopped, not orphaned
                raise RuntimeError(f"bench server did not start within {self.start_timeout_s:g} s")
            await asyncio.sleep(0.05)

    def _stderr(self) -> str:
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, self.log.tell() - 8000))
        return self.log.read().decode(errors="replace")[-2000:]

    async def __aexit__(self, *exc: object) -> None:
        await self.admin.aclose()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)
        self.log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.admin.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    async def stats(self, **params: Any) -> dict[str, Any]:
        return await self.call("GET", "/bench/stats", params=params)
