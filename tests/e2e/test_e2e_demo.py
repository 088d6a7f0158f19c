"""``syncd demo`` in-process: every platform that has landed gets a row that matches its
simulator, and a platform whose stored state disagrees makes the demo fail."""

from __future__ import annotations

import logging

import pytest
import structlog

from syncd.demo import run_demo
from syncd.providers.messenger.demo import MessengerScenario
from syncd.providers.whatsapp.demo import WhatsAppScenario

PLATFORMS = ("slack", "gmail", "teams", "whatsapp", "messenger", "instagram", "telegram")


@pytest.fixture(autouse=True)
def restored_logging():
    """The demo configures logging like the CLI does; put the process-wide state back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def table(output: str) -> dict[str, list[str]]:
    """platform -> the cells of its row (handshake, imported ... duplicates, check)."""
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in PLATFORMS and cells[-1] in ("ok", "MISMATCH"):
            rows[cells[0]] = cells[1:]
    return rows


async def test_every_platform_is_synced_both_ways_and_matches_its_simulator(capsys):
    assert await run_demo(messages=30) == 0
    output = capsys.readouterr().out
    rows = table(output)
    assert sorted(rows) == sorted(PLATFORMS)
    for platform, cells in rows.items():
        assert cells[-1] == "ok", (platform, cells)
        counts = [c for c in cells if "/" in c]
        assert len(counts) == 5 and all(c.split("/")[0] == c.split("/")[1] for c in counts), (platform, cells)
    # Platforms without history say so; those with a handshake ran it.
    assert rows["whatsapp"][1:3] == ["0/0", "none"] and rows["telegram"][1:3] == ["0/0", "none"]
    assert {p: rows[p][0] for p in PLATFORMS} == {"slack": "ok", "gmail": "-", "teams": "ok", "whatsapp": "ok",
                                                   "messenger": "ok", "instagram": "ok", "telegram": "-"}
    assert "everything matches" in output and "Traceback" not in output


async def test_a_change_syncd_never_heard_of_or_a_tampered_stored_message_fails_the_demo(capsys, monkeypatch):
    live, check = WhatsAppScenario.live, MessengerScenario.check

    async def edit_while_the_webhook_is_lost(self: WhatsAppScenario) -> None:
        await live(self)
        first = self.sim.truth()[0]["wamid"]
        self.sim.edit(first, "changed at the platform, never delivered")

    async def tamper_then_check(self: MessengerScenario) -> None:
        await self.tb.daemon.store.messages.update_one({"platform": "messenger", "text": "history 0"},
                                                       {"$set": {"text": "tampered in the store"}})
        await check(self)

    monkeypatch.setattr(WhatsAppScenario, "live", edit_while_the_webhook_is_lost)
    monkeypatch.setattr(MessengerScenario, "check", tamper_then_check)
    assert await run_demo(messages=30) == 1
    output = capsys.readouterr().out
    rows = table(output)
    assert {p for p, cells in rows.items() if cells[-1] == "MISMATCH"} == {"whatsapp", "messenger"}
    assert "'changed at the platform, never delivered'" in output and "'tampered in the store'" in output
    assert "MISMATCH" in output.splitlines()[-1]
