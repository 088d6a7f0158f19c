"""Scenario 1 against a real MongoDB: ``syncd run`` processes importing a Slack workspace are
killed with SIGKILL, one after another, at different points (a page request in flight, just
after a page was answered); the next process finishes the import once the dead one's lease
has expired. Nothing is lost or duplicated and each kill costs at most one page read again."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bench.faults.harness import seed_channel
from bench.faults.processes import SyncdProcess, Tap, eventually, import_done, syncd_env
from bench.faults.report import tally_slack
from syncd.providers.slack.sim import SlackSimulator
from syncd.sim.base import ServerThread

pytestmark = pytest.mark.mongodb

#: (what, at the n-th page request, then wait this long before SIGKILL)
KILLS = [("in flight", 2, 0.0), ("answered", 4, 0.0), ("answered", 6, 0.004), ("in flight", 8, 0.0),
         ("answered", 10, 0.02)]


async def test_import_processes_killed_with_sigkill_leave_a_complete_import_refetching_one_page_per_kill(
    mongodb_uri: str,
) -> None:
    sim = SlackSimulator()
    sim.max_page = 5
    channels = [seed_channel(sim, f"killed-{c}", 20, start=1_700_000_000 + c * 100_000,
                             thread_replies=3 if c == 0 else 0) for c in range(3)]
    tap = Tap(sim, "slack")

    def page_requests() -> list:
        # Polls read history too, from a mark (``oldest``); import pages have none.
        return [s for s in tap.calls("conversations.history") if "oldest" not in s.params]

    def nth_page_request(n: int):
        return lambda seen: (seen.endpoint == "conversations.history" and "oldest" not in seen.params
                             and len(page_requests()) == n)

    with ServerThread(tap) as server:
        env = syncd_env(mongodb_uri, slack=server.url + "/api")
        process = await SyncdProcess(env, "first").healthy()
        try:
            async with process.client() as api:
                response = await api.post("/integrations", json={"platform": "slack", "customerId": "cust-1", "credentials": {
                    "botToken": next(iter(sim.valid_tokens)), "signingSecret": sim.signing_secret}})
                assert response.status_code == 201, response.text
                integration = response.json()["integration"]
            for i, (what, n, delay) in enumerate(KILLS):
                rule = tap.rule(nth_page_request(n), "hold" if what == "in flight" else "notify")
                await rule.wait()
                await asyncio.sleep(delay)
                process.kill()
                rule.released.set()
                process = await SyncdProcess(env, f"after kill {i + 1}").healthy()
            async with process.client() as api:
                await eventually(lambda: import_done(api, integration["id"]), "the last process to finish the import")
                tally = await tally_slack(api, integration["id"], sim, channels)
        finally:
            process.terminate()

    pages = Counter((s.params.get("channel"), s.params.get("cursor")) for s in page_requests())
    refetched = sum(n - 1 for n in pages.values())
    assert (tally.lost, tally.duplicated, tally.wrong) == (0, 0, 0), tally.notes[:10]
    assert tally.expected == 63
    assert refetched <= len(KILLS)
