"""CPU per platform request through ``ProviderHttp``, in one process: the network transport
the shared clients use (``syncd/kit/transport.py``, aiohttp) against httpx's own (httpcore and
h11), alternately, in the same run. The platform is a uvicorn server in a child process on
loopback answering a Slack-sized JSON body, so the figure is the client's CPU only.

``python -m bench.http_cpu [--count 2000] [--rounds 3] [--in-flight 4]``. Not in ``python -m
bench``'s list: it measures one path's cost (issue 16, target 3: a poll is mostly requests),
not a target. Prints one JSON line per transport (µs of CPU per request, best of the rounds:
a shared machine only ever adds time) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from bench.common import LOOPBACK, free_port
from syncd.kit.http import ProviderHttp, close_shared_clients
from syncd.kit.transport import AiohttpTransport

#: The platform: one JSON answer of a Slack ``conversations.history`` page's size.
SERVER = """
import sys, uvicorn
BODY = b'{"ok":true,"messages":[{"type":"message","user":"U1","text":"hello there","ts":"1700000000.000100"}],"has_more":false}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host=sys.argv[2], port=int(sys.argv[1]), log_level="error", access_log=False)
"""

TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "aiohttp (syncd)": lambda: AiohttpTransport(httpx.create_ssl_context()),
    "httpx's own": lambda: httpx.AsyncHTTPTransport(),
}


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def cpu_per_request(url: str, transport: httpx.AsyncBaseTransport, count: int, in_flight: int) -> float:
    """µs of this process's CPU per request, ``in_flight`` at a time, after one warm-up."""
    http = ProviderHttp(url, transport=transport, platform="bench", headers={"authorization": "Bearer xoxb-bench"})

    async def one() -> None:
        answer = await http.request("GET", "/api/conversations.history", params={"channel": "C1", "oldest": "1.5"})
        answer.json()

    await one()
    started = time.process_time()
    for _ in range(0, count, in_flight):
        await asyncio.gather(*(one() for _ in range(in_flight)))
    spent = time.process_time() - started
    await close_shared_clients()
    await transport.aclose()
    return 1e6 * spent / count


async def measure(url: str, count: int, rounds: int, in_flight: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, make in TRANSPORTS.items():  # alternately: the machine's noise hits both
            spent = await cpu_per_request(url, make(), count, in_flight)
            best[name] = min(best.get(name, spent), spent)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), LOOPBACK])
    try:
        wait_for_port(port)
        import uvloop  # the production image's loop

        best = uvloop.run(measure(f"http://{LOOPBACK}:{port}", args.count, args.rounds, args.in_flight))
    finally:
        server.terminate()
        server.wait(timeout=10)
    for name, spent in best.items():
        print(json.dumps({"transport": name, "cpu_us_per_request": round(spent, 1), "requests": args.count,
                          "in_flight": args.in_flight, "rounds": args.rounds}))
    ours, theirs = best["aiohttp (syncd)"], best["httpx's own"]
    print(json.dumps({"ratio_syncd_to_httpx_own": round(ours / theirs, 3)}))


if __name__ == "__main__":
    main()
