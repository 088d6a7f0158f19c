"""The only package that talks to MongoDB (docs/architecture.md §2, §5).

Every document is camelCase (the models' ``.doc()``), carries ``id`` and is stored with
``_id = id`` so lookups by id are primary-key lookups. MongoDB hands back naive UTC datetimes;
the models make them aware again.

There are no transactions (mongomock has none, and a sharded cluster makes them costly), so
concurrent writers are reconciled with unique indexes and a per-message integer ``rev``:
an update only applies to the revision it was computed from, and a write that lost a race is
merged again against the fresh document (the merge rules in :mod:`syncd.merge` are
idempotent, so repeating one that did apply changes nothing).

``Store.connect("mongomock://")`` gives an in-memory store (tests, the demo) with its indexes
already created; for a real server the daemon calls :meth:`Store.ensure_indexes` at start.

:class:`Store` is composed of one part per concern, each a module of this package:
``integrations`` (with the credentials they hold), ``user_platforms``, ``chats``,
``messages`` (lookups, pages, the app's own messages), ``upserts`` (platform pages merged in
rounds, with their checkpoint), ``sync_status``, ``queues`` (inbox and outbox),
``deadletters`` (what the queues gave up on), ``leases`` and ``purge`` (an integration's data
removed); ``documents`` holds what they share, ``indexes`` the index list, ``crypto`` the secret key.
What this module exports is the whole public surface.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import PyMongoError

from syncd.models import Integration, utcnow
from syncd.store.browse import BrowseStore
from syncd.store.chats import ChatsStore
from syncd.store.crypto import _fernet
from syncd.store.deadletters import DeadLetter, DeadLettersStore
from syncd.store.documents import MAX_ROUNDS, StoreConflict
from syncd.store.indexes import INDEXES, RETIRED_INDEXES
from syncd.store.integrations import INTEGRATION_CACHE_S, IntegrationsStore
from syncd.store.leases import LeasesStore
from syncd.store.messages import MAX_PAGE, MessagesStore, decode_cursor, encode_cursor
from syncd.store.purge import PurgeStore
from syncd.store.queues import QueuesStore
from syncd.store.sync_status import SyncStatusStore
from syncd.store.upserts import Checkpoint, UpsertsStore, WriteResult
from syncd.store.user_platforms import UserPlatformsStore

__all__ = [
    "INDEXES", "INTEGRATION_CACHE_S", "MAX_PAGE", "MAX_ROUNDS", "RETIRED_INDEXES", "Checkpoint",
    "DeadLetter", "Store", "StoreConflict", "WriteResult", "decode_cursor", "encode_cursor",
]

#: The wire version of MongoDB 8.0, the first with the client-level ``bulkWrite`` command.
_CLIENT_BULK_WIRE_VERSION = 25


class Store(IntegrationsStore, UserPlatformsStore, ChatsStore, MessagesStore, UpsertsStore,
            SyncStatusStore, QueuesStore, DeadLettersStore, LeasesStore, BrowseStore, PurgeStore):
    """MongoDB access for every collection of docs/architecture.md §2. ``clock`` is replaceable in tests."""

    def __init__(self, client: Any, db: Any, fernet: Fernet | MultiFernet):
        self.client, self.db, self._fernet = client, db, fernet
        self.clock: Callable[[], datetime] = utcnow
        self.integrations = db["integrations"]
        self.chats = db["chats"]
        self.messages = db["messages"]
        self.user_platforms = db["user_platforms"]
        self.sync_status = db["sync_status"]
        self.inbox = db["inbox"]
        self.outbox = db["outbox"]
        self.leases = db["leases"]
        #: In the order the entries were stored, so the expired ones are at the front.
        self._integration_cache: OrderedDict[str, tuple[float, Integration]] = OrderedDict()
        #: Whether one ``client.bulk_write`` may span collections; asked of the server on
        #: first need (see :meth:`writes_across_collections`).
        self._across_collections: bool | None = None

    @classmethod
    async def connect(cls, uri: str, *, secret_key: str | None = None, timeout_s: float | None = None) -> Store:
        """``timeout_s`` bounds how long finding a server may take (the URI's own
        ``serverSelectionTimeoutMS`` wins)."""
        if uri.startswith("mongomock://"):
            from mongomock_motor import AsyncMongoMockClient

            client: Any = AsyncMongoMockClient()
            store = cls(client, client["syncd"], _fernet(secret_key))
            store._across_collections = False  # mongomock has no client-level bulk write
            await store.ensure_indexes()
            return store
        from motor.motor_asyncio import AsyncIOMotorClient

        options: dict[str, Any] = {}
        if timeout_s is not None and "serverselectiontimeoutms" not in uri.lower():
            options["serverSelectionTimeoutMS"] = int(timeout_s * 1000)
        motor: Any = AsyncIOMotorClient(uri, **options)
        return cls(motor, motor.get_default_database(default="syncd"), _fernet(secret_key))

    async def ensure_indexes(self) -> None:
        """Create every index of :data:`INDEXES` (idempotent)."""
        for collection, name, keys, options in INDEXES:
            fields = [(k.lstrip("-"), DESCENDING if k.startswith("-") else ASCENDING)
                      for k in keys.split()]
            # One create_index per index: mongomock drops the options of IndexModel lists.
            await self.db[collection].create_index(fields, name=name, **options)
        for collection, name in RETIRED_INDEXES:
            if name in await self.db[collection].index_information():
                await self.db[collection].drop_index(name)

    async def ping(self) -> bool:
        try:
            await self.db.command("ping")
            return True
        except PyMongoError:
            return False

    async def writes_across_collections(self) -> bool:
        """Whether the server writes several collections in one round-trip: MongoDB 8.0's
        client-level ``bulkWrite`` (wire version 25), and a driver that sends it (motor 3.6+).
        Asked once, on first need rather than at connect: connecting does no I/O, and stores
        built around an existing client (the benchmarks' double, tests) learn it too."""
        if self._across_collections is None:
            try:
                hello = await self.db.command("hello")
            except NotImplementedError:  # an in-memory client that does not model the command
                hello = {}
            self._across_collections = (
                hello.get("maxWireVersion", 0) >= _CLIENT_BULK_WIRE_VERSION
                and callable(getattr(self.client, "bulk_write", None)))
        return self._across_collections

    async def close(self) -> None:
        self.client.close()
