"""A stopped daemon is freed whole: nothing module-level keeps its app, engine and mappings.

FastAPI keeps module-level caches keyed by endpoint callables, which hold a built app alive;
the suite clears them after every test (``tests/conftest.py``), or each test worker would keep
hundreds of apps and stall for seconds in every full garbage collection."""

from __future__ import annotations

import gc
import weakref

from syncd.testbed import Testbed


async def test_a_stopped_daemon_that_answered_requests_is_freed(forget_fastapi_apps):
    tb = await Testbed.start()
    tb.slack.seed_workspace()
    created = await tb.create_slack()
    assert (await tb.api.get(f"/integrations/{created['id']}")).status_code == 200
    assert (await tb.api.get("/healthz")).status_code == 200
    engine, app = weakref.ref(tb.daemon.engine), weakref.ref(tb.daemon.app)
    await tb.stop()
    del tb, created

    forget_fastapi_apps()
    gc.collect()

    assert (engine(), app()) == (None, None)
