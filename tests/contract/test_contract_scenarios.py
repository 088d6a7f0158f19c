"""Every platform that ships a demo scenario, by existing, against its simulator: history paged
to the end, the handshake, live deliveries with redeliveries, the app's sends, edits and
deletes (or their refusal), echoes merged, and every stored chat equal to the platform's truth.
No secret of the integration appears in any log line or answer on the way."""

from __future__ import annotations

import json
import random

import pytest
from contractsupport import LOADED, PLATFORMS
from structlog.testing import capture_logs

from syncd import providers
from syncd.api.platforms import credential_fields
from syncd.testbed import Testbed

SCENARIOS = [p for p in PLATFORMS if providers.scenario_class(p) is not None]


@pytest.mark.parametrize("platform", SCENARIOS)
async def test_the_platform_syncs_both_ways_and_leaks_no_secret(platform):
    cls = providers.scenario_class(platform)
    scenario = cls(random.Random(7), 24 if cls.history else 0)
    tb = await Testbed.start(sims={platform: scenario.sim} if scenario.sim is not None else None)
    try:
        with capture_logs() as logs:
            scenario.bind(tb)
            scenario.seed()
            scenario.integration = await scenario.create(wait=True)
            await tb.settle()
            await scenario.handshake()
            await scenario.live()
            await tb.settle()
            await scenario.check()
        tally = scenario.tally
        assert tally.problems == [] and tally.handshake != "FAILED"
        assert tally.expected == tally.got
        integration_id = scenario.integration["id"]
        stored = await tb.daemon.store.get_credentials(integration_id)
        names = [f["name"] for f in credential_fields(tb.engine.ctx.connectors.classes[platform], LOADED[platform])
                 if f["secret"]]
        secrets = [str(stored[n]) for n in names if stored.get(n)]
        assert secrets, "the integration has no secret credential to look for"
        answers = [(await tb.api.get(path)).text for path in
                   (f"/integrations/{integration_id}", "/integrations", f"/integrations/{integration_id}/status",
                    f"/platforms/{platform}")]
        seen = json.dumps(logs, default=str) + "".join(answers)
        assert [s for s in secrets if s in seen] == []
    finally:
        await tb.stop()
