"""The store against the in-memory MongoDB (mongomock-motor): keys, merges, queues, leases."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from pymongo.errors import DuplicateKeyError

from syncd.models import (
    InboxItem,
    Integration,
    Message,
    OutboxItem,
    Sender,
    SyncStatus,
    UserPlatform,
)
from syncd.store import Store
from syncd.store.integrations import INTEGRATION_CACHE_S
from syncd.universal import ChatData

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHANNEL = "C024BE91L"


class Clock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Observed:
    """Wraps a collection to count its calls; a bulk write first yields to the event loop the
    way a network round-trip does, so concurrent writers really interleave."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name):
        self.calls[name] += 1
        return getattr(self.inner, name)

    async def bulk_write(self, *args, **kwargs):
        self.calls["bulk_write"] += 1
        await asyncio.sleep(0)
        return await self.inner.bulk_write(*args, **kwargs)


def message(ts: str = "1512085950.000216", **fields) -> Message:
    base = dict(customer_id="cust-1", integration_id="int-1", platform="slack", chat_id="chat-1",
                external_chat_id=CHANNEL, external_message_id=f"{CHANNEL}:{ts}",
                sender=Sender(external_user_id="U2147483697"), text=f"message {ts}",
                sent_at=datetime.fromtimestamp(float(ts), UTC))
    return Message(**{**base, **fields})


def app_message(**fields) -> Message:
    base = dict(customer_id="cust-1", integration_id="int-1", platform="slack", chat_id="chat-1",
                external_chat_id=CHANNEL, origin="app", direction="outbound",
                app_message_id="app-42", text="hello from the app")
    return Message(**{**base, **fields})


async def test_every_unique_key_of_the_design_has_its_index(store):
    unique = {
        "messages": ["customerId", "platform", "externalMessageId"],
        "chats": ["customerId", "platform", "externalChatId"],
        "user_platforms": ["customerId", "platform", "externalUserId"],
        "sync_status": ["integrationId", "chatId"],
        "inbox": ["integrationId", "deliveryId"],
        "outbox": ["customerId", "idempotencyKey"],
    }
    for collection, keys in unique.items():
        info = await store.db[collection].index_information()
        indexed = [[k for k, _ in ix["key"]] for ix in info.values() if ix.get("unique")]
        assert keys in indexed, collection


async def test_the_queue_claims_sort_on_an_index_and_the_index_it_replaced_is_dropped(store):
    # A database that an earlier version set up has the old two-key indexes.
    await store.db["inbox"].create_index([("status", 1), ("nextAttemptAt", 1)], name="inbox_due")
    await store.db["outbox"].create_index([("status", 1), ("nextAttemptAt", 1)], name="outbox_due")
    await store.ensure_indexes()
    for collection, tie_breaker in (("inbox", "receivedAt"), ("outbox", "createdAt")):
        info = await store.db[collection].index_information()
        keys = [[k for k, _ in ix["key"]] for ix in info.values()]
        assert ["status", "nextAttemptAt", tie_breaker] in keys
        assert f"{collection}_due" not in info
    await store.ensure_indexes()  # and again at the next start: nothing to drop, no error


async def test_the_message_key_index_rejects_a_second_document(store):
    await store.upsert_messages([message()])
    doc = message().doc()
    with pytest.raises(DuplicateKeyError):
        await store.messages.insert_one({**doc, "_id": "another"})


async def test_writing_the_same_message_twice_stores_one_document(store):
    first = await store.upsert_messages([message()])
    second = await store.upsert_messages([message()])
    assert (first.inserted, second.unchanged) == (1, 1)
    assert second.changed == []
    assert await store.messages.count_documents({}) == 1


async def test_many_messages_without_a_platform_id_coexist(store):
    for n in range(3):
        await store.insert_pending_message(app_message(app_message_id=f"app-{n}"))
    assert await store.messages.count_documents({"externalMessageId": None}) == 3


async def test_a_page_reports_what_changed_with_the_kind_the_app_hears(store):
    await store.upsert_messages([message("1.000001"), message("1.000002")])
    result = await store.upsert_messages([
        message("1.000001"),                                           # unchanged
        message("1.000002", text="edited", edited_at=T0),              # updated
        message("1.000003"),                                           # created
        message("1.000004", text=None, deleted_at=T0),                 # delete before create
    ])
    assert (result.inserted, result.updated, result.unchanged, result.deleted) == (1, 1, 1, 1)
    kinds = {m.external_message_id.split(":")[1]: kind for kind, m in result.changed}
    assert kinds == {"1.000002": "updated", "1.000003": "created", "1.000004": "deleted"}


