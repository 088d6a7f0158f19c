"""Resync and sync status: re-reading history finds what no webhook told us."""

from __future__ import annotations

import pytest
from apisupport import assert_error, chat_messages


def delete_silently(tb, channel: str, text: str) -> str:
    """The platform loses a message and sends no webhook about it; returns its ts."""
    record = next(m for m in tb.slack.messages[channel] if m.get("text") == text)
    record["_deleted"] = True
    return record["ts"]


async def test_a_full_resync_marks_messages_the_platform_no_longer_has_as_deleted(tb, slack_ws, slack):
    general = slack_ws["general"]
    ts = delete_silently(tb, general, "Morning! Standup at 10?")
    chat = (await tb.chats(slack))[general]
    response = await tb.api.post(f"/integrations/{slack['id']}/resync", json={"chatIds": [chat["id"]], "full": True})
    assert response.status_code == 202, response.text
    assert response.json()["resync"] == {"integrationId": slack["id"], "full": True, "chatIds": [chat["id"]]}
    await tb.wait_imported(slack["id"])
    messages = {m["externalMessageId"]: m for m in await chat_messages(tb, slack, general)}
    assert len(messages) == 6
    assert messages[f"{general}:{ts}"]["deletedAt"] is not None
    assert [m for m in messages.values() if m["deletedAt"] is not None] == [messages[f"{general}:{ts}"]]


async def test_a_full_resync_without_chat_ids_covers_every_imported_chat(tb, slack_ws, slack):
    ts = delete_silently(tb, slack_ws["secret"], "The cake is a lie")
    response = await tb.api.post(f"/integrations/{slack['id']}/resync", json={"full": True})
    assert response.status_code == 202
    assert len(response.json()["resync"]["chatIds"]) == 4
    await tb.wait_imported(slack["id"])
    [message] = await chat_messages(tb, slack, slack_ws["secret"])
    assert message["externalMessageId"] == f"{slack_ws['secret']}:{ts}"
    assert message["deletedAt"] is not None


async def test_a_resync_finds_messages_no_webhook_announced(tb, slack_ws, slack):
    general = slack_ws["general"]
    tb.slack.add_message(general, "missed by the webhook", slack_ws["carol"])
    response = await tb.api.post(f"/integrations/{slack['id']}/resync", json={})
    assert response.status_code == 202
    await tb.wait_imported(slack["id"])
    assert "missed by the webhook" in [m["text"] for m in await chat_messages(tb, slack, general)]


async def test_a_resync_of_unknown_chat_ids_answers_404(tb, slack):
    response = await tb.api.post(f"/integrations/{slack['id']}/resync", json={"chatIds": ["no-such-chat"]})
    error = assert_error(response, 404)
    assert "no-such-chat" in error["message"]


async def test_a_resync_of_an_unknown_integration_answers_404(tb):
    assert_error(await tb.api.post("/integrations/nope/resync", json={}), 404)


@pytest.mark.parametrize("body", [{"full": "yes please"}, {"chatIds": "C1"}, {"everything": True}])
async def test_a_resync_with_a_wrong_body_answers_422(tb, slack, body):
    assert_error(await tb.api.post(f"/integrations/{slack['id']}/resync", json=body), 422, "invalid")


async def test_status_shows_each_chats_phase_and_counts(tb, slack_ws, slack):
    response = await tb.api.get(f"/integrations/{slack['id']}/status")
    assert response.status_code == 200
    answer = response.json()
    per_chat = {s["externalChatId"]: s for s in answer["status"] if s["chatId"]}
    assert set(per_chat) == {slack_ws["general"], slack_ws["secret"], slack_ws["dm_alice"], slack_ws["group"]}
    assert all(s["phase"] == "done" for s in per_chat.values())
    general = per_chat[slack_ws["general"]]["counts"]
    assert (general["fetched"], general["inserted"], general["pages"]) == (6, 6, 1)
    assert per_chat[slack_ws["dm_alice"]]["counts"]["inserted"] == 1
    assert answer["inbox"] == {"pending": 0, "done": 0, "failed": 0}
    assert answer["failedDeliveries"] == []
    assert answer["integration"]["id"] == slack["id"]


async def test_status_of_an_unknown_integration_answers_404(tb):
    assert_error(await tb.api.get("/integrations/nope/status"), 404, "not_found")
