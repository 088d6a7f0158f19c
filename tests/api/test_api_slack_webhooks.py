"""Slack Events API deliveries: signatures, the handshake, duplicates, edits, deletes and their
out-of-order arrival, and which messages are the customer's own."""

from __future__ import annotations

import json
import time

import pytest
from apisupport import (
    SimClock,
    assert_error,
    chat_messages,
    find_message,
    inbox_counts,
    post_slack,
    slack_headers,
    slack_sample,
)

DOCUMENTED_EVENT = slack_sample("/reference/events/message")


def documented_body() -> bytes:
    return json.dumps(DOCUMENTED_EVENT["payload"]).encode()


async def test_the_url_verification_challenge_is_answered(tb, slack):
    delivery = tb.slack.url_verification()
    response = await tb.deliver_slack(slack, delivery)
    assert response.status_code == 200
    assert response.json() == {"challenge": delivery.payload["challenge"]}
    assert await inbox_counts(tb, slack) == {"pending": 0, "done": 0, "failed": 0}


async def test_the_documented_message_event_is_stored(tb, slack):
    body = documented_body()
    response = await post_slack(tb, slack, body, slack_headers(body, tb.slack.signing_secret))
    assert response.status_code == 200, response.text
    await tb.settle()
    message = await find_message(tb, slack, "C123ABC456", "C123ABC456:1355517523.000005")
    assert message is not None
    assert message["text"] == "Hello world"
    assert message["sender"]["externalUserId"] == "U123ABC456"
    assert message["sentAt"] == "2012-12-14T20:38:43Z"
    assert (message["direction"], message["origin"]) == ("inbound", "platform")


