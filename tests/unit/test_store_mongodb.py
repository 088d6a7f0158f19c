"""The store's key guarantees against a real MongoDB server (``SYNCD_TEST_MONGODB_URI``).

Each test works in a database of its own, dropped afterwards, so the server may be shared.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from pymongo import monitoring

from syncd.models import Message, OutboxItem, Sender, SyncCounts, SyncStatus, new_id
from syncd.store import Store, WriteResult

URI = os.environ.get("SYNCD_TEST_MONGODB_URI")
pytestmark = [
    pytest.mark.mongodb,
    pytest.mark.skipif(not URI, reason="SYNCD_TEST_MONGODB_URI is not set: no MongoDB server"),
]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHANNEL = "C024BE91L"


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


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Commands(monitoring.CommandListener):
    """The names of the commands a client sent, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def commands() -> Commands:
    return Commands()


@pytest.fixture
async def mongo_store(commands):
    from motor.motor_asyncio import AsyncIOMotorClient

    client = AsyncIOMotorClient(URI, serverSelectionTimeoutMS=5000, event_listeners=[commands])
    name = f"syncd_test_{new_id()[:12]}"
    store = Store(client, client[name], Fernet(Fernet.generate_key()))
    await store.ensure_indexes()
    yield store
    await client.drop_database(name)
    await store.close()


async def test_the_same_message_written_twice_is_one_document(mongo_store):
    await mongo_store.upsert_messages([message()])
    result = await mongo_store.upsert_messages([message()])
    assert result.unchanged == 1
    assert await mongo_store.messages.count_documents({}) == 1


async def test_many_messages_without_a_platform_id_coexist(mongo_store):
    for n in range(3):
        await mongo_store.insert_pending_message(app_message(app_message_id=f"app-{n}"))
    assert await mongo_store.messages.count_documents({}) == 3


async def test_concurrent_writers_keep_the_newest_edit(mongo_store):
    keys = [f"4.{n:06d}" for n in range(5)]
    older = [message(k, text="older edit", edited_at=T0) for k in keys]
    newer = [message(k, text="newer edit", edited_at=T0 + timedelta(minutes=1)) for k in keys]
    await asyncio.gather(mongo_store.upsert_messages(older), mongo_store.upsert_messages(newer))
    docs = await mongo_store.messages.find({}).to_list(None)
    assert [d["text"] for d in docs] == ["newer edit"] * len(keys)


async def test_a_recorded_send_merges_the_echo_that_arrived_first(mongo_store):
    pending = await mongo_store.insert_pending_message(app_message())
    await mongo_store.upsert_messages([message(text="hello from the app")])
    sent = await mongo_store.record_sent(pending.id, f"{CHANNEL}:1512085950.000216")
    assert await mongo_store.messages.count_documents({}) == 1
    assert (sent.id, sent.origin, sent.delivery_state) == (pending.id, "app", "sent")


async def test_messages_page_newest_first(mongo_store):
    stamps = [f"{1714564800 + n}.000100" for n in range(5)]
    await mongo_store.upsert_messages([message(ts) for ts in stamps])
    page, cursor = await mongo_store.list_messages("chat-1", limit=3)
    rest, end = await mongo_store.list_messages("chat-1", cursor=cursor, limit=3)
    assert [m.text for m in page + rest] == [f"message {ts}" for ts in reversed(stamps)]
    assert end is None


async def test_outbox_and_leases_hand_work_to_one_owner(mongo_store):
    mongo_store.clock = clock = Clock()
    item = OutboxItem(customer_id="cust-1", idempotency_key="evt-123", type="message.created",
                      payload={}, next_attempt_at=T0)
    assert (await mongo_store.outbox_put(item))[1] is True
    assert (await mongo_store.outbox_put(item))[1] is False
    assert (await mongo_store.outbox_claim(T0, 30)).id == item.id
    assert await mongo_store.outbox_claim(T0, 30) is None
    assert await mongo_store.acquire_lease("import:int-1", "replica-a", 30)
    assert not await mongo_store.acquire_lease("import:int-1", "replica-b", 30)
    clock.now += timedelta(seconds=31)
    assert await mongo_store.acquire_lease("import:int-1", "replica-b", 30)