async def test_a_page_is_read_once_and_written_in_one_bulk_call(store):
    await store.upsert_messages([message(f"2.{n:06d}") for n in range(5)])
    store.messages = observed = Observed(store.messages)
    page = [message(f"2.{n:06d}", text="edited", edited_at=T0) for n in range(5)]
    page += [message(f"3.{n:06d}") for n in range(20)]
    result = await store.upsert_messages(page)
    assert (result.inserted, result.updated) == (20, 5)
    assert observed.calls["bulk_write"] == 1
    assert observed.calls["find"] == 1


async def test_events_for_one_message_in_one_page_merge_in_order(store):
    result = await store.upsert_messages([
        message(), message(text="edited", edited_at=T0), message(deleted_at=T0)])
    assert [kind for kind, _ in result.changed] == ["deleted"]
    stored = await store.find_message("cust-1", "slack",
                                      external_message_id=f"{CHANNEL}:1512085950.000216")
    assert (stored.text, stored.deleted_at) == ("edited", T0)


@pytest.mark.parametrize("already_stored", [False, True])
async def test_concurrent_writers_of_the_same_messages_keep_the_newest_edit(store, already_stored):
    keys = [f"4.{n:06d}" for n in range(5)]
    if already_stored:
        await store.upsert_messages([message(k) for k in keys])
    store.messages = observed = Observed(store.messages)
    older = [message(k, text="older edit", edited_at=T0) for k in keys]
    newer = [message(k, text="newer edit", edited_at=T0 + timedelta(minutes=1)) for k in keys]
    await asyncio.gather(store.upsert_messages(older), store.upsert_messages(newer))
    # Both writers read before either wrote, so one of them lost and merged again.
    assert observed.calls["bulk_write"] >= 3
    docs = await store.messages.inner.find({}).to_list(None)
    assert len(docs) == len(keys)
    assert {d["text"] for d in docs} == {"newer edit"}


async def test_a_recorded_send_merges_the_echo_that_arrived_first(store):
    pending = await store.insert_pending_message(app_message())
    assert pending.delivery_state == "pending"
    echo_sent_at = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    await store.upsert_messages([message(text="hello from the app", sent_at=echo_sent_at,
                                         extra={"clientMsgId": "c-1"})])
    sent = await store.record_sent(pending.id, f"{CHANNEL}:1512085950.000216",
                                   sent_at=echo_sent_at + timedelta(seconds=1))
    assert await store.messages.count_documents({}) == 1
    assert (sent.id, sent.origin, sent.app_message_id) == (pending.id, "app", "app-42")
    assert sent.sent_at == echo_sent_at
    assert sent.delivery_state == "sent"
    assert sent.sender.external_user_id == "U2147483697"
    assert sent.extra == {"clientMsgId": "c-1"}


async def test_the_echo_arriving_after_the_send_merges_into_the_app_message(store):
    pending = await store.insert_pending_message(app_message())
    await store.record_sent(pending.id, f"{CHANNEL}:1512085950.000216")
    result = await store.upsert_messages([message(direction="inbound")])
    assert await store.messages.count_documents({}) == 1
    (kind, merged), = result.changed
    assert (merged.id, merged.origin, merged.direction) == (pending.id, "app", "outbound")


async def test_registering_an_app_message_twice_returns_the_first(store):
    first = await store.insert_pending_message(app_message())
    again = await store.insert_pending_message(app_message())
    assert again.id == first.id
    assert await store.messages.count_documents({}) == 1
    found = await store.find_message("cust-1", "slack", app_message_id="app-42")
    assert found.id == first.id


async def test_messages_are_listed_newest_first_in_pages_with_tombstones(store):
    stamps = [f"{1714564800 + n}.000100" for n in range(5)]
    await store.upsert_messages([message(ts) for ts in stamps])
    await store.upsert_messages([message(stamps[3], deleted_at=T0)])
    await store.insert_pending_message(app_message())  # not sent yet: no sentAt, listed last
    seen, cursor = [], None
    while True:
        page, cursor = await store.list_messages("chat-1", cursor=cursor, limit=2)
        seen += page
        if cursor is None:
            break
    expected = [f"message {ts}" for ts in reversed(stamps)] + ["hello from the app"]
    assert [m.text for m in seen] == expected
    assert seen[1].deleted_at == T0


