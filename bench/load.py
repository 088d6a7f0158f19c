"""A small HTTP/1.1 load generator on raw asyncio streams, for 127.0.0.1 only.

Requests are prepared as bytes before the clock starts, so the generator costs a few
microseconds per request and the server, not the generator, is what gets measured. Every run
is bounded twice: by the number of requests given and by a deadline; it stops by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.common import LOOPBACK


def request_bytes(path: str, body: bytes, headers: dict[str, str], port: int) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"host: {LOOPBACK}:{port}", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Run:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    #: Per request index: when it was due (open loop) or sent (closed loop), monotonic seconds.
    started: dict[int, float] = field(default_factory=dict)
    #: Per request index: monotonic seconds when its answer was complete.
    answered: dict[int, float] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(port: int, requests: list[bytes], *, connections: int = 32,
                      timeout_s: float = 120.0) -> Run:
    """Send every request once over ``connections`` keep-alive connections, each sending its
    next request as soon as the previous answer arrived."""
    run = Run()
    queue = iter(range(len(requests)))
    deadline = time.monotonic() + timeout_s

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            for i in queue:
                if time.monotonic() > deadline:
                    return
                run.started[i] = time.monotonic()
                try:
                    status = await _exchange(reader, writer, requests[i])
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    run.errors += 1
                    run.error_kinds[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(LOOPBACK, port)
                    continue
                run.answered[i] = time.monotonic()
                run.statuses[status] += 1
                run.sent += 1
        finally:
            writer.close()

    start = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(connection() for _ in range(connections))), timeout_s + 10)
    run.elapsed_s = time.monotonic() - start
    return run


async def open_loop(port: int, requests: list[bytes], *, rate: float, max_connections: int = 256,
                    timeout_s: float = 120.0) -> Run:
    """Start request ``i`` at ``start + i / rate`` whatever the server's pace (open loop). A
    request's clock starts when it was due, so waiting for a free connection counts against
    the server, not the generator."""
    run = Run()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(max_connections)
    deadline = time.monotonic() + timeout_s
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int) -> None:
        async with slots:
            # A kept-alive connection the server has closed meanwhile fails at once: the
            # request goes again on a new one, as any HTTP client does.
            for reused in (bool(idle), False):
                reader, writer = idle.pop() if reused else await asyncio.open_connection(LOOPBACK, port)
                try:
                    status = await _exchange(reader, writer, requests[i])
                    break
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    writer.close()
                    if not reused:
                        run.errors += 1
                        run.error_kinds[type(exc).__name__] += 1
                        return
            run.answered[i] = time.monotonic()
            run.statuses[status] += 1
            run.sent += 1
            idle.append((reader, writer))

    start = time.monotonic()
    for i in range(len(requests)):
        due = start + i / rate
        if due > deadline:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        run.started[i] = due
        tasks.append(asyncio.create_task(one(i)))
    remaining = max(1.0, deadline - time.monotonic())
    done, late = await asyncio.wait(tasks, timeout=remaining)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    run.elapsed_s = time.monotonic() - start
    for _, writer in idle:
        writer.close()
    return run
