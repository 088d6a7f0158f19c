"""The demo's steps, the same for every platform: seed, create the integration through the API
(importing with a progress line where there is history), handshake, live traffic, then the
check of every stored chat against the simulator's truth and one table row per platform."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable
from typing import Any

from syncd import providers
from syncd.logs import configure_logging
from syncd.sim.scenario import COLUMNS, Scenario
from syncd.testbed import Testbed

WIDTH = 11  # the platform column
IMPORT_TIMEOUT_S = 60


def _say(text: str = "") -> None:
    print(text, flush=True)


def _scenarios(messages: int, rng: random.Random) -> list[Scenario]:
    """One scenario per platform that ships one, history shared out by each one's ``share``."""
    classes = [c for c in map(providers.scenario_class, providers.folders()) if c is not None]
    shares = sum(c.share for c in classes) or 1
    return [c(rng, messages * c.share // shares) for c in classes]


async def _step(scenario: Scenario, name: str, work: Awaitable[Any]) -> None:
    """Run one step of a scenario; a failure is that platform's problem, and the steps after it
    have nothing to work on, but the other platforms go on and the table is printed."""
    if not scenario.integration and name != "the integration":
        work.close()  # type: ignore[attr-defined]
        return
    try:
        await work
    except Exception as exc:
        scenario.problem(f"{name} failed: {type(exc).__name__}: {exc}")


async def _import(scenario: Scenario) -> None:
    """Create the integration and follow its import on one line until no chat is left to do."""
    tb, label = scenario.tb, f"  {scenario.platform:<{WIDTH}}"
    if not scenario.history:
        scenario.integration = await scenario.create(wait=True)
        _say(f"{label}nothing to import: the platform keeps no history")
        return
    integration = scenario.integration = await scenario.create(wait=False)
    live = sys.stdout.isatty()  # a redrawn line in a terminal, only the final one in a log
    deadline = time.monotonic() + IMPORT_TIMEOUT_S
    while True:
        statuses = (await tb.api.get(f"/integrations/{integration['id']}/status")).json()["status"]
        chats = [s for s in statuses if s.get("chatId")]
        done = sum(1 for s in chats if s["phase"] == "done")
        fetched = sum(s["counts"]["fetched"] for s in chats)
        finished = statuses and not any(s["phase"] in ("pending", "importing") for s in statuses)
        if live or finished:
            sys.stdout.write(f"\r{label}{done}/{len(chats)} chats imported, {fetched} messages")
            sys.stdout.flush()
        if finished:
            sys.stdout.write("\n")
            return
        if time.monotonic() > deadline:
            sys.stdout.write("\n")
            raise TimeoutError(f"the import did not finish in {IMPORT_TIMEOUT_S}s")
        await asyncio.sleep(0.05)


async def run_demo(messages: int = 300, verbose: bool = False) -> int:
    """The whole demo; 0 when every count and every stored chat matches the simulators, else 1."""
    configure_logging("INFO" if verbose else "ERROR", "console")
    if not verbose:
        logging.getLogger().setLevel(logging.ERROR)
    started = time.monotonic()
    scenarios = _scenarios(messages, random.Random(7))
    tb = await Testbed.start(sims={s.platform: s.sim for s in scenarios if s.sim is not None})
    try:
        names = ", ".join(s.platform for s in scenarios)
        _say(f"syncd demo: {names} simulators, in-memory store (SYNCD_MONGODB_URI=mongomock://)")
        _say("seeding the simulators:")
        for scenario in scenarios:
            scenario.bind(tb)
            _say(f"  {scenario.platform:<{WIDTH}}{scenario.seed()}")
        _say("creating the integrations through the API and importing:")
        for scenario in scenarios:
            await _step(scenario, "the integration", _import(scenario))
        await tb.settle()
        _say("handshakes, then live traffic both ways (signed webhooks, redeliveries, edits, deletes, "
             "app events, echoes):")
        for scenario in scenarios:
            await _step(scenario, "the handshake", scenario.handshake())
            await _step(scenario, "the live traffic", scenario.live())
            await _step(scenario, "settling", tb.settle())
            for i, note in enumerate(scenario.tally.notes):
                _say(f"  {scenario.platform if i == 0 else '':<{WIDTH}}{note}")
        _say("checking every stored chat against the simulators:")
        for scenario in scenarios:
            await _step(scenario, "the check", scenario.check())
        ok = _table(scenarios)
        store = tb.daemon.store
        dead = (await store.outbox_counts()).get("dead", 0)
        failed = (await store.inbox_counts()).get("failed", 0)
        if dead or failed or tb.app.rejected:
            ok = False
            _say(f"  dead-lettered events: {dead}, failed webhook deliveries: {failed}, "
                 f"callbacks with a bad signature: {tb.app.rejected}")
        _say(f"app callbacks received: {len(tb.app.received)} (signature checked; {tb.app.rejected} rejected)")
        _say(f"finished in {time.monotonic() - started:.1f}s: " + ("everything matches" if ok else "MISMATCH"))
        return 0 if ok else 1
    finally:
        await tb.stop()


def _table(scenarios: list[Scenario]) -> bool:
    cell = 12
    _say(f"{'platform':<{WIDTH}}{'handshake':>10}" + "".join(f"{c:>{cell}}" for c in COLUMNS) + "  check")
    ok = True
    for scenario in scenarios:
        t = scenario.tally
        cells = []
        for column in COLUMNS:
            text = f"{t.expected[column]}/{t.got[column]}"
            if column == "imported" and not scenario.history:
                text += " none"
            cells.append(f"{text:>{cell}}")
        ok &= t.ok
        _say(f"{scenario.platform:<{WIDTH}}{t.handshake:>10}" + "".join(cells) + ("  ok" if t.ok else "  MISMATCH"))
        for problem in t.problems[:10]:
            _say(f"    - {problem}")
        if len(t.problems) > 10:
            _say(f"    - ... and {len(t.problems) - 10} more")
    _say("each cell: expected/got. expected = what the demo did (seeded, sent by the app, edited, deleted,")
    _say("  redelivered); got = what syncd stored (exported: what reached the platform's simulator).")
    _say("  duplicates = redeliveries suppressed; 'none' = the platform keeps no history to import;")
    _say("  handshake '-' = the platform has none.")
    return ok
