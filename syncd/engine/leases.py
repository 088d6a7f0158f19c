"""Leases in MongoDB: one owner at a time for an import, a poll or a delivery, taken over
after expiry when the owner dies. A held lease is renewed in the background."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from syncd.engine.context import EngineContext

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def hold(ctx: EngineContext, name: str, *, turn: tuple[str, float] | None = None) -> AsyncIterator[bool]:
    """``async with hold(ctx, "import:abc") as held:`` — ``held`` is False when another
    owner has it (the body should then skip the work). Released on exit, also on error.

    ``turn``: ``(name, ttl_s)`` of a lease taken first, in the same round-trip, and left to
    expire rather than released (a scheduled poll's turn of its interval); ``held`` is False
    when another owner has either."""
    ttl = ctx.settings.lease_ttl_s
    taken = await ctx.store.acquire_leases([turn, (name, ttl)], ctx.owner) if turn is not None \
        else await ctx.store.acquire_lease(name, ctx.owner, ttl)
    if not taken:
        yield False
        return

    async def renew() -> None:
        while True:
            if not await ctx.store.renew_lease(name, ctx.owner, ttl):
                log.warning("lease lost", lease=name)
                return
            await asyncio.sleep(ttl / 3)

    # Most holders (a poll) are done long before the first renewal: a timer, and a renewing
    # task only once it fires, instead of a task started and cancelled around every poll.
    renewer: asyncio.Task[None] | None = None

    def start_renewing() -> None:
        nonlocal renewer
        renewer = asyncio.create_task(renew())

    timer = asyncio.get_running_loop().call_later(ttl / 3, start_renewing)
    try:
        yield True
    finally:
        timer.cancel()
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(BaseException):
                await renewer
        # Shielded so a cancelled task still gives the lease back instead of waiting out its TTL.
        with contextlib.suppress(Exception):
            await asyncio.shield(ctx.store.release_lease(name, ctx.owner))
