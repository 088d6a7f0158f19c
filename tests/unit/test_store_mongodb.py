"""The store's key guarantees against a real MongoDB server (``SYNCD_TEST_MONGODB_URI``).

Each test works in a database of its own, dropped afterwards, so the server may be shared.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.fernet import Fernet

from syncd.models import Message, OutboxItem, Sender, new_id
from syncd.store import Store

URI = os.environ.get("SYNCD_TEST_MONGODB_URI")
pytestmark = [
    pytest.mark.mongodb,
    pytest.mark.skipif(not URI, reason="SYNCD_TEST_MONGODB_URI is not set: no MongoDB server"),
]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
CHANNEL = "C024BE91L"


def message(ts: str = "1512085950.000216", **fields) -> Message:
    base = dict(customer_id="cust-1", integration_id="int-1", platform="slack", chat_id="chat-1",
                external_chat_id=CHANNEL, external_message_id=f"{CHANNEL}:{ts}",
                sender=Sender(external_user_id="U2147483697"), text=f"message {ts}",
                sent_at=datetime.fromtimestamp(float(ts), timezone.utc))
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


@pytest.fixture
async def mongo_store():
    from motor.motor_asyncio import AsyncIOMotorClient

    client = AsyncIOMotorClient(URI, serverSelectionTimeoutMS=5000)
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
