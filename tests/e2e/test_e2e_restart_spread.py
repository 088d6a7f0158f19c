"""A restarted daemon spreads its integrations' first runs: polls over one poll interval, the
first maintenance runs (subscriptions, watches) over several, so that thousands of them do not
all land in the first interval, in front of the polls."""

from __future__ import annotations

import time

from syncd.daemon import MAINTAIN_SPREAD_POLLS
from syncd.engine.schedule import Schedule
from syncd.testbed import Testbed

INTERVAL_S = 60.0
COPIES = 200


async def test_first_polls_come_within_an_interval_and_first_maintenance_runs_within_several():
    tb = await Testbed.start(run=False, poll_interval_s=INTERVAL_S)
    try:
        gmail = await tb.create_gmail()
        original = await tb.daemon.store.get_integration(gmail["id"])
        assert original is not None
        copies = [original.model_copy(update={"id": f"{original.id}-{n}"}) for n in range(COPIES)]

        async def listed(**_: object) -> list:
            return copies

        tb.daemon.store.list_integrations = listed  # type: ignore[method-assign]
        tb.daemon.scheduler = Schedule()
        tb.daemon.scheduler.start(paused=True)
        started = time.time()
        await tb.daemon.reconcile()
        jobs = tb.daemon.scheduler.get_jobs()
        polls = [j.due - started for j in jobs if j.id.startswith("poll:")]
        maintains = [j.due - started for j in jobs if j.id.startswith("maintain:")]
        assert len(polls) == len(maintains) == COPIES
        assert min(polls) >= 0 and max(polls) <= INTERVAL_S + 1
        window = MAINTAIN_SPREAD_POLLS * INTERVAL_S
        assert min(maintains) >= 0 and max(maintains) <= window + 1
        # Spread, not bunched in the first interval: about 1 in MAINTAIN_SPREAD_POLLS there.
        assert sum(due <= INTERVAL_S for due in maintains) < COPIES / 2
        assert max(maintains) > (MAINTAIN_SPREAD_POLLS - 1) * INTERVAL_S
    finally:
        if tb.daemon.scheduler is not None:
            tb.daemon.scheduler.shutdown()
            tb.daemon.scheduler = None
        await tb.stop()
