"""How many lanes an import opens for a declared rate limit."""

from __future__ import annotations

import asyncio

from syncd.engine.lanes import MAX_LANES, Lanes


def test_first_page_sets_the_estimate_and_opens_the_lanes_it_takes() -> None:
    async def go() -> None:
        opened: list[int] = []
        lanes = Lanes(4, reads_per_s=40.0, open_lane=lambda: opened.append(1), more=lambda: True)
        for _ in range(lanes.base):
            lanes.open()
        lane = lanes.lane()
        lane.reading()
        await asyncio.sleep(0.2)
        lane.read()  # one page in 0.2 s: 40/s x 0.2 s x headroom lanes
        assert lanes.cycle_s is not None and lanes.cycle_s >= 0.2
        assert lanes.opened == lanes.wanted() >= 10
        assert lanes.warmed.is_set()

    asyncio.run(go())


def test_lanes_stay_within_bounds() -> None:
    lanes = Lanes(4, reads_per_s=10_000.0)
    lanes.observe(1.0)
    assert lanes.wanted() == MAX_LANES
    assert Lanes(4, reads_per_s=None).wanted() == 4
    slow = Lanes(4, reads_per_s=1.0)
    slow.observe(0.1)
    assert slow.wanted() == 4


def test_lanes_that_look_at_the_last_chat_together_import_it_once() -> None:
    """Every lane looks whether the import was halted (a store read) before it takes a chat:
    two lanes that both saw one chat left must not both take it. A lane that found the queue
    empty once it had looked used to fail the whole import (IndexError), cancelling the other
    lanes mid-chat; their chats then waited for the next reconcile."""
    from types import SimpleNamespace
    from typing import Any

    from syncd.engine.importer import Importer

    async def go() -> None:
        importer = Importer(SimpleNamespace())  # type: ignore[arg-type]
        imported: list[str] = []

        async def halted(integration_id: str) -> bool:
            await asyncio.sleep(0)  # the store read: other lanes run meanwhile
            return False

        async def import_chat(integration: Any, connector: Any, status: str, lane: Any = None) -> None:
            await asyncio.sleep(0)
            imported.append(status)
            lane.read()

        importer.halted = halted  # type: ignore[method-assign]
        importer._import_chat = import_chat  # type: ignore[method-assign]
        connector = SimpleNamespace(rate_limit=None)
        chats = [f"chat-{n}" for n in range(7)]
        await importer._import_chats(SimpleNamespace(id="i1"), connector, chats)  # type: ignore[arg-type]
        assert sorted(imported) == chats

    asyncio.run(go())
