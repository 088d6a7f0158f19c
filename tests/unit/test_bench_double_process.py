"""The counting double in its own process answers as it does in the daemon's."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import InsertOne, UpdateOne
from pymongo.errors import ClientBulkWriteException, DuplicateKeyError

from bench.double_process import RemoteClient
from bench.hooks import double_stats, process_rss
from bench.mongo_double import Client
from syncd.store import Store, _fernet


@pytest.fixture
async def remote() -> AsyncIterator[RemoteClient]:
    client = await RemoteClient.spawn()
    yield client
    client.close()


async def _script(client: Any) -> list[Any]:
    """The same calls, with what each one answered (or raised)."""
    db = client["syncd"]
    seen: list[Any] = []
    await db["chats"].create_index([("k", 1)], name="k_1", unique=True)
    await db["chats"].insert_many([{"_id": n, "k": f"k{n}", "n": n % 3} for n in range(6)])
    seen.append(await db["chats"].find({"n": {"$in": [0, 2]}}, {"k": 1}).sort("k", -1).skip(1).limit(2).to_list(None))
    seen.append([d async for d in db["chats"].find({"n": 1})])
    seen.append([r async for r in db["chats"].aggregate([{"$match": {"n": {"$gte": 1}}},
                                                         {"$group": {"_id": "$n", "n": {"$sum": 1}}}])])
    updated = await db["chats"].find_one_and_update({"_id": 1}, {"$inc": {"n": 10}}, return_document=True)
    seen.append(updated)
    result = await db["chats"].update_one({"_id": 99}, {"$set": {"k": "new"}}, upsert=True)
    seen.append((result.matched_count, result.upserted_id))
    async def unsupported_stage() -> Any:
        return [r async for r in db["chats"].aggregate([{"$sort": {"k": 1}}])]

    for call in (lambda: db["chats"].insert_one({"_id": 100, "k": "k0"}),
                 lambda: client.bulk_write([
                     InsertOne({"_id": 101}, namespace="syncd.chats"),
                     UpdateOne({"_id": 102}, {"$set": {"k": "k1"}}, upsert=True, namespace="syncd.chats")]),
                 unsupported_stage):
        try:
            await call()
        except (DuplicateKeyError, ClientBulkWriteException, NotImplementedError) as exc:
            seen.append((type(exc).__name__, getattr(exc, "code", None),
                         [e["idx"] for e in getattr(exc, "write_errors", [])]))
    seen.append(await db["chats"].count_documents({}))
    seen.append(await client.run(double_stats, {}))
    return seen


async def test_every_call_answers_as_the_double_in_this_process(remote: RemoteClient) -> None:
    here, there = await _script(Client()), await _script(remote)
    assert there == here
    assert ("DuplicateKeyError", 11000, []) in there
    assert ("ClientBulkWriteException", 65, [1]) in there
    assert ("NotImplementedError", None, []) in there


async def test_the_store_runs_against_it(remote: RemoteClient) -> None:
    store = Store(remote, remote["syncd"], _fernet("a-key"))
    await store.ensure_indexes()
    assert await store.writes_across_collections() is True
    assert await store.ping() is True
    stats = await remote.run(double_stats, {})
    assert stats["calls"]["$cmd.hello"] == 1 and stats["calls"]["$cmd.ping"] == 1


async def test_it_is_another_process_and_ends_with_its_client(remote: RemoteClient) -> None:
    assert remote.process.pid != os.getpid()
    assert await remote.run(process_rss) > 0
    with pytest.raises(PermissionError):
        await remote.run(os.getcwd)  # only the benchmark's own functions run there
    remote.close()
    assert remote.process.poll() is not None
