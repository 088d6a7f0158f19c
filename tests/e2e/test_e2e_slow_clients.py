"""Slow and idle clients are dropped, and the server stays fast for everyone else: a request's
headers and body must arrive whole within SYNCD_HTTP_READ_TIMEOUT_S (one byte a second is not
enough), an idle kept-alive connection is closed after SYNCD_HTTP_KEEP_ALIVE_S, and a
connection that never sends anything is closed too."""

from __future__ import annotations

import asyncio
import gc
import socket
import time

import httpx
import uvicorn

from syncd.config import Settings
from syncd.daemon import build
from syncd.serving import server_config

READ_TIMEOUT_S = 1.0


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(65536), 0.05) == b"" or reader.at_eof()
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
    except ConnectionError:
        pass


async def test_slow_and_idle_clients_are_closed_and_healthz_stays_fast() -> None:
    settings = Settings(mongodb_uri="mongomock://", http_read_timeout_s=READ_TIMEOUT_S, http_keep_alive_s=1,
                        http_max_connections=500)
    daemon = await build(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(daemon.app, settings))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
        headers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        bodies = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        trickles = [asyncio.create_task(_trickle(w, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 0.2))
                    for _, w in headers]
        for _, writer in bodies:
            writer.write(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 200\r\n\r\n")
        trickles += [asyncio.create_task(_trickle(w, b"{" * 200, 0.2)) for _, w in bodies]
        kept_alive = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")

        worst = 0.0
        # What is timed is the server among slow clients: not a full collection of the garbage
        # that earlier tests in this process left (up to a second on a busy CI worker).
        gc.collect()
        gc.disable()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                deadline = time.monotonic() + READ_TIMEOUT_S + 1.5
                assert (await kept_alive.get("/healthz")).status_code == 200
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    assert (await client.get("/healthz")).status_code == 200
                    worst = max(worst, time.monotonic() - started)
                    await asyncio.sleep(0.1)
        finally:
            gc.enable()
        assert worst < 0.5, f"/healthz took {worst:.2f}s while slow clients were connected"
        for group, name in ((idle, "idle"), (headers, "header trickle"), (bodies, "body trickle")):
            still_open = [n for n, (reader, _) in enumerate(group) if not await _closed(reader)]
            assert still_open == [], f"{len(still_open)} {name} connections still open"
        # The kept-alive client's connection was closed after its idle time; it reconnects.
        assert (await kept_alive.get("/healthz")).status_code == 200
        await kept_alive.aclose()
        for task in trickles:
            task.cancel()
        for _, writer in idle + headers + bodies:
            writer.close()
    finally:
        server.should_exit = True
        await serving
        await daemon.store.close()