def tampered(body: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    headers = slack_headers(body, secret)
    return body.replace(b"Hello world", b"Hello w0rld"), headers


def wrong_secret(body: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    return body, slack_headers(body, secret + "-not")


def stale(body: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    return body, slack_headers(body, secret, timestamp=int(time.time()) - 301)


def future_dated(body: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    return body, slack_headers(body, secret, timestamp=int(time.time()) + 301)


def no_signature(body: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    headers = slack_headers(body, secret)
    del headers["x-slack-signature"]
    return body, headers


def no_timestamp(body: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    headers = slack_headers(body, secret)
    del headers["x-slack-request-timestamp"]
    return body, headers


def not_a_number_timestamp(body: bytes, secret: str) -> tuple[bytes, dict[str, str]]:
    headers = slack_headers(body, secret)
    headers["x-slack-request-timestamp"] = "yesterday"
    return body, headers


@pytest.mark.parametrize("forge", [tampered, wrong_secret, stale, future_dated, no_signature, no_timestamp,
                                   not_a_number_timestamp])
async def test_a_delivery_failing_signature_checks_answers_401_and_stores_nothing(tb, slack, forge):
    body, headers = forge(documented_body(), tb.slack.signing_secret)
    assert_error(await post_slack(tb, slack, body, headers), 401, "bad_signature")
    await tb.settle()
    assert await chat_messages(tb, slack, "C123ABC456") == []
    assert await inbox_counts(tb, slack) == {"pending": 0, "done": 0, "failed": 0}


async def test_the_url_verification_needs_a_valid_signature_too(tb, slack):
    delivery = tb.slack.url_verification()
    headers = {**delivery.headers, "X-Slack-Signature": "v0=" + "0" * 64}
    assert_error(await post_slack(tb, slack, delivery.body, headers), 401)


async def test_the_same_delivery_posted_three_times_stores_one_message(tb, slack_ws, slack):
    delivery = tb.slack.post_user_message(slack_ws["general"], "only once", slack_ws["bob"])
    for _ in range(3):
        assert (await tb.deliver_slack(slack, delivery)).status_code == 200
    await tb.settle()
    stored = [m for m in await chat_messages(tb, slack, slack_ws["general"]) if m["text"] == "only once"]
    assert len(stored) == 1
    assert (await inbox_counts(tb, slack))["done"] == 1


async def test_a_slack_retry_of_a_delivery_stores_one_message(tb, slack_ws, slack):
    delivery = tb.slack.post_user_message(slack_ws["general"], "retried", slack_ws["bob"])
    await tb.deliver_slack(slack, delivery)
    await tb.deliver_slack(slack, tb.slack.retry(delivery))
    await tb.deliver_slack(slack, tb.slack.retry(delivery, attempt=2))
    await tb.settle()
    stored = [m for m in await chat_messages(tb, slack, slack_ws["general"]) if m["text"] == "retried"]
    assert len(stored) == 1


def ts_of(delivery) -> str:
    return delivery.payload["event"]["ts"]


async def test_message_changed_updates_the_text_and_sets_edited_at(tb, slack_ws, slack, sim_clock):
    general = slack_ws["general"]
    created = tb.slack.post_user_message(general, "first draft", slack_ws["bob"])
    await tb.deliver_slack(slack, created)
    await tb.settle()
    sim_clock.advance(2)
    await tb.deliver_slack(slack, tb.slack.edit_message(general, ts_of(created), "final text"))
    await tb.settle()
    message = await find_message(tb, slack, general, f"{general}:{ts_of(created)}")
    assert message["text"] == "final text"
    assert message["editedAt"] is not None
    assert message["deletedAt"] is None


async def test_message_deleted_leaves_a_tombstone_with_deleted_at(tb, slack_ws, slack):
    general = slack_ws["general"]
    created = tb.slack.post_user_message(general, "soon gone", slack_ws["bob"])
    await tb.deliver_slack(slack, created)
    await tb.settle()
    await tb.deliver_slack(slack, tb.slack.delete_message(general, ts_of(created)))
    await tb.settle()
    message = await find_message(tb, slack, general, f"{general}:{ts_of(created)}")
    assert message is not None
    assert message["deletedAt"] is not None


async def test_an_edit_arriving_before_its_create_ends_with_the_edited_text(tb, slack_ws, slack, sim_clock):
    general = slack_ws["general"]
    created = tb.slack.post_user_message(general, "original", slack_ws["bob"])
    sim_clock.advance(2)
    edited = tb.slack.edit_message(general, ts_of(created), "edited")
    await tb.deliver_slack(slack, edited)
    await tb.settle()
    await tb.deliver_slack(slack, created)
    await tb.settle()
    key = f"{general}:{ts_of(created)}"
    found = [m for m in await chat_messages(tb, slack, general) if m["externalMessageId"] == key]
    assert len(found) == 1
    assert found[0]["text"] == "edited"
    assert found[0]["editedAt"] is not None


async def test_a_delete_arriving_before_its_create_stays_deleted(tb, slack_ws, slack):
    general = slack_ws["general"]
    created = tb.slack.post_user_message(general, "short-lived", slack_ws["bob"])
    deleted = tb.slack.delete_message(general, ts_of(created))
    await tb.deliver_slack(slack, deleted)
    await tb.settle()
    await tb.deliver_slack(slack, created)
    await tb.settle()
    key = f"{general}:{ts_of(created)}"
    found = [m for m in await chat_messages(tb, slack, general) if m["externalMessageId"] == key]
    assert len(found) == 1
    assert found[0]["deletedAt"] is not None


async def test_an_older_edit_arriving_after_a_newer_one_does_not_win(tb, slack_ws, slack, sim_clock):
    general = slack_ws["general"]
    created = tb.slack.post_user_message(general, "v1", slack_ws["bob"])
    sim_clock.advance(2)
    older = tb.slack.edit_message(general, ts_of(created), "v2")
    sim_clock.advance(2)
    newer = tb.slack.edit_message(general, ts_of(created), "v3")
    for delivery in (created, newer, older):
        await tb.deliver_slack(slack, delivery)
        await tb.settle()
    message = await find_message(tb, slack, general, f"{general}:{ts_of(created)}")
    assert message["text"] == "v3"


async def test_an_edit_in_the_same_millisecond_as_its_create_still_wins_over_a_late_create(tb, slack_ws, slack):
    tb.slack.clock = SimClock(frozen=True)  # consecutive ts values are then 1 microsecond apart
    general = slack_ws["general"]
    created = tb.slack.post_user_message(general, "original", slack_ws["bob"])
    edited = tb.slack.edit_message(general, ts_of(created), "edited")
    assert edited.payload["event"]["message"]["edited"]["ts"] != ts_of(created)
    await tb.deliver_slack(slack, edited)
    await tb.settle()
    await tb.deliver_slack(slack, created)
    await tb.settle()
    message = await find_message(tb, slack, general, f"{general}:{ts_of(created)}")
    assert message["text"] == "edited"


async def test_an_older_edit_in_the_same_millisecond_as_a_newer_one_does_not_win(tb, slack_ws, slack):
    tb.slack.clock = SimClock(frozen=True)
    general = slack_ws["general"]
    created = tb.slack.post_user_message(general, "v1", slack_ws["bob"])
    older = tb.slack.edit_message(general, ts_of(created), "v2")
    newer = tb.slack.edit_message(general, ts_of(created), "v3")
    for delivery in (created, newer, older):
        await tb.deliver_slack(slack, delivery)
        await tb.settle()
    message = await find_message(tb, slack, general, f"{general}:{ts_of(created)}")
    assert message["text"] == "v3"


async def test_messages_of_a_user_marked_is_self_are_outbound_and_others_inbound(tb, slack_ws, slack):
    response = await tb.api.put("/user-platforms", json={
        "customerId": "cust-1", "platform": "slack", "externalUserId": slack_ws["bob"],
        "displayName": "Bob Baker", "isSelf": True,
    })
    assert response.status_code == 200, response.text
    assert response.json()["userPlatform"]["isSelf"] is True
    general = slack_ws["general"]
    mine = tb.slack.post_user_message(general, "from the customer", slack_ws["bob"])
    theirs = tb.slack.post_user_message(general, "from a colleague", slack_ws["alice"])
    await tb.deliver_slack(slack, mine)
    await tb.deliver_slack(slack, theirs)
    await tb.settle()
    assert (await find_message(tb, slack, general, f"{general}:{ts_of(mine)}"))["direction"] == "outbound"
    assert (await find_message(tb, slack, general, f"{general}:{ts_of(theirs)}"))["direction"] == "inbound"
    listed = (await tb.api.get("/user-platforms", params={"customerId": "cust-1"})).json()["userPlatforms"]
    assert {u["externalUserId"] for u in listed if u["isSelf"]} >= {slack_ws["bob"]}


async def test_putting_a_user_mapping_twice_updates_the_one_mapping(tb, slack):
    mapping = {"customerId": "cust-9", "platform": "slack", "externalUserId": "U0BOB", "displayName": "Bob"}
    first = (await tb.api.put("/user-platforms", json=mapping)).json()["userPlatform"]
    second = (await tb.api.put("/user-platforms", json={**mapping, "displayName": "Robert", "isSelf": True})).json()
    assert second["userPlatform"]["id"] == first["id"]
    listed = (await tb.api.get("/user-platforms", params={"customerId": "cust-9"})).json()["userPlatforms"]
    assert [(u["displayName"], u["isSelf"]) for u in listed] == [("Robert", True)]


async def test_a_user_mapping_with_unknown_fields_answers_422(tb):
    response = await tb.api.put("/user-platforms", json={"customerId": "c", "platform": "slack",
                                                         "externalUserId": "U1", "admin": True})
    assert_error(response, 422, "invalid")
