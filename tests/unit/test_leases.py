"""A held lease: renewed while its holder runs past a third of its TTL, never for a short
holder, and given back on exit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from syncd.engine.leases import hold


class Leases:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        self.calls.append("acquire")
        return True

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        self.calls.append("renew")
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        self.calls.append("release")


def context(store: Leases, ttl: float) -> SimpleNamespace:
    return SimpleNamespace(store=store, owner="me", settings=SimpleNamespace(lease_ttl_s=ttl))


async def test_a_short_holder_renews_nothing_and_gives_the_lease_back():
    store = Leases()
    async with hold(context(store, 0.3), "poll:x") as held:  # type: ignore[arg-type]
        assert held
        await asyncio.sleep(0.01)
    assert store.calls == ["acquire", "release"]


async def test_a_long_holder_renews_every_third_of_the_ttl():
    store = Leases()
    async with hold(context(store, 0.06), "import:x") as held:  # type: ignore[arg-type]
        assert held
        await asyncio.sleep(0.11)  # renewals at ~0.02, 0.04, 0.06, 0.08, 0.10
    assert store.calls[0] == "acquire" and store.calls[-1] == "release"
    assert 3 <= store.calls.count("renew") <= 6