async def test_a_cursor_that_was_not_handed_out_is_refused(store):
    for bad in ["not-a-cursor", "e30", "!!!"]:
        with pytest.raises(ValueError, match="invalid cursor"):
            await store.list_messages("chat-1", cursor=bad)
    with pytest.raises(ValueError, match="limit"):
        await store.list_messages("chat-1", limit=0)


async def test_a_full_resync_marks_vanished_messages_deleted(store):
    await store.upsert_messages([message(f"6.{n:06d}") for n in range(3)])
    assert await store.live_external_ids("chat-1") == {f"{CHANNEL}:6.{n:06d}" for n in range(3)}
    assert await store.mark_deleted("chat-1", [f"{CHANNEL}:6.000001"], T0) == 1
    assert await store.mark_deleted("chat-1", [f"{CHANNEL}:6.000001"], T0) == 0
    assert await store.live_external_ids("chat-1") == {f"{CHANNEL}:6.000000", f"{CHANNEL}:6.000002"}


async def test_update_message_refuses_unknown_fields(store):
    pending = await store.insert_pending_message(app_message())
    updated = await store.update_message(pending.id, text="fixed typo", edited_at=T0)
    assert (updated.text, updated.edited_at) == ("fixed typo", T0)
    with pytest.raises(TypeError):
        await store.update_message(pending.id, colour="red")


async def test_credentials_are_encrypted_at_rest_and_read_back(store):
    integration = Integration(customer_id="cust-1", platform="slack", name="Acme")
    token = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
    await store.insert_integration(integration, {"botToken": token})
    raw = await store.integrations.find_one({"_id": integration.id})
    assert isinstance(raw["credentials"], str) and token not in raw["credentials"]
    assert await store.get_credentials(integration.id) == {"botToken": token}
    await store.set_credentials(integration.id, {"botToken": "xoxb-new"})
    assert await store.get_credentials(integration.id) == {"botToken": "xoxb-new"}
    assert "credentials" not in (await store.get_integration(integration.id)).doc()
    other_key = Store(store.client, store.db, Fernet(Fernet.generate_key()))
    with pytest.raises(ValueError) as refused:
        await other_key.get_credentials(integration.id)
    assert "xoxb" not in str(refused.value)


