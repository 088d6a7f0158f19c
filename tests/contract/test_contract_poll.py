"""Every platform that polls and keeps history, by existing, against its simulator: once the
import has set the mark, a message written at the platform with no webhook is found by the
next poll and stored once, and a poll with nothing new stores nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from contractsupport import LOADED, PLATFORMS, simulator_of

from syncd.testbed import Testbed


def cases() -> list[Any]:
    return [pytest.param(p, id=p) for p in PLATFORMS
            if LOADED[p].manifest.capabilities.poll and LOADED[p].manifest.capabilities.history
            and simulator_of(p) is not None]


async def _stored(tb: Testbed, integration: dict[str, Any]) -> list[str]:
    await tb.settle()
    return [m["text"] or "" for chat in (await tb.chats(integration)).values()
            for m in await tb.messages(chat["id"])]


@pytest.mark.parametrize("platform", cases())
async def test_a_poll_from_the_mark_stores_what_is_new_once(platform):
    sim = simulator_of(platform)
    sim.trial_seed()
    tb = await Testbed.start(sims={platform: sim})
    try:
        integration = await tb.create(platform, sim.trial_credentials(), customer="cust-poll")
        await tb.wait_imported(integration["id"])
        before = await _stored(tb, integration)
        assert before, "the import stored the seeded history"
        text = f"written while syncd looked away {uuid.uuid4().hex[:8]}"
        sim.trial_inbound(text)
        tb.clock.advance(1)
        await tb.engine.poller.poll(integration["id"])
        after = await _stored(tb, integration)
        assert [t for t in after if text in t] != [] and len(after) == len(before) + 1
        await tb.engine.poller.poll(integration["id"])
        assert sorted(await _stored(tb, integration)) == sorted(after)
    finally:
        await tb.stop()
