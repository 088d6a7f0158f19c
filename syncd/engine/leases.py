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
async def hold(ctx: EngineContext, name: str) -> AsyncIterator[bool]:
    """``async with hold(ctx, "import:abc") as held:`` — ``held`` is False when another
    owner has it (the body should then skip the work). Released on exit, also on error."""
    ttl = ctx.settings.lease_ttl_s
    if not await ctx.store.acquire_lease(name, ctx.owner, ttl):
        yield False
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            if not await ctx.store.renew_lease(name, ctx.owner, ttl):
                log.warning("lease lost", lease=name)
                return

    renewer = asyncio.create_task(renew())
    try:
        yield True
    finally:
        renewer.cancel()
        with contextlib.suppress(BaseException):
            await renewer
        # Shielded so a cancelled task still gives the lease back instead of waiting out its TTL.
        with contextlib.suppress(Exception):
            await asyncio.shield(ctx.store.release_lease(name, ctx.owner))
