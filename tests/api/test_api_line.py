"""LINE through the HTTP API: signed deliveries (simulated and documented), the console's
Verify request, duplicates and redeliveries, unsend tombstones, chat names from the profile
APIs, pushes with a stable retry key, and the monthly quota as a clear failure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
from apisupport import assert_error, chat_messages, find_message, inbox_counts, load_fixture

from syncd.providers.line.sim import LineSimulator
from syncd.testbed import Testbed

FIXTURE = load_fixture("line")
ANN, BO = "U" + "a1" * 16, "U" + "b2" * 16
GROUP, ROOM = "C" + "c3" * 16, "R" + "d4" * 16


@pytest.fixture
def sim() -> LineSimulator:
    return LineSimulator()


@pytest.fixture
async def tb(sim):
    tb = await Testbed.start(sims={"line": sim})
    yield tb
    await tb.stop()


@pytest.fixture
async def line(tb, sim) -> dict[str, Any]:
    return await tb.create("line", sim.trial_credentials())


def event(event_id: str, type_: str = "message.created", **fields: Any) -> dict[str, Any]:
    return {"id": event_id, "type": type_, "customerId": "cust-1", "platform": "line", **fields}


async def test_the_verify_request_is_answered_and_stores_nothing(tb, sim, line):
    answer = await tb.deliver(line, sim.verify_request())
    assert answer.status_code == 200
    assert await inbox_counts(tb, line) == {"pending": 0, "done": 0, "failed": 0}


async def test_a_tampered_or_unsigned_delivery_is_refused(tb, sim, line):
    delivery = sim.deliver(sim.follow(ANN, "Ann"))
    wrong = sim.sign(delivery.payload, secret="0" * 32)
    assert_error(await tb.deliver(line, wrong), 401)
    unsigned = await tb.api.post(tb.webhook_url(line), content=delivery.body, headers={"content-type": "application/json"})
    assert_error(unsigned, 401)


async def test_messages_in_user_group_and_room_chats_are_stored_with_names_from_the_profile_apis(tb, sim, line):
    await tb.deliver(line, sim.deliver(sim.follow(ANN, "Ann Ames"), sim.join(GROUP, "Ops team"), sim.join(ROOM)))
    await tb.deliver(line, sim.deliver(sim.message(ANN, "hello"), sim.message(GROUP, "in the group", BO),
                                       sim.message(ROOM, "in the room", ANN)))
    await tb.settle()
    chats = await tb.chats(line)
    assert {k: (c["name"], c["kind"]) for k, c in chats.items()} == {
        ANN: ("Ann Ames", "dm"), GROUP: ("Ops team", "group"), ROOM: (None, "group")}
    [group_message] = await chat_messages(tb, line, GROUP)
    assert group_message["text"] == "in the group" and group_message["sender"]["externalUserId"] == BO
    assert [m["text"] for m in await chat_messages(tb, line, ROOM)] == ["in the room"]


async def test_a_profile_is_fetched_once_for_many_messages(tb, sim, line):
    sim.users[ANN] = "Ann Ames"
    for i in range(3):
        await tb.deliver(line, sim.deliver(sim.message(ANN, f"m{i}")))
    await tb.settle()
    assert sim.profile_calls == 1
    assert len(await chat_messages(tb, line, ANN)) == 3


async def test_a_user_without_a_profile_still_gets_a_chat(tb, sim, line):
    await tb.deliver(line, sim.deliver(sim.message(BO, "not a friend")))  # profile answers 404
    await tb.settle()
    assert (await tb.chats(line))[BO]["name"] is None
    assert [m["text"] for m in await chat_messages(tb, line, BO)] == ["not a friend"]


async def test_a_redelivery_of_the_same_events_is_a_duplicate(tb, sim, line):
    delivery = sim.deliver(sim.message(ANN, "once"), sim.message(ANN, "twice?"))
    for copy in (delivery, delivery, sim.redeliver(delivery)):
        assert (await tb.deliver(line, copy)).status_code == 200
    await tb.settle()
    assert await inbox_counts(tb, line) == {"pending": 0, "done": 1, "failed": 0}
    assert sorted(m["text"] for m in await chat_messages(tb, line, ANN)) == ["once", "twice?"]


async def test_an_unsend_event_leaves_a_tombstone(tb, sim, line):
    sent = sim.message(ANN, "oops")
    await tb.deliver(line, sim.deliver(sent))
    await tb.deliver(line, sim.deliver(sim.unsend(sent["message"]["id"])))
    await tb.settle()
    stored = await find_message(tb, line, ANN, sent["message"]["id"])
    assert stored is not None and stored["deletedAt"] is not None


def sample(prefix: str) -> dict[str, Any]:
    return next(s["payload"] for s in FIXTURE["samples"] if s["description"].startswith(prefix))


async def test_the_documented_multi_event_sample_is_stored_and_unknown_event_types_skipped(tb, sim, line):
    assert (await tb.deliver(line, sim.sign(sample("Full multi-event")))).status_code == 200
    await tb.settle()
    assert await inbox_counts(tb, line) == {"pending": 0, "done": 1, "failed": 0}
    chats = await tb.chats(line)
    assert {k: c["kind"] for k, c in chats.items()} == {
        "U206d25c2ea6bd87c17655609a1c37cb8": "dm", "Ra8dbf4673c4c812cd491258042226c99": "group",
        "Ca56f94637cc4347f90a25382909b24b9": "group"}
    # The sample reuses message id 325708 for every kind (LINE's ids are platform-wide, so a
    # message is one record): its last events, an unsend then an edit, both apply.
    stored = {m["externalMessageId"]: m for m in await chat_messages(tb, line, "U206d25c2ea6bd87c17655609a1c37cb8")}
    assert sorted(stored) == ["325708", "354718705033693861"]
    assert stored["325708"]["text"] == "Hello, edited world" and stored["325708"]["deletedAt"] is not None
    assert stored["354718705033693861"]["text"] is None


async def test_the_documented_group_message_sample_is_stored_with_its_sender(tb, sim, line):
    assert (await tb.deliver(line, sim.sign(sample("Group-chat text message")))).status_code == 200
    await tb.settle()
    stored = await find_message(tb, line, "Ca56f94637cc4347f90a25382909b24b9", "325708")
    assert stored["text"] == "Hello, world"
    assert stored["sender"]["externalUserId"] == "U206d25c2ea6bd87c17655609a1c37cb8"
    assert stored["sentAt"].startswith("2016-05-07T13:57:59.859")


async def test_a_push_carries_a_stable_retry_key_and_its_result_id(tb, sim, line):
    await tb.deliver(line, sim.deliver(sim.follow(ANN, "Ann")))
    await tb.settle()
    await tb.post_event(event("evt-1", externalChatId=ANN, message={"id": "app-1", "text": "from the app"}))
    await tb.settle()
    assert sim.pushes == [{"to": ANN, "messages": [{"type": "text", "text": "from the app"}]}]
    [key] = sim.retry_keys
    assert key == str(uuid.uuid5(uuid.NAMESPACE_URL, "app-1"))
    stored = next(m for m in await chat_messages(tb, line, ANN) if m.get("appMessageId") == "app-1")
    assert stored["externalMessageId"] == sim.retry_keys[key][0]["id"]


async def test_a_retried_push_answered_409_counts_as_sent_once(tb, sim, line):
    sim.users[ANN] = "Ann"
    key = str(uuid.uuid5(uuid.NAMESPACE_URL, "app-1"))
    sim.retry_keys[key] = [{"id": "468789577898262999", "quoteToken": "q"}]  # the first attempt went through
    await tb.post_event(event("evt-1", externalChatId=ANN, message={"id": "app-1", "text": "again"}))
    await tb.settle()
    assert sim.pushes == []
    item = await tb.daemon.store.find_outbox("cust-1", "evt-1")
    assert item.status == "sent"
    stored = await find_message(tb, line, ANN, "468789577898262999")
    assert stored is not None and stored["appMessageId"] == "app-1"


async def test_a_409_without_sent_messages_still_counts_as_sent(tb, sim, line):
    sim.users[ANN] = "Ann"
    sim.retry_keys[str(uuid.uuid5(uuid.NAMESPACE_URL, "app-1"))] = None  # accepted, ids not answered
    await tb.post_event(event("evt-1", externalChatId=ANN, message={"id": "app-1", "text": "again"}))
    await tb.settle()
    assert (await tb.daemon.store.find_outbox("cust-1", "evt-1")).status == "sent" and sim.pushes == []
    assert await find_message(tb, line, ANN, "app-1") is not None


async def test_the_monthly_quota_is_a_clear_failure_not_a_retry_loop(tb, sim, line):
    sim.users[ANN] = "Ann"
    sim.quota = 0
    await tb.post_event(event("evt-1", externalChatId=ANN, message={"id": "app-1", "text": "over quota"}))
    await tb.settle()
    item = await tb.daemon.store.find_outbox("cust-1", "evt-1")
    assert item.status == "dead" and "monthly message quota" in item.error
    assert item.attempts == 1
    assert sim.token not in item.error


async def test_a_throttled_push_is_retried(tb, sim, line):
    sim.users[ANN] = "Ann"
    sim.faults.fail_next("push")
    await tb.post_event(event("evt-1", externalChatId=ANN, message={"id": "app-1", "text": "later"}))
    await tb.settle()
    assert (await tb.daemon.store.find_outbox("cust-1", "evt-1")).status == "sent"
    assert len(sim.pushes) == 1


async def test_the_signature_is_base64_hmac_sha256_of_the_raw_body(sim):
    delivery = sim.deliver(sim.message(ANN, "héllo"))
    expected = base64.b64encode(hmac.new(sim.secret.encode(), delivery.body, hashlib.sha256).digest()).decode()
    assert delivery.headers["x-line-signature"] == expected
    assert json.loads(delivery.body)["events"][0]["message"]["text"] == "héllo"