async def test_an_integration_read_again_within_seconds_comes_from_the_cache_and_stale_copies_are_dropped(
        store, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("syncd.store.integrations.time.monotonic", lambda: clock[0])
    first, second = (Integration(customer_id="cust-1", platform="slack", name=n) for n in ("A", "B"))
    for integration in (first, second):
        await store.insert_integration(integration, {"botToken": "xoxb-1"})
    assert (await store.get_integration(first.id)).name == "A"
    await store.integrations.update_one({"_id": first.id}, {"$set": {"name": "changed elsewhere"}})
    clock[0] += INTEGRATION_CACHE_S / 2
    assert (await store.get_integration(first.id)).name == "A"  # another replica's write, not seen yet
    clock[0] += INTEGRATION_CACHE_S
    assert (await store.get_integration(second.id)).name == "B"
    assert list(store._integration_cache) == [second.id]  # the first's stale copy is gone
    assert (await store.get_integration(first.id)).name == "changed elsewhere"
    copy = await store.get_integration(first.id)
    copy.settings["x"] = 1
    assert (await store.get_integration(first.id)).settings == {}


async def test_integrations_are_listed_without_deleted_ones_unless_asked(store):
    kept = Integration(customer_id="cust-1", platform="slack")
    gone = Integration(customer_id="cust-1", platform="slack")
    for integration in (kept, gone):
        await store.insert_integration(integration, {})
    updated = await store.update_integration(gone.id, status="deleted", status_reason="removed")
    assert (updated.status, updated.status_reason) == ("deleted", "removed")
    assert [i.id for i in await store.list_integrations(customer_id="cust-1")] == [kept.id]
    assert len(await store.list_integrations(customer_id="cust-1", include_deleted=True)) == 2
    assert (await store.get_integration(gone.id)).status == "deleted"
    with pytest.raises(TypeError):
        await store.update_integration(kept.id, credentials={})


async def test_a_chat_upsert_keeps_its_id_and_never_forgets_it_was_imported(store):
    data = ChatData(external_chat_id=CHANNEL, name="general", kind="group", participants=["U1"])
    first = await store.upsert_chat("cust-1", "unknown", "slack", data, imported=True)
    later = await store.upsert_chat("cust-1", "int-1", "slack",
                                    ChatData(external_chat_id=CHANNEL, name="general-renamed"),
                                    imported=False)
    assert later.id == first.id
    assert (later.name, later.kind, later.participants) == ("general-renamed", "group", ["U1"])
    assert later.imported is True
    assert later.integration_id == "int-1"
    assert (await store.find_chat("cust-1", "slack", CHANNEL)).id == first.id


async def test_deleting_a_chat_removes_its_messages(store):
    chat = await store.upsert_chat("cust-1", "int-1", "slack", ChatData(external_chat_id=CHANNEL))
    await store.upsert_messages([message(f"7.{n:06d}", chat_id=chat.id) for n in range(3)])
    assert await store.delete_chat(chat.id) == 3
    assert await store.get_chat(chat.id) is None


async def test_chats_of_unknown_or_replaced_integrations_are_repointed(store):
    old = Integration(customer_id="cust-1", platform="slack", status="deleted")
    new = Integration(customer_id="cust-1", platform="slack")
    other = Integration(customer_id="cust-1", platform="slack")
    for integration in (old, new, other):
        await store.insert_integration(integration, {})
    orphan = await store.upsert_chat("cust-1", "unknown", "slack", ChatData(external_chat_id="C1"))
    replaced = await store.upsert_chat("cust-1", old.id, "slack", ChatData(external_chat_id="C2"))
    active = await store.upsert_chat("cust-1", other.id, "slack", ChatData(external_chat_id="C3"))
    await store.upsert_messages([message(chat_id=replaced.id, integration_id=old.id)])
    assert await store.repoint_chats("cust-1", "slack", new.id) == 2
    assert (await store.get_chat(orphan.id)).integration_id == new.id
    assert (await store.get_chat(replaced.id)).integration_id == new.id
    assert (await store.get_chat(active.id)).integration_id == other.id
    (msg,), _ = await store.list_messages(replaced.id)
    assert msg.integration_id == new.id


async def test_user_platforms_upsert_on_their_key_and_name_the_self_identities(store):
    first = await store.upsert_user_platform(UserPlatform(
        customer_id="cust-1", platform="gmail", external_user_id="me", is_self=True))
    again = await store.upsert_user_platform(UserPlatform(
        customer_id="cust-1", platform="gmail", external_user_id="me",
        external_email="Me@Example.com", is_self=True))
    await store.upsert_user_platform(UserPlatform(
        customer_id="cust-1", platform="gmail", external_user_id="them", external_email="x@y.z"))
    assert again.id == first.id
    assert len(await store.list_user_platforms("cust-1")) == 2
    assert await store.self_identities("cust-1", "gmail") == ({"me"}, {"me@example.com"})


async def test_sync_status_is_one_document_per_integration_and_chat(store):
    await store.save_sync_status(SyncStatus(integration_id="int-1", phase="importing", cursor="p2"))
    await store.save_sync_status(SyncStatus(integration_id="int-1", phase="done"))
    await store.save_sync_status(SyncStatus(integration_id="int-1", chat_id="chat-1"))
    whole = await store.get_sync_status("int-1")
    assert (whole.phase, whole.cursor) == ("done", None)
    assert len(await store.list_sync_status("int-1")) == 2


async def test_the_integrations_with_unfinished_sync_are_found_in_one_query(store):
    await store.save_sync_status(SyncStatus(integration_id="int-1", phase="done"))
    await store.save_sync_status(SyncStatus(integration_id="int-1", chat_id="chat-1", phase="pending"))
    await store.save_sync_status(SyncStatus(integration_id="int-2", phase="error"))
    await store.save_sync_status(SyncStatus(integration_id="int-3", phase="done"))
    assert await store.integrations_in_phases(("pending", "importing", "error")) == {"int-1", "int-2"}
    assert await store.integrations_in_phases(("importing",)) == set()


async def test_updating_one_sync_status_field_leaves_the_others(store):
    await store.save_sync_status(SyncStatus(integration_id="int-1", phase="importing", cursor="p2"))
    updated = await store.update_sync_status("int-1", None, high_watermark={"historyId": "4242"})
    assert (updated.phase, updated.cursor, updated.high_watermark) == (
        "importing", "p2", {"historyId": "4242"})
    created = await store.update_sync_status("int-2", high_watermark="mark")
    assert (created.phase, created.high_watermark) == ("pending", "mark")
    with pytest.raises(TypeError):
        await store.update_sync_status("int-1", chat_id="chat-1", colour="red")


def inbox_item(delivery_id: str, received_at: datetime = T0) -> InboxItem:
    return InboxItem(integration_id="int-1", platform="slack", delivery_id=delivery_id,
                     body='{"event_id": "%s"}' % delivery_id, received_at=received_at,
                     next_attempt_at=received_at)


async def test_a_delivery_is_stored_once(store):
    assert await store.inbox_put(inbox_item("Ev9UQ52YNA")) is True
    assert await store.inbox_put(inbox_item("Ev9UQ52YNA")) is False
    assert (await store.inbox_counts("int-1"))["pending"] == 1


async def test_the_oldest_due_delivery_is_claimed_first_and_only_once(store):
    await store.inbox_put(inbox_item("second", T0 + timedelta(seconds=2)))
    await store.inbox_put(inbox_item("first", T0 + timedelta(seconds=1)))
    await store.inbox_put(inbox_item("future", T0 + timedelta(hours=1)))
    now = T0 + timedelta(minutes=1)
    claimed = [await store.inbox_claim(now, 30) for _ in range(3)]
    assert [c.delivery_id if c else None for c in claimed] == ["first", "second", None]
    assert claimed[0].attempts == 1
    # A worker that died holding the lease gives the item back when the lease runs out.
    retaken = await store.inbox_claim(now + timedelta(seconds=31), 30)
    assert (retaken.delivery_id, retaken.attempts) == ("first", 2)


async def test_a_retried_or_failed_delivery_keeps_its_error(store):
    await store.inbox_put(inbox_item("a"))
    await store.inbox_put(inbox_item("b"))
    a = await store.inbox_claim(T0, 30)
    b = await store.inbox_claim(T0, 30)
    await store.inbox_retry(a.id, "slack answered 503", T0 + timedelta(minutes=5))
    await store.inbox_fail(b.id, "unparseable body")
    assert await store.inbox_claim(T0 + timedelta(minutes=1), 30) is None
    again = await store.inbox_claim(T0 + timedelta(minutes=5), 30)
    assert (again.id, again.error) == (a.id, "slack answered 503")
    (failed,) = await store.list_inbox(status="failed")
    assert failed.error == "unparseable body"
    await store.inbox_done(again.id)
    assert await store.inbox_counts() == {"pending": 0, "done": 1, "failed": 1}


def outbox_item(key: str = "evt-123", type: str = "message.created") -> OutboxItem:
    return OutboxItem(customer_id="cust-1", idempotency_key=key, type=type,
                      payload={"message": {"id": "app-42", "text": "hello"}}, next_attempt_at=T0)


async def test_an_event_posted_twice_is_queued_once(store):
    first, created = await store.outbox_put(outbox_item())
    again, created_again = await store.outbox_put(outbox_item())
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert (await store.find_outbox("cust-1", "evt-123")).id == first.id
    assert await store.outbox_counts("cust-1") == {"queued": 1, "sending": 0, "sent": 0, "dead": 0}


async def test_several_outbox_items_are_queued_at_once_and_a_queued_key_is_kept_as_it_was(store):
    first, _ = await store.outbox_put(outbox_item("evt-1"))
    await store.outbox_put_many([outbox_item("evt-1"), outbox_item("evt-2"), outbox_item("evt-3")])
    await store.outbox_put_many([])
    assert (await store.find_outbox("cust-1", "evt-1")).id == first.id
    assert await store.find_outbox("cust-1", "evt-3") is not None
    assert await store.outbox_counts("cust-1") == {"queued": 3, "sending": 0, "sent": 0, "dead": 0}


async def test_an_outbox_item_of_a_crashed_worker_is_taken_over(store):
    item, _ = await store.outbox_put(outbox_item())
    claimed = await store.outbox_claim(T0, 30)
    assert (claimed.id, claimed.status, claimed.attempts) == (item.id, "sending", 1)
    assert await store.outbox_claim(T0 + timedelta(seconds=10), 30) is None
    taken = await store.outbox_claim(T0 + timedelta(seconds=31), 30)
    assert (taken.id, taken.attempts) == (item.id, 2)
    await store.outbox_done(item.id, {"externalMessageId": "C024BE91L:1512085950.000216"})
    done = await store.get_outbox(item.id)
    assert (done.status, done.lease_until) == ("sent", None)


async def test_outbox_claims_filter_by_type_and_keep_retry_and_dead_errors(store):
    await store.outbox_put(outbox_item("evt-1", "message.created"))
    await store.outbox_put(outbox_item("evt-2", "message.deleted"))
    deleted = await store.outbox_claim(T0, 30, types=["message.deleted"])
    created = await store.outbox_claim(T0, 30, exclude_types=["message.deleted"])
    assert (deleted.type, created.type) == ("message.deleted", "message.created")
    await store.outbox_retry(created.id, "rate limited", T0 + timedelta(seconds=20))
    await store.outbox_dead(deleted.id, "message not found at slack")
    (queued,) = await store.list_outbox(status="queued")
    assert (queued.error, queued.lease_until) == ("rate limited", None)
    assert (await store.get_outbox(deleted.id)).error == "message not found at slack"


async def test_a_lease_has_one_owner_until_it_expires(store):
    store.clock = clock = Clock(datetime.now(UTC))  # leases past their TTL are removed by the server
    assert await store.acquire_lease("import:int-1", "replica-a", 30)
    assert not await store.acquire_lease("import:int-1", "replica-b", 30)
    assert await store.acquire_lease("import:int-1", "replica-a", 30)  # re-entrant
    assert await store.lease_holder("import:int-1") == "replica-a"
    clock.advance(31)
    assert await store.lease_holder("import:int-1") is None
    assert await store.acquire_lease("import:int-1", "replica-b", 30)
    assert not await store.renew_lease("import:int-1", "replica-a", 30)


async def test_a_renewed_lease_outlives_its_first_expiry(store):
    store.clock = clock = Clock(datetime.now(UTC))
    await store.acquire_lease("poll:int-1", "replica-a", 30)
    clock.advance(20)
    assert await store.renew_lease("poll:int-1", "replica-a", 30)
    clock.advance(20)
    assert not await store.acquire_lease("poll:int-1", "replica-b", 30)


async def test_leases_taken_together_stop_at_the_first_another_owner_holds(store):
    store.clock = clock = Clock(datetime.now(UTC))
    assert await store.acquire_leases([("poll-turn:int-1", 54), ("poll:int-1", 30)], "replica-a")
    assert (await store.lease_holder("poll-turn:int-1"), await store.lease_holder("poll:int-1")) == \
        ("replica-a", "replica-a")
    assert await store.acquire_leases([("poll-turn:int-1", 54), ("poll:int-1", 30)], "replica-a")  # re-entrant
    # The turn is another's: the lease after it is not even tried.
    await store.release_lease("poll:int-1", "replica-a")
    assert not await store.acquire_leases([("poll-turn:int-1", 54), ("poll:int-1", 30)], "replica-b")
    assert await store.lease_holder("poll:int-1") is None
    # The turn is free but the lease after it is held: the turn stays taken, the answer is False.
    clock.advance(55)
    assert await store.acquire_lease("poll:int-1", "replica-a", 30)
    assert not await store.acquire_leases([("poll-turn:int-1", 54), ("poll:int-1", 30)], "replica-b")
    assert (await store.lease_holder("poll-turn:int-1"), await store.lease_holder("poll:int-1")) == \
        ("replica-b", "replica-a")


async def test_releasing_leases(store):
    for name in ("import:int-1", "poll:int-1"):
        await store.acquire_lease(name, "replica-a", 30)
    await store.acquire_lease("poll:int-2", "replica-b", 30)
    await store.release_lease("poll:int-2", "replica-a")  # not the owner: nothing happens
    assert await store.lease_holder("poll:int-2") == "replica-b"
    assert await store.release_all("replica-a") == 2
    assert await store.acquire_lease("import:int-1", "replica-b", 30)


async def test_ping_answers_for_a_reachable_store(store):
    assert await store.ping() is True


async def test_expired_leases_such_as_used_connect_states_are_removed_by_a_ttl_index(store):
    info = await store.db["leases"].index_information()
    ttl = [ix for ix in info.values() if "expireAfterSeconds" in ix]
    assert [[k for k, _ in ix["key"]] for ix in ttl] == [["expiresAt"]]
    assert 0 < ttl[0]["expireAfterSeconds"] <= 24 * 3600
