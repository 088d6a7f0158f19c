"""What a webhook batch costs after it is accepted: chats it names again are not rewritten,
the app's callbacks wait while deliveries are worked off (never for good), and the benchmarks'
store double reads a sorted claim from its compound index as a server does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from cryptography.fernet import Fernet

from bench.mongo_double import Client
from syncd.engine import inbox as inbox_module
from syncd.engine import outbox as outbox_module
from syncd.engine.context import connector_for
from syncd.engine.inbox import Inbox
from syncd.engine.ingest import ingest
from syncd.engine.notifier import CALLBACK
from syncd.engine.outbox import Outbox
from syncd.models import Chat, OutboxItem
from syncd.store import Store
from syncd.store.chats import ChatsStore
from syncd.testbed import Testbed
from syncd.universal import ChatData, MessageData

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _chat(**changes) -> Chat:
    base = dict(customer_id="c", integration_id="i1", platform="p", external_chat_id="x", name="Room",
                kind="group", participants=["a", "b"], imported=True, last_message_at=T0 + timedelta(milliseconds=5))
    return Chat(**{**base, **changes})


def test_a_chat_holds_data_that_would_change_nothing_and_not_data_that_would() -> None:
    holds = ChatsStore.chat_holds
    chat = _chat()
    assert holds(chat, "i1", ChatData(external_chat_id="x"), imported=True)
    assert holds(chat, "i1", ChatData(external_chat_id="x", name="Room", kind="group", participants=["a", "b"],
                                      last_message_at=T0 + timedelta(microseconds=5999)))  # same millisecond
    assert not holds(chat, "i2", ChatData(external_chat_id="x"))  # moves to the active integration
    assert not holds(chat, "i1", ChatData(external_chat_id="x", name="Renamed"))
    assert not holds(chat, "i1", ChatData(external_chat_id="x", kind="dm"))
    assert not holds(chat, "i1", ChatData(external_chat_id="x", participants=["a"]))
    assert not holds(chat, "i1", ChatData(external_chat_id="x", last_message_at=T0 + timedelta(milliseconds=6)))
    assert not holds(_chat(imported=False), "i1", ChatData(external_chat_id="x"), imported=True)
    assert not holds(_chat(last_message_at=None), "i1", ChatData(external_chat_id="x", last_message_at=T0))


async def test_a_batch_naming_one_chat_again_writes_it_once_and_a_change_still_lands() -> None:
    tb = await Testbed.start()
    try:
        integration = await tb.create_slack()
        ctx = tb.daemon.engine.ctx
        stored = await tb.daemon.store.get_integration(integration["id"])
        writes = 0
        upsert = ctx.store.upsert_chat

        async def counted(*args, **kwargs):
            nonlocal writes
            writes += 1
            return await upsert(*args, **kwargs)

        ctx.store.upsert_chat = counted
        room = ChatData(external_chat_id="C-batch", name="batch", participants=["U1"])
        messages = [MessageData(external_chat_id="C-batch", external_message_id=f"m-{n}", text=str(n)) for n in range(5)]
        await ingest(ctx, stored, messages, [room] * 5, source="webhook")
        assert writes == 1
        await ingest(ctx, stored, [], [room], source="webhook")
        assert writes == 1  # stored as it says already
        await ingest(ctx, stored, [], [room.model_copy(update={"name": "renamed"})], source="webhook")
        assert writes == 2
        chat = (await ctx.store.find_chats(stored.customer_id, stored.platform, ["C-batch"]))["C-batch"]
        assert chat.name == "renamed" and chat.participants == ["U1"]
        found = await ctx.store.find_messages(stored.customer_id, stored.platform, [f"m-{n}" for n in range(5)])
        assert len(found) == 5 and {m.chat_id for m in found.values()} == {chat.id}
    finally:
        await tb.stop()


async def test_the_inbox_is_idle_at_once_when_nothing_waits_and_yields_at_most_its_bound() -> None:
    inbox = Inbox.__new__(Inbox)
    inbox._receiving, inbox._working = 0, False
    loop = asyncio.get_running_loop()
    start = loop.time()
    await inbox.idle(max_s=5)
    assert loop.time() - start < 0.5
    inbox._working = True  # a delivery waits and nobody works it off here: the bound ends the wait
    start = loop.time()
    await inbox.idle(max_s=0.05)
    assert 0.05 <= loop.time() - start < 1


async def test_callbacks_yield_before_a_burst_and_again_after_so_many(monkeypatch) -> None:
    monkeypatch.setattr(outbox_module, "CALLBACKS_BETWEEN_YIELDS", 3)
    queued = [OutboxItem(customer_id="c1", idempotency_key=f"k{n}", type=CALLBACK,
                         payload={"message": {"chatId": f"chat-{n}"}}) for n in range(7)]
    claimed: list[OutboxItem] = []
    sent: list[OutboxItem] = []
    waits: list[int] = []

    async def claim(*_args, **_kwargs):
        if queued:
            claimed.append(queued.pop(0))
            return claimed[-1]
        return None

    async def yielded() -> None:
        waits.append(len(claimed))

    ctx = SimpleNamespace(store=SimpleNamespace(outbox_claim=claim), now=lambda: T0, stopping=asyncio.Event(),
                          settings=SimpleNamespace(lease_ttl_s=30, callback_concurrency=8))
    outbox = Outbox(ctx, exporter=None, callbacks=SimpleNamespace(deliver=None), yield_to=yielded)
    outbox._sent_since_yield = 3

    async def handle(item, deliver, *, dead_letter):
        sent.append(item)

    outbox._handle = handle
    while await outbox.callback_once():
        pass
    await outbox.drain(5)
    assert sent == claimed and len(sent) == 7 and waits == [0, 3, 6]
    queued.append(OutboxItem(customer_id="c1", idempotency_key="k7", type=CALLBACK, payload={}))
    await outbox.callback_once()  # a new burst after an empty claim yields first
    assert waits == [0, 3, 6, 7]
    await outbox.drain(5)


async def test_the_double_reads_a_claim_sorted_by_the_indexs_later_fields_as_a_full_sort_does() -> None:
    client = Client()
    store = Store(client, client["syncd"], Fernet(Fernet.generate_key()))
    await store.ensure_indexes()
    outbox = client["syncd"]["outbox"]
    due = T0.replace(tzinfo=None)
    # Many ties on nextAttemptAt, created in an order that is not their ids' order.
    for n in range(50):
        await outbox.insert_one({"_id": f"id-{n:02d}", "customerId": "c", "idempotencyKey": f"k{n}", "status": "queued", "type": "callback",
                                 "nextAttemptAt": due, "createdAt": due + timedelta(milliseconds=50 - n)})
    query = {"$or": [{"status": "queued", "nextAttemptAt": {"$lte": due}},
                     {"status": "sending", "leaseUntil": {"$lte": due}}], "type": {"$in": ["callback"]}}
    order = [("nextAttemptAt", 1), ("createdAt", 1)]
    first = await outbox.find(query).sort(order).limit(3).to_list(3)
    assert [d["_id"] for d in first] == ["id-49", "id-48", "id-47"]
    claimed = await outbox.find_one_and_update(query, {"$set": {"status": "sending"}}, sort=order)
    assert claimed["_id"] == "id-49"


async def test_a_batch_is_parsed_side_by_side_in_order_and_one_failure_fails_alone() -> None:
    """Deliveries that make the connector ask the platform (a notification naming a message)
    overlap their requests, at most ``SIDE_BY_SIDE`` at once; the batch is stored in order,
    and a delivery whose parsing fails is retried alone."""
    tb = await Testbed.start(run=False)
    try:
        ws = tb.slack.seed_workspace()
        integration = await tb.create_slack()
        ctx = tb.daemon.engine.ctx
        connector = await connector_for(ctx, await ctx.store.get_integration(integration["id"]))
        parse, running, most = connector.parse_webhook, 0, 0

        async def slow(request):
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)  # the platform's answer
            running -= 1
            if b"trial message 3" in request.body:
                raise ConnectionError("reset")
            return await parse(request)

        connector.parse_webhook = slow
        for n in range(12):
            delivery = tb.slack.post_user_message(ws["general"], f"trial message {n}", ws["bob"])
            assert (await tb.deliver(integration, delivery)).status_code == 200
        assert await tb.daemon.engine.inbox.work_once()
        assert most == inbox_module.SIDE_BY_SIDE
        counts = await ctx.store.inbox_counts(integration["id"])
        assert counts["done"] == 11 and counts["pending"] == 1
        texts = {m["text"] for chat in (await tb.chats(integration)).values() for m in await tb.messages(chat["id"])}
        assert {f"trial message {n}" for n in range(12) if n != 3} <= texts and "trial message 3" not in texts
    finally:
        await tb.stop()
