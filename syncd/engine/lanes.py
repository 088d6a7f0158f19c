"""How many chats of one integration an import reads side by side.

One chat's pages follow each other (each needs the previous cursor), so a lane sends one
request at a time and cannot use a platform's budget alone. Without a declared rate limit an
import runs ``IMPORT_CONCURRENCY`` lanes (or the connector's own ``import_concurrency``). Where
the connector declares one (the manifest's ``api.rateLimit``), the import opens as many lanes
as reaching it takes: the reads per second it allows times the seconds a lane takes from one
read to its next (observed, a moving average), with some to spare, at most ``MAX_LANES``. A
lane too many costs a 429 now and then (the HTTP client's gate then holds every lane until
the window reopens); a lane too few leaves budget unused for the whole import.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

IMPORT_CONCURRENCY = 4
#: However generous a budget: each lane holds a page in memory and a connection.
MAX_LANES = 32
#: Lanes beyond the estimate: latency varies, and a lane waiting on the store sends nothing.
HEADROOM = 1.25
#: Weight of each new observation in the moving average of a lane's cycle.
SMOOTHING = 0.2


class Lanes:
    """The lanes of one import: how many it wants, and the event the others wait for until
    the first page went through (a connector's first-use lookups then happen once)."""

    def __init__(self, base: int, reads_per_s: float | None, open_lane: Callable[[], object] | None = None,
                 more: Callable[[], bool] | None = None) -> None:
        self.base = max(1, base)
        self.reads_per_s = reads_per_s
        self.cycle_s: float | None = None
        self.opened = 0
        self.warmed = asyncio.Event()
        self._open, self._more = open_lane, more

    def wanted(self) -> int:
        if self.reads_per_s is None or self.cycle_s is None:
            return self.base
        return max(self.base, min(MAX_LANES, math.ceil(self.reads_per_s * self.cycle_s * HEADROOM)))

    def observe(self, cycle_s: float) -> None:
        self.cycle_s = cycle_s if self.cycle_s is None else self.cycle_s + SMOOTHING * (cycle_s - self.cycle_s)

    def open(self) -> None:
        self.opened += 1
        if self._open is not None:
            self._open()

    def page_done(self) -> None:
        """A lane stored a page: the others may start, and more open while they are wanted
        and chats are waiting."""
        self.warmed.set()
        while self._open is not None and self.opened < self.wanted() and (self._more is None or self._more()):
            self.open()

    def lane(self) -> Lane:
        return Lane(self)


class Lane:
    """One lane's clock: the time from each of its reads to the next is its cycle."""

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self._last: float | None = None

    def reading(self) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.lanes.observe(now - self._last)
        self._last = now

    def read(self) -> None:
        # Until a lane has read twice, its first page (fetched and stored) is the estimate: the
        # lanes then open as soon as one page went through, not after a second round.
        if self.lanes.cycle_s is None and self._last is not None:
            self.lanes.observe(time.monotonic() - self._last)
        self.lanes.page_done()