async def test_leases_taken_together_stop_where_another_owner_holds_one(mongo_store):
    mongo_store.clock = clock = Clock()
    clock.now = datetime.now(UTC)  # the server's TTL monitor removes leases long expired by its clock
    turn_and_lease = [("poll-turn:int-1", 54), ("poll:int-1", 30)]
    assert await mongo_store.acquire_leases(turn_and_lease, "replica-a")
    await mongo_store.release_lease("poll:int-1", "replica-a")
    assert not await mongo_store.acquire_leases(turn_and_lease, "replica-b")  # the turn is a's
    assert await mongo_store.lease_holder("poll:int-1") is None
    clock.now += timedelta(seconds=55)
    assert await mongo_store.acquire_lease("poll:int-1", "replica-a", 30)
    assert not await mongo_store.acquire_leases(turn_and_lease, "replica-b")  # the lease is a's
    assert await mongo_store.lease_holder("poll-turn:int-1") == "replica-b"


def plan(started_at: datetime = T0) -> SyncStatus:
    return SyncStatus(integration_id="int-1", chat_id="chat-1", external_chat_id=CHANNEL,
                      phase="importing", started_at=started_at)


def checkpoint_of(status: SyncStatus):
    """The page's status built from what its write did, as the importer builds it."""
    def build(written: WriteResult) -> SyncStatus:
        counts = SyncCounts(pages=1, inserted=written.inserted, unchanged=written.unchanged)
        return status.model_copy(update={"cursor": "page-2", "counts": counts})
    return build


async def needs_mongodb_8(store: Store) -> None:
    if not await store.writes_across_collections():
        pytest.skip("the server is older than MongoDB 8.0: no client-level bulkWrite")


async def test_a_new_page_and_its_checkpoint_are_one_bulkwrite_command(mongo_store, commands):
    await needs_mongodb_8(mongo_store)
    await mongo_store.save_sync_status(plan())
    commands.names.clear()
    result = await mongo_store.upsert_messages([message(f"6.{n:06d}") for n in range(5)], guess_new=True,
                                               checkpoint=checkpoint_of(plan()))
    assert commands.names == ["bulkWrite"]
    assert (result.inserted, result.checkpointed) == (5, True)
    assert await mongo_store.messages.count_documents({}) == 5
    saved = await mongo_store.get_sync_status("int-1", "chat-1")
    assert (saved.cursor, saved.counts.inserted) == ("page-2", 5)


async def test_a_resumed_page_whose_messages_partly_exist_is_merged_once_then_checkpointed(mongo_store):
    await needs_mongodb_8(mongo_store)
    await mongo_store.save_sync_status(plan())
    await mongo_store.upsert_messages([message("7.000002"), message("7.000003")], guess_new=True)
    page = [message(f"7.{n:06d}") for n in range(6)]
    result = await mongo_store.upsert_messages(page, guess_new=True, checkpoint=checkpoint_of(plan()))
    assert (result.inserted, result.unchanged, result.checkpointed) == (4, 2, True)
    assert await mongo_store.messages.count_documents({}) == 6
    saved = await mongo_store.get_sync_status("int-1", "chat-1")
    assert (saved.cursor, saved.counts.inserted, saved.counts.unchanged) == ("page-2", 4, 2)


async def test_a_checkpoint_of_a_replaced_plan_is_refused_with_its_messages_stored(mongo_store):
    await needs_mongodb_8(mongo_store)
    newer = plan(started_at=T0 + timedelta(minutes=5))
    await mongo_store.save_sync_status(newer)
    result = await mongo_store.upsert_messages([message(f"8.{n:06d}") for n in range(3)], guess_new=True,
                                               checkpoint=checkpoint_of(plan()))
    assert (result.inserted, result.checkpointed) == (3, False)
    saved = await mongo_store.get_sync_status("int-1", "chat-1")
    assert (saved.started_at, saved.cursor) == (newer.started_at, None)
