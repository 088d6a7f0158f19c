"""Dead letters: app events and webhook deliveries that failed for good are found by
integration and customer, with their errors, and one retry puts one back in its queue."""

from __future__ import annotations

import pytest

from syncd.models import InboxItem
from syncd.testbed import Testbed


def created(n: int, chat: str) -> dict:
    return {"id": f"evt-{n}", "type": "message.created", "customerId": "cust-1", "platform": "slack",
            "externalChatId": chat, "message": {"id": f"app-{n}", "text": f"app message {n}"}}


@pytest.fixture
async def bed():
    """Gives up on an event after one attempt, so a dead letter is one failure away."""
    tb = await Testbed.start(outbox_max_attempts=1)
    yield tb
    await tb.stop()


async def dead_event(tb: Testbed) -> tuple[dict, str]:
    """An integration and the external chat of an event that was dead-lettered there."""
    ids = tb.slack.seed_workspace()
    integration = await tb.create_slack()
    tb.slack.faults.fail_next("chat.postMessage", "server_error", times=tb.daemon.settings.http_max_retries + 1)
    assert (await tb.post_event(created(1, ids["general"]))).status_code == 202
    await tb.settle()
    return integration, ids["general"]


async def test_a_dead_event_is_listed_by_customer_and_integration_with_its_error(bed):
    integration, _ = await dead_event(bed)
    by_customer = (await bed.api.get("/deadletters", params={"customerId": "cust-1"})).json()["deadLetters"]
    by_integration = (await bed.api.get("/deadletters", params={"integrationId": integration["id"]})).json()
    assert by_customer == by_integration["deadLetters"]
    [letter] = by_customer
    assert letter["kind"] == "event" and letter["eventId"] == "evt-1" and letter["platform"] == "slack"
    assert letter["integrationId"] == integration["id"] and letter["customerId"] == "cust-1"
    assert "503" in letter["error"] or "unavailable" in letter["error"].lower()
    assert (await bed.api.get("/deadletters", params={"customerId": "someone-else"})).json() == {"deadLetters": []}
    status = (await bed.api.get(f"/integrations/{integration['id']}/status")).json()
    assert status["deadLetters"] == {"events": 1, "deliveries": 0}


async def test_a_retried_dead_event_is_sent_once_and_leaves_the_list(bed):
    integration, chat = await dead_event(bed)
    [letter] = (await bed.api.get("/deadletters")).json()["deadLetters"]

    answer = await bed.api.post(f"/deadletters/{letter['id']}/retry")
    assert answer.status_code == 202 and answer.json()["deadLetter"]["status"] == "queued"
    await bed.settle()

    assert [m["text"] for m in bed.slack.truth(chat)].count("app message 1") == 1
    assert (await bed.api.get("/deadletters")).json() == {"deadLetters": []}
    again = await bed.api.post(f"/deadletters/{letter['id']}/retry")
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


async def test_a_failed_webhook_delivery_is_listed_for_its_customer_and_can_be_retried(bed):
    integration = await bed.create_slack()
    await bed.daemon.store.inbox_put(InboxItem(integration_id=integration["id"], platform="slack",
                                               delivery_id="Ev-1", body="{}", status="failed",
                                               attempts=8, error="MappingError: no text"))
    [letter] = (await bed.api.get("/deadletters", params={"customerId": "cust-1"})).json()["deadLetters"]
    assert letter["kind"] == "delivery" and letter["deliveryId"] == "Ev-1" and letter["error"] == "MappingError: no text"

    assert (await bed.api.post(f"/deadletters/{letter['id']}/retry")).status_code == 202
    revived = (await bed.daemon.store.list_inbox(integration_id=integration["id"]))[0]
    assert revived.status in ("pending", "done", "failed") and revived.attempts <= 1


async def test_dead_letters_need_the_admin_token_and_unknown_ids_are_404(bed, anon_client):
    assert (await anon_client(bed).get("/deadletters")).status_code == 401
    missing = await bed.api.post("/deadletters/nope/retry")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
