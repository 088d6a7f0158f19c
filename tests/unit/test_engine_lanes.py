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
