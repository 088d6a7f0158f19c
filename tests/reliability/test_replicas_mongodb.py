"""Scenario 6 against a real MongoDB: two ``syncd run`` processes share one database. Each
chat is imported once, their schedulers do not double the polls, app events posted to either
are sent once; then one of them is killed with SIGKILL holding a resync and a send, and a new
replica takes both over once the leases have expired."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from bench.faults.harness import app_event, seed_channel
from bench.faults.processes import (
    SyncdProcess,
    Tap,
    eventually,
    import_done,
    signed_event,
    syncd_env,
)
from bench.faults.report import compare_exports, tally_slack
from syncd.providers.slack.sim import SlackSimulator
from syncd.sim.base import ServerThread

pytestmark = pytest.mark.mongodb
POLL_WINDOW_S = 4.0


async def test_two_processes_on_one_database_share_the_work_and_a_killed_ones_work_is_taken_over(
    mongodb_uri: str,
) -> None:
    sim = SlackSimulator()
    sim.max_page = 5
    channels = [seed_channel(sim, f"shared-{c}", 12, start=1_700_000_000 + c * 100_000) for c in range(3)]
    tap = Tap(sim, "slack")

    def history(polls: bool) -> list:
        return [s for s in tap.calls("conversations.history") if ("oldest" in s.params) == polls]

    with ServerThread(tap) as server:
        env = syncd_env(mongodb_uri, slack=server.url + "/api")
        a, b = SyncdProcess(env, "a"), SyncdProcess(env, "b")
        c = None
        try:
            await a.healthy()
            await b.healthy()
            async with a.client() as api_a, b.client() as api_b:
                response = await api_a.post("/integrations", json={"platform": "slack", "customerId": "cust-1", "credentials": {
                    "botToken": next(iter(sim.valid_tokens)), "signingSecret": sim.signing_secret}})
                integration = response.json()["integration"]
                await eventually(lambda: import_done(api_b, integration["id"]), "the import")
                pages = Counter((s.params.get("channel"), s.params.get("cursor")) for s in history(polls=False))

                # Both schedulers tick every second; the platform sees about one poll a second.
                before, started = len(history(polls=True)), time.monotonic()
                await asyncio.sleep(POLL_WINDOW_S)
                polls = (len(history(polls=True)) - before) / len(channels)
                intervals = time.monotonic() - started

                texts = []
                for i in range(10):
                    texts.append(f"shared app {i}")
                    body, headers = signed_event(app_event(i, "created", "slack", channels[i % 3], texts[-1]))
                    assert (await (api_a, api_b)[i % 2].post("/events", content=body, headers=headers)).status_code == 202

                # b leaves gracefully; a is killed holding a resync page and a send.
                assert b.terminate() == 0
                resync_page = tap.rule(lambda s: s.endpoint == "conversations.history" and "cursor" in s.params
                                       and "oldest" not in s.params)
                send = tap.rule(lambda s: s.endpoint == "chat.postMessage")
                assert (await api_a.post(f"/integrations/{integration['id']}/resync", json={"full": True})).status_code == 202
                texts.append("sent by a dying replica")
                body, headers = signed_event(app_event("dying", "created", "slack", channels[1], texts[-1]))
                assert (await api_a.post("/events", content=body, headers=headers)).status_code == 202
                await resync_page.wait()
                await send.wait()
            a.kill()
            resync_page.released.set()
            send.released.set()

            c = await SyncdProcess(env, "c").healthy()
            async with c.client() as api:
                await eventually(lambda: import_done(api, integration["id"]), "the resync to be taken over")

                async def sent() -> bool:
                    return texts[-1] in [m["text"] for m in sim.truth(channels[1])]
                await eventually(sent, "the send to be taken over")
                await asyncio.sleep(1)  # anything sent twice would show by now
                tally = await tally_slack(api, integration["id"], sim, channels)
        finally:
            for process in (a, b, c):
                if process is not None:
                    process.kill()

    bot = [m["text"] for ch in channels for m in sim.truth(ch) if m["user"] == sim.bot_user_id]
    tally.add(compare_exports(texts, bot))
    assert (tally.lost, tally.duplicated, tally.wrong) == (0, 0, 0), tally.notes[:10]
    assert all(n == 1 for n in pages.values()) and {ch for ch, _ in pages} == set(channels)
    assert polls <= intervals + 2  # doubled polling would be about 2 * intervals
