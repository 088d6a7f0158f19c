"""A Slack workspace that allows R Web API requests per second, and its seeding.

R requests per one-second window, the window opening with its first request: one budget that
every API method shares, or (``per_method``) one budget per Web API method, as Slack's tiers
are documented (``FACTS.md``: "Tiers per method"). Beyond it Slack's own answer comes back: HTTP 429, ``Retry-After``
and ``{"ok": false, "error": "ratelimited"}``. ``Retry-After`` says exactly when the window
reopens (to the millisecond: a whole-second value would make any client lose up to a second
per window, whatever it does). Refused requests do not use up the budget. Every answer takes
``latency_s`` (150 ms by default, a Web API round-trip from a data centre), so a client that
asks one page at a time cannot use a budget of more than a few requests per second.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncd.providers.slack.sim import SlackSimulator, us_to_ts


@dataclass
class _Window:
    """One budget's current window: when it opened, and the units it has admitted."""

    opened: float
    used: int = 0


class RateLimited:
    """ASGI wrapper of a simulator: ``rate`` requests per window of ``window_s`` seconds."""

    def __init__(self, app: Any, rate: int, window_s: float = 1.0, latency_s: float = 0.15,
                 cost: Callable[[str, str], int] | None = None, per_method: bool = False):
        """``rate`` units per window; a request costs ``cost(method, path)`` units (default 1).
        With ``per_method`` each API method (the path's last part) has a budget of its own."""
        self.app, self.rate, self.window_s, self.latency_s = app, rate, window_s, latency_s
        self.cost = cost or (lambda method, path: 1)
        self.per_method = per_method
        #: Units admitted per window, from the first window on (with one shared budget; with a
        #: budget per method, their windows open at different moments).
        self.use: dict[int, int] = {}
        self.lock = threading.Lock()
        #: Per budget ("" when shared): its current window.
        self.windows: dict[str, _Window] = {}
        self.calls: Counter[str] = Counter()
        self.refused = 0
        self.first: float | None = None
        self.last: float | None = None

    def window_use(self) -> list[int]:
        """Units admitted in each window from the first to the last that admitted any."""
        return [self.use.get(w, 0) for w in range(max(self.use) + 1)] if self.use else []

    def window_at(self, moment: float) -> int:
        """The window (as ``window_use`` counts them) that ``moment`` (monotonic) falls in."""
        return -1 if self.first is None else int((moment - self.first) // self.window_s)

    def _admit(self, units: int = 1, method: str = "") -> float | None:
        """None when the request may go through, else seconds until its window reopens."""
        now = time.monotonic()
        with self.lock:
            budget = self.windows.setdefault(method if self.per_method else "", _Window(opened=now))
            if now >= budget.opened + self.window_s:
                budget.opened += (now - budget.opened) // self.window_s * self.window_s
                budget.used = 0
            if budget.used + units <= self.rate:
                budget.used += units
                self.first = self.first or now
                self.last = now
                window = round((budget.opened - self.first) / self.window_s)
                self.use[window] = self.use.get(window, 0) + units
                return None
            self.refused += 1
            return budget.opened + self.window_s - now

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["path"].rstrip("/").rsplit("/", 1)[-1]
        wait = self._admit(self.cost(scope["method"], scope["path"]), method)
        reopens = None if wait is None else time.monotonic() + wait
        await asyncio.sleep(self.latency_s)
        if wait is None:
            self.calls[method] += 1
            await self.app(scope, receive, send)
            return
        body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
        # Counted from the answer, as a platform stamps it: the wait at arrival, less the
        # latency spent since, is when the window really reopens.
        assert reopens is not None
        retry_after = f"{math.ceil(max(0.0, reopens - time.monotonic()) * 1000) / 1000:.3f}"
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", retry_after.encode()),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def seed(sim: SlackSimulator, chats: int, messages: int, *, start: int = 1_600_000_000) -> list[str]:
    """``chats`` public channels of ``messages`` messages each (distinct ts, people talking).

    Built directly in the simulator's state, a channel at a time: ``add_message`` keeps a
    channel in order one insertion at a time, which is slow for a hundred thousand."""
    people = [sim.add_user(f"user{n}", f"User {n}", email=f"user{n}@example.com") for n in range(5)]
    channels = []
    for c in range(chats):
        channel = sim.add_channel(f"bench-{c:03d}")
        base = (start + c * 100_000) * 1_000_000
        sim.messages[channel] = [
            {"type": "message", "user": people[m % len(people)], "team": sim.team_id,
             "text": f"message {m} in channel {c}: the quarterly numbers are in the shared folder",
             "ts": us_to_ts(base + m * 1_000_000 + 1)}
            for m in range(messages)
        ]
        channels.append(channel)
    return channels
