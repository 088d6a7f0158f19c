"""An import page's checkpoint written in the same round-trip as its messages, where the
server allows it.

MongoDB 8.0's client-level ``bulkWrite`` writes several collections at once. The benchmarks'
counting double (``bench/mongo_double.py``) plays such a server here, and counts round-trips;
mongomock has no such command, so the page and its checkpoint stay two writes there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from pymongo import InsertOne, UpdateOne
from pymongo.errors import ClientBulkWriteException, InvalidOperation

from bench.mongo_double import Client
from syncd.models import Message, Sender, SyncCounts, SyncStatus
from syncd.store import Store, WriteResult

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHANNEL = "C024BE91L"


def message(n: int, **fields) -> Message:
    ts = f"{1714564800 + n}.000100"
    base = dict(customer_id="cust-1", integration_id="int-1", platform="slack", chat_id="chat-1",
                external_chat_id=CHANNEL, external_message_id=f"{CHANNEL}:{ts}",
                sender=Sender(external_user_id="U2147483697"), text=f"message {n}",
                sent_at=datetime.fromtimestamp(float(ts), UTC))
    return Message(**{**base, **fields})


def plan(started_at: datetime = T0) -> SyncStatus:
    return SyncStatus(integration_id="int-1", chat_id="chat-1", external_chat_id=CHANNEL,
                      phase="importing", started_at=started_at)


class Checkpoint:
    """Builds the page's status from what the write did (as the importer does); remembers
    what it was given."""

    def __init__(self, status: SyncStatus, cursor: str = "page-2"):
        self.status, self.cursor = status, cursor
        self.given: list[WriteResult] = []

    def __call__(self, written: WriteResult) -> SyncStatus:
        self.given.append(written)
        counts = SyncCounts(pages=1, inserted=written.inserted, updated=written.updated,
                            unchanged=written.unchanged, deleted=written.deleted)
        return self.status.model_copy(update={"cursor": self.cursor, "counts": counts})


class Watched:
    """The double's client, noting after each client-level bulk write how many messages are
    stored and which cursor the stored status holds."""

    def __init__(self, client: Client, store: Store):
        self.client, self.store = client, store
        self.seen: list[tuple[int, str | None]] = []

    def __getattr__(self, name):
        return getattr(self.client, name)

    async def bulk_write(self, models, **options):
        try:
            return await self.client.bulk_write(models, **options)
        finally:
            status = self.store.db["sync_status"].docs
            cursors = [d.get("cursor") for d in status.values()]
            self.seen.append((len(self.store.db["messages"].docs), cursors[0] if cursors else None))


@pytest.fixture
async def server8() -> tuple[Store, Client]:
    """A store on a MongoDB 8.0 server (the counting double), indexes made, server asked."""
    client = Client()
    store = Store(client, client["syncd"], Fernet(Fernet.generate_key()))
    store.clock = lambda: T0
    await store.ensure_indexes()
    assert await store.writes_across_collections()
    return store, client


async def test_the_double_answers_hello_like_a_mongodb_8_server(server8) -> None:
    store, _ = server8
    assert (await store.db.command("hello"))["maxWireVersion"] == 25
    with pytest.raises(NotImplementedError):
        await store.db.command("dropDatabase")


async def test_the_doubles_client_bulk_write_fails_like_the_driver(server8) -> None:
    store, client = server8
    await client["syncd"]["t"].create_index([("k", 1)], name="k", unique=True)
    ops = [InsertOne({"_id": 1, "k": 1}, namespace="syncd.t"), InsertOne({"_id": 2, "k": 1}, namespace="syncd.t"),
           UpdateOne({"_id": "s"}, {"$set": {"n": 1}}, upsert=True, namespace="syncd.u")]
    with pytest.raises(ClientBulkWriteException) as ordered:
        await client.bulk_write(ops, ordered=True)
    assert [(e["idx"], e["code"]) for e in ordered.value.write_errors] == [(1, 11000)]
    assert ordered.value.partial_result.inserted_count == 1
    assert "s" not in client["syncd"]["u"].docs  # nothing after the failed operation ran
    with pytest.raises(ClientBulkWriteException) as unordered:
        await client.bulk_write([ops[1], InsertOne({"_id": 3, "k": 3}, namespace="syncd.t")], ordered=False)
    assert [e["idx"] for e in unordered.value.write_errors] == [0]
    assert 3 in client["syncd"]["t"].docs
    with pytest.raises(InvalidOperation):
        await client.bulk_write([InsertOne({"k": 4})])


async def test_a_new_page_and_its_checkpoint_are_one_round_trip(server8) -> None:
    store, client = server8
    await store.save_sync_status(plan())
    checkpoint = Checkpoint(plan())
    before = client.snapshot()
    result = await store.upsert_messages([message(n) for n in range(5)], guess_new=True, checkpoint=checkpoint)
    assert +(client.snapshot() - before) == {("client", "bulk_write"): 1}
    assert (result.inserted, result.checkpointed) == (5, True)
    assert len(store.db["messages"].docs) == 5
    saved = await store.get_sync_status("int-1", "chat-1")
    assert saved.cursor == "page-2"
    assert (saved.counts.pages, saved.counts.inserted, saved.counts.unchanged) == (1, 5, 0)


async def test_a_resumed_page_whose_messages_partly_exist_is_merged_once_and_checkpointed_after(server8) -> None:
    store, client = server8
    await store.save_sync_status(plan())
    # A crash left messages 2 and 3 of this page stored, and no checkpoint.
    await store.upsert_messages([message(2), message(3)], guess_new=True)
    watched = store.client = Watched(client, store)
    result = await store.upsert_messages([message(n) for n in range(6)], guess_new=True,
                                         checkpoint=Checkpoint(plan()))
    assert (result.inserted, result.unchanged, result.checkpointed) == (4, 2, True)
    texts = sorted(d["text"] for d in store.db["messages"].docs.values())
    assert texts == [f"message {n}" for n in range(6)]
    # The first write stopped at message 2 (ordered) without the checkpoint; the checkpoint
    # went with the last messages, once every one of the page was stored.
    assert watched.seen == [(4, None), (6, "page-2")]
    saved = await store.get_sync_status("int-1", "chat-1")
    assert (saved.counts.inserted, saved.counts.unchanged) == (4, 2)


async def test_a_page_with_updates_leaves_its_checkpoint_to_the_caller(server8) -> None:
    store, client = server8
    await store.save_sync_status(plan())
    await store.upsert_messages([message(1)])
    edited = message(1, text="edited", edited_at=T0)
    before = client.snapshot()
    result = await store.upsert_messages([edited, message(2)], guess_new=True, checkpoint=Checkpoint(plan()))
    assert (result.inserted, result.updated, result.checkpointed) == (1, 1, None)
    assert ("client", "bulk_write") not in client.snapshot() - before
    assert (await store.get_sync_status("int-1", "chat-1")).cursor is None


async def test_a_checkpoint_of_a_replaced_plan_is_refused_and_the_newer_plan_kept(server8) -> None:
    store, _ = server8
    newer = plan(started_at=T0 + timedelta(minutes=5))
    await store.save_sync_status(newer)
    result = await store.upsert_messages([message(n) for n in range(3)], guess_new=True,
                                         checkpoint=Checkpoint(plan(started_at=T0)))
    assert (result.inserted, result.checkpointed) == (3, False)
    saved = await store.get_sync_status("int-1", "chat-1")
    assert (saved.started_at, saved.cursor, saved.counts.pages) == (newer.started_at, None, 0)


async def test_a_checkpoint_whose_status_is_gone_is_saved(server8) -> None:
    store, _ = server8
    result = await store.upsert_messages([message(1)], guess_new=True, checkpoint=Checkpoint(plan()))
    assert result.checkpointed is True
    assert (await store.get_sync_status("int-1", "chat-1")).cursor == "page-2"


async def test_without_client_level_bulk_writes_the_page_is_written_alone(store) -> None:
    """mongomock: the messages in one bulk write, the checkpoint left to the caller."""
    await store.save_sync_status(plan())
    checkpoint = Checkpoint(plan())
    result = await store.upsert_messages([message(n) for n in range(3)], guess_new=True, checkpoint=checkpoint)
    assert not await store.writes_across_collections()
    assert (result.inserted, result.checkpointed, checkpoint.given) == (3, None, [])
    assert await store.messages.count_documents({}) == 3
    assert (await store.get_sync_status("int-1", "chat-1")).cursor is None
