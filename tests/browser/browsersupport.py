"""Helpers of the browser suite (its own module name: test directories share sys.path): a
syncd served on a loopback port, and logging in."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Coroutine
from typing import Any

import uvicorn

from syncd.testbed import ADMIN_TOKEN, Testbed


class Switch:
    """The ASGI app the server serves: whichever daemon the current test runs."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class Server:
    """An event loop in a thread, serving ``switch`` on 127.0.0.1."""

    def __init__(self) -> None:
        self.switch = Switch()
        self.loop = asyncio.new_event_loop()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.switch, log_level="warning", lifespan="off",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        for _ in range(1000):
            if self.server.started:
                return
            threading.Event().wait(0.01)
        raise RuntimeError("the test server did not start")

    async def _serve(self) -> None:
        await self.server.serve(sockets=[self._sock])

    def run(self, work: Coroutine[Any, Any, Any], timeout_s: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.server.should_exit = True
        threading.Event().wait(0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self._sock.close()


class Bed:
    """One test's syncd behind the shared server."""

    def __init__(self, server: Server, tb: Testbed):
        self.server, self.tb, self.url = server, tb, server.url

    def run(self, work: Coroutine[Any, Any, Any], timeout_s: float = 30) -> Any:
        return self.server.run(work, timeout_s)

    def slack(self, **settings: Any) -> dict[str, Any]:
        """A Slack integration on the seeded workspace, its initial import finished."""
        return self.run(self.tb.create_slack(settings=settings or None))


def make_bed(server: Server, **overrides: Any) -> Bed:
    async def start() -> Testbed:
        tb = await Testbed.start(public_url=server.url, **overrides)
        tb.slack.seed_workspace()
        return tb

    tb = server.run(start())
    server.switch.app = tb.daemon.app
    return Bed(server, tb)


def log_in(page: Any, token: str = ADMIN_TOKEN) -> None:
    page.goto("/ui/login")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/ui(\?.*)?$"))
