"""Pause and resume: a paused integration makes no platform calls, yet loses nothing; the
webhooks and app events that arrived meanwhile are processed within seconds of the resume."""

from __future__ import annotations

import asyncio
from typing import Any

from apisupport import assert_error, chat_messages, event

from syncd.providers.slack.connector import SlackConnector
from syncd.sim.base import FaultPlan
from syncd.testbed import Testbed


def platform_calls(tb: Testbed) -> int:
    return sum(tb.slack.faults.calls.values())


async def until(check, timeout_s: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


async def pause(tb: Testbed, integration: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = await tb.api.post(f"/integrations/{integration['id']}/pause", json=body or None)
    assert response.status_code == 200, response.text
    return response.json()["integration"]


async def test_pause_says_paused_with_the_reason_and_the_time(tb, slack):
    paused = await pause(tb, slack, reason="billing hold")
    assert (paused["status"], paused["statusReason"]) == ("paused", "billing hold")
    assert paused["pausedAt"] is not None
    seen = (await tb.api.get(f"/integrations/{slack['id']}")).json()["integration"]
    assert (seen["status"], seen["statusReason"], seen["pausedAt"]) == ("paused", "billing hold", paused["pausedAt"])
    again = await pause(tb, slack, reason="another reason")  # already paused: unchanged
    assert again["statusReason"] == "billing hold"


async def test_while_paused_nothing_reaches_the_platform_and_everything_arrives_after_resume(make_tb):
    # Real backoffs: an event that waited while paused would otherwise sit out minutes.
    tb = await make_tb(retry_base_s=120, retry_max_s=600)
    ws = tb.slack.seed_workspace()
    slack = await tb.create_slack()
    general = ws["general"]
    chat_id = (await tb.chats(slack))[general]["id"]
    await pause(tb, slack)
    before = platform_calls(tb)

    delivery = tb.slack.post_user_message(general, "said while paused", ws["bob"])
    assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    response = await tb.post_event(event("evt-paused", chatId=chat_id,
                                         message={"id": "app-1", "text": "sent while paused"}))
    assert response.status_code == 202
    await tb.engine.poll(slack["id"])
    await tb.engine.maintain(slack["id"])
    await tb.api.post(f"/integrations/{slack['id']}/resync", json={})  # refused: not active
    await asyncio.sleep(0.3)  # the workers had every chance to work

    assert platform_calls(tb) == before
    assert "said while paused" not in [m["text"] for m in await chat_messages(tb, slack, general)]
    assert not [m for m in tb.slack.messages[general] if m.get("text") == "sent while paused"]

    response = await tb.api.post(f"/integrations/{slack['id']}/resume")
    assert response.status_code == 200 and response.json()["integration"]["status"] == "active"

    async def arrived() -> bool:
        texts = [m["text"] for m in await chat_messages(tb, slack, general)]
        return "said while paused" in texts and "sent while paused" in texts and \
            any(m.get("text") == "sent while paused" for m in tb.slack.messages[general])

    await until(arrived)


async def test_a_paused_import_stops_after_its_page_in_hand_and_continues_after_resume(tb, slack_ws, monkeypatch):
    general = slack_ws["general"]
    for n in range(30):
        tb.slack.add_message(general, f"history {n}", slack_ws["alice"])
    monkeypatch.setattr(SlackConnector, "page_limit", 4)  # many pages, each taking a while
    tb.slack.faults.plan = FaultPlan(latency_s=0.05, endpoints=frozenset({"conversations.history"}))
    slack = await tb.create("slack", {"botToken": next(iter(tb.slack.valid_tokens)),
                                       "signingSecret": tb.slack.signing_secret}, wait=False)

    async def importing() -> bool:
        return tb.slack.faults.calls["conversations.history"] >= 3

    await until(importing)
    await pause(tb, slack)
    await asyncio.wait_for(tb.engine.importer.wait(), 2)  # the pages in hand finish, no more start
    calls = tb.slack.faults.calls["conversations.history"]
    await asyncio.sleep(0.2)
    assert tb.slack.faults.calls["conversations.history"] == calls
    chat = (await tb.chats(slack))[general]
    status = (await tb.api.get(f"/integrations/{slack['id']}/status")).json()["status"]
    assert next(s for s in status if s["chatId"] == chat["id"])["phase"] in ("pending", "importing")

    assert (await tb.api.post(f"/integrations/{slack['id']}/resume")).status_code == 200
    await tb.wait_imported(slack["id"])
    texts = [m["text"] for m in await chat_messages(tb, slack, general)]
    assert all(f"history {n}" in texts for n in range(30))
    assert len(texts) == len(set(texts))


async def test_new_credentials_do_not_end_a_pause(tb, slack):
    await pause(tb, slack, reason="noisy tenant")
    response = await tb.api.put(f"/integrations/{slack['id']}/credentials", json={"credentials": {
        "botToken": next(iter(tb.slack.valid_tokens)), "signingSecret": tb.slack.signing_secret}})
    assert response.status_code == 200, response.text
    integration = response.json()["integration"]
    assert (integration["status"], integration["statusReason"]) == ("paused", "noisy tenant")


async def test_resuming_an_active_integration_changes_nothing(tb, slack):
    response = await tb.api.post(f"/integrations/{slack['id']}/resume")
    assert response.status_code == 200 and response.json()["integration"]["status"] == "active"


async def test_pause_and_resume_of_unknown_or_deleted_integrations_answer_404(tb, slack):
    assert_error(await tb.api.post("/integrations/nope/pause"), 404, "not_found")
    assert_error(await tb.api.post("/integrations/nope/resume"), 404, "not_found")
    await tb.api.delete(f"/integrations/{slack['id']}")
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/pause"), 404, "not_found")


async def test_an_integration_in_error_cannot_be_paused(tb, slack):
    await tb.daemon.store.update_integration(slack["id"], status="error", status_reason="token revoked")
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/pause"), 409, "integration_not_active")
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/resume"), 409, "integration_not_paused")


async def test_a_pause_reason_that_is_not_text_is_refused(tb, slack):
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/pause", json={"reason": 42}), 422)
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/pause", json={"why": "x"}), 422)
