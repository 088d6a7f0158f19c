"""The only module that talks to MongoDB (DESIGN §2, §7, §8).

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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pymongo import ASCENDING, DESCENDING, InsertOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, ClientBulkWriteException, DuplicateKeyError, PyMongoError

from syncd.merge import ChangeKind, absorb_echo, merge, normalize, sent_changes
from syncd.models import (
    Chat, InboxItem, Integration, Message, OutboxItem, SyncStatus, UserPlatform, new_id, utcnow,
)
from syncd.providers.base import ChatData

log = structlog.get_logger("syncd.store")

#: How many times a write that lost a race is merged again before giving up.
MAX_ROUNDS = 5
#: The largest page ``list_messages`` returns, whatever the caller asks for.
MAX_PAGE = 1000
_AFTER = ReturnDocument.AFTER
#: Which ``WriteResult`` count a merge outcome adds to (anything else that changed: updated).
_COUNTED: dict[str | None, str] = {"created": "inserted", "deleted": "deleted"}
_DUP_KEY = 11000
#: The wire version of MongoDB 8.0, the first with the client-level ``bulkWrite`` command.
_CLIENT_BULK_WIRE_VERSION = 25
_INBOX_STATES = ("pending", "done", "failed")
_OUTBOX_STATES = ("queued", "sending", "sent", "dead")
_INTEGRATION_FIELDS = ("status", "status_reason", "settings", "name")
#: How long an integration read is reused. Every webhook request and every inbox batch needs
#: its integration, which rarely changes: writes through this store refresh the copy at once,
#: other replicas' writes are seen within this many seconds.
INTEGRATION_CACHE_S = 2.0


_STRING = {"$type": "string"}
#: (collection, name, keys ("-" = descending), options): the unique keys of DESIGN §2, then
#: the shapes the queries below use, so a real server never scans a collection.
INDEXES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("messages", "message_key", "customerId platform externalMessageId",
     {"unique": True, "partialFilterExpression": {"externalMessageId": _STRING}}),
    ("chats", "chat_key", "customerId platform externalChatId", {"unique": True}),
    ("user_platforms", "user_key", "customerId platform externalUserId", {"unique": True}),
    ("sync_status", "sync_key", "integrationId chatId", {"unique": True}),
    ("inbox", "delivery_key", "integrationId deliveryId", {"unique": True}),
    ("outbox", "idempotency_key", "customerId idempotencyKey", {"unique": True}),
    ("messages", "chat_timeline", "chatId -sentAt -_id", {}),
    ("messages", "app_message", "customerId platform appMessageId",
     {"partialFilterExpression": {"appMessageId": _STRING}}),
    ("chats", "chat_integration", "integrationId", {}),
    ("integrations", "integration_owner", "customerId platform", {}),
    # The claims sort due items by these keys: with the tie-breaker in the index a claim reads
    # the first items in order instead of sorting every due item in memory.
    ("inbox", "inbox_due_order", "status nextAttemptAt receivedAt", {}),
    ("outbox", "outbox_due_order", "status nextAttemptAt createdAt", {}),
    ("outbox", "outbox_lease", "status leaseUntil", {}),
    ("leases", "lease_owner", "owner", {}),
]


#: Indexes an earlier version created that one of :data:`INDEXES` replaces: dropped at start.
RETIRED_INDEXES: list[tuple[str, str]] = [("inbox", "inbox_due"), ("outbox", "outbox_due")]


class StoreConflict(RuntimeError):
    """A write kept losing races with other writers for ``MAX_ROUNDS`` rounds."""


@dataclass
class WriteResult:
    """What one ``upsert_messages`` call did, one count per incoming row.

    ``unchanged`` counts rows that carried nothing new (the duplicates suppressed);
    ``changed`` holds one entry per stored message the app should hear about, with the kind
    the callback announces and the message as stored after the write. ``checkpointed`` says
    what became of a checkpoint given to the call: None, not written (the caller saves it);
    True, written with the messages; False, refused because a newer plan replaced it.
    """

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    changed: list[tuple[str, Message]] = field(default_factory=list)
    checkpointed: bool | None = None


#: Builds the caller's sync status (an import's page cursor and counts) from what a write of
#: its page did, so the status can travel in the same round-trip as the messages.
Checkpoint = Callable[[WriteResult], SyncStatus]


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "rev", "credentials")}


def _own_copy(integration: Integration) -> Integration:
    """A copy the caller may change without changing the cached one (settings is the only
    mutable field; pydantic's deep copy costs more than the read it saves)."""
    copy = integration.model_copy()
    copy.settings = json.loads(json.dumps(integration.settings)) if integration.settings else {}
    return copy


def _doc(model: Any) -> dict[str, Any]:
    doc = model.doc()
    doc["_id"] = doc["id"]
    return doc


def _fernet(secret_key: Any) -> Fernet | MultiFernet:
    if secret_key is None:
        log.warning("no secret key configured: stored credentials become unreadable "
                    "once this process exits")
        return Fernet(Fernet.generate_key())
    if hasattr(secret_key, "get_secret_value"):
        secret_key = secret_key.get_secret_value()
    # A comma-separated list rotates keys: the first encrypts, every one decrypts, so old
    # credentials stay readable until they are written again with the new key.
    keys = [k.strip() for k in secret_key.split(",") if k.strip()]
    if not keys:
        raise ValueError("SYNCD_SECRET_KEY is empty")
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.encode()).digest())) for k in keys])


def encode_cursor(sent_at: datetime | None, message_id: str) -> str:
    key = [sent_at.isoformat() if sent_at else None, message_id]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | None, str]:
    """The sort key a cursor stands for; ``ValueError`` for anything we did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sent_at, message_id = json.loads(raw)
        if not isinstance(message_id, str):
            raise TypeError("message id")
        return (normalize(datetime.fromisoformat(sent_at)) if sent_at else None), message_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc


@dataclass
class _Plan:
    """The one write that brings a message key up to date, and what to report once it applied."""

    op: InsertOne | UpdateOne | None
    expected: dict[str, Any]
    counts: dict[str, int]
    kind: ChangeKind | None
    message: Message | None
    #: The new document, when ``op`` inserts it.
    document: dict[str, Any] | None = None

    def commit(self, result: WriteResult) -> None:
        for name, n in self.counts.items():
            setattr(result, name, getattr(result, name) + n)
        if self.kind and self.message:
            result.changed.append((self.kind, self.message))

    def applied_to(self, fresh: dict[str, Any] | None) -> bool:
        """Whether ``fresh`` shows this update's write (a short ``matched_count`` does not say
        which of a bulk's updates missed their revision)."""
        return fresh is not None and all(normalize(fresh.get(k)) == v
                                         for k, v in self.expected.items())


def _plan(existing: dict[str, Any] | None, rows: list[Message], now: datetime, report: bool = True) -> _Plan:
    current, sets = existing, {}
    counts = {"inserted": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    kinds: list[str | None] = []
    for row in rows:
        outcome = merge(current, row, now=now)
        if not outcome.doc_changes:
            counts["unchanged"] += 1
        else:
            counts[_COUNTED.get(outcome.kind, "updated")] += 1
            if current is None:
                current = outcome.doc_changes
            else:
                current = {**current, **outcome.doc_changes}
                sets.update(outcome.doc_changes)
        kinds.append(outcome.kind)
    # Several events for one message in one page reach the app as one callback.
    kind = next((k for k in ("deleted", "created", "updated") if k in kinds), None)
    message = Message.model_validate(_strip(current)) if report and kind and current else None
    if existing is None:
        assert current is not None
        document = {**current, "_id": current["id"], "rev": 0}
        return _Plan(InsertOne(document), {}, counts, kind, message, document)
    if not sets:
        return _Plan(None, {}, counts, kind, message)
    rev = existing.get("rev")
    sets["rev"] = (rev or 0) + 1
    op = UpdateOne({"_id": existing["_id"], "rev": rev}, {"$set": sets})
    return _Plan(op, sets, counts, kind, message)


class Store:
    """MongoDB access for every collection of DESIGN §2. ``clock`` is replaceable in tests."""

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
        self._integration_cache: dict[str, tuple[float, Integration]] = {}
        #: Whether one ``client.bulk_write`` may span collections; asked of the server on
        #: first need (see :meth:`writes_across_collections`).
        self._across_collections: bool | None = None

    @classmethod
    async def connect(cls, uri: str, *, secret_key: str | None = None) -> "Store":
        if uri.startswith("mongomock://"):
            from mongomock_motor import AsyncMongoMockClient

            client = AsyncMongoMockClient()
            store = cls(client, client["syncd"], _fernet(secret_key))
            store._across_collections = False  # mongomock has no client-level bulk write
            await store.ensure_indexes()
            return store
        from motor.motor_asyncio import AsyncIOMotorClient

        client = AsyncIOMotorClient(uri)
        return cls(client, client.get_default_database(default="syncd"), _fernet(secret_key))

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

    # -- integrations ---------------------------------------------------------------------
    def _encrypt(self, credentials: dict) -> str:
        return self._fernet.encrypt(json.dumps(credentials).encode()).decode()

    async def insert_integration(self, integration: Integration, credentials: dict) -> None:
        self._integration_cache.pop(integration.id, None)
        await self.integrations.insert_one({**_doc(integration),
                                            "credentials": self._encrypt(credentials)})

    def _remember(self, id: str, integration: Integration | None) -> Integration | None:
        if integration is None:
            self._integration_cache.pop(id, None)
            return None
        self._integration_cache[id] = (time.monotonic(), integration)
        return _own_copy(integration)

    async def get_integration(self, id: str) -> Integration | None:
        cached = self._integration_cache.get(id)
        if cached is not None and time.monotonic() - cached[0] < INTEGRATION_CACHE_S:
            return _own_copy(cached[1])
        doc = await self.integrations.find_one({"_id": id}, {"credentials": 0})
        return self._remember(id, Integration.model_validate(_strip(doc)) if doc else None)

    async def list_integrations(self, *, customer_id: str | None = None,
                                platform: str | None = None, status: str | None = None,
                                include_deleted: bool = False) -> list[Integration]:
        query: dict[str, Any] = {}
        if customer_id is not None:
            query["customerId"] = customer_id
        if platform is not None:
            query["platform"] = platform
        if status is not None:
            query["status"] = status
        elif not include_deleted:
            query["status"] = {"$ne": "deleted"}
        cursor = self.integrations.find(query, {"credentials": 0})
        cursor = cursor.sort([("createdAt", ASCENDING), ("_id", ASCENDING)])
        return [Integration.model_validate(_strip(d)) async for d in cursor]

    async def update_integration(self, id: str, **fields: Any) -> Integration | None:
        unknown = set(fields) - set(_INTEGRATION_FIELDS)
        if unknown:
            raise TypeError(f"integration fields cannot be updated: {sorted(unknown)}")
        sets = {Integration.model_fields[k].alias or k: v for k, v in fields.items()}
        sets["updatedAt"] = self.clock()
        doc = await self.integrations.find_one_and_update(
            {"_id": id}, {"$set": sets}, projection={"credentials": 0}, return_document=_AFTER)
        return self._remember(id, Integration.model_validate(_strip(doc)) if doc else None)

    async def get_credentials(self, id: str) -> dict:
        doc = await self.integrations.find_one({"_id": id}, {"credentials": 1})
        if doc is None:
            raise KeyError(f"integration {id} not found")
        try:
            return json.loads(self._fernet.decrypt(doc["credentials"].encode()))
        except (InvalidToken, KeyError, AttributeError) as exc:
            raise ValueError(f"credentials of integration {id} cannot be decrypted with the "
                             "configured secret key") from exc

    async def set_credentials(self, id: str, credentials: dict) -> None:
        self._integration_cache.pop(id, None)
        result = await self.integrations.update_one(
            {"_id": id}, {"$set": {"credentials": self._encrypt(credentials),
                                   "updatedAt": self.clock()}})
        if result.matched_count == 0:
            raise KeyError(f"integration {id} not found")

    # -- user platforms -------------------------------------------------------------------
    async def upsert_user_platform(self, up: UserPlatform) -> UserPlatform:
        doc = up.doc()
        key = {"customerId": up.customer_id, "platform": up.platform,
               "externalUserId": up.external_user_id}
        sets = {k: v for k, v in doc.items() if k not in key and k != "id" and v is not None}
        update = {"$set": sets, "$setOnInsert": {"_id": up.id, "id": up.id}}
        saved = await self._upsert(self.user_platforms, key, update)
        return UserPlatform.model_validate(_strip(saved))

    async def list_user_platforms(self, customer_id: str,
                                  platform: str | None = None) -> list[UserPlatform]:
        query = {"customerId": customer_id}
        if platform is not None:
            query["platform"] = platform
        cursor = self.user_platforms.find(query).sort([("platform", 1), ("externalUserId", 1)])
        return [UserPlatform.model_validate(_strip(d)) async for d in cursor]

    async def self_identities(self, customer_id: str, platform: str) -> tuple[set[str], set[str]]:
        ids: set[str] = set()
        emails: set[str] = set()
        query = {"customerId": customer_id, "platform": platform, "isSelf": True}
        async for doc in self.user_platforms.find(query, {"externalUserId": 1, "externalEmail": 1}):
            ids.add(doc["externalUserId"])
            if doc.get("externalEmail"):
                emails.add(doc["externalEmail"].lower())
        return ids, emails

    async def _upsert(self, collection: Any, key: dict, update: dict) -> dict:
        """``find_one_and_update`` with upsert; two racing inserts of one key meet the unique
        index, and the loser simply updates the winner's document."""
        try:
            return await collection.find_one_and_update(key, update, upsert=True,
                                                        return_document=_AFTER)
        except DuplicateKeyError:
            return await collection.find_one_and_update(key, update, upsert=True,
                                                        return_document=_AFTER)

    # -- chats ----------------------------------------------------------------------------
    async def upsert_chat(self, customer_id: str, integration_id: str, platform: str,
                          data: ChatData, *, imported: bool | None = None) -> Chat:
        key = {"customerId": customer_id, "platform": platform,
               "externalChatId": data.external_chat_id}
        # The caller passes the active integration, so a chat first seen under "unknown" or
        # under a replaced integration follows it.
        sets: dict[str, Any] = {"integrationId": integration_id}
        chat_id = new_id()
        on_insert: dict[str, Any] = {"_id": chat_id, "id": chat_id, "createdAt": self.clock()}
        for name, value, default in (("name", data.name, None), ("kind", data.kind, "channel")):
            if value is not None:
                sets[name] = value
            else:
                on_insert[name] = default
        if data.participants:
            sets["participants"] = list(data.participants)
        else:
            on_insert["participants"] = []
        if imported:
            sets["imported"] = True
        else:  # never turns an imported chat back into a not-imported one
            on_insert["imported"] = False
        update: dict[str, Any] = {"$set": sets, "$setOnInsert": on_insert}
        if data.last_message_at is not None:
            update["$max"] = {"lastMessageAt": data.last_message_at}
        return Chat.model_validate(_strip(await self._upsert(self.chats, key, update)))

    async def get_chat(self, id: str) -> Chat | None:
        doc = await self.chats.find_one({"_id": id})
        return Chat.model_validate(_strip(doc)) if doc else None

    async def find_chat(self, customer_id: str, platform: str,
                        external_chat_id: str) -> Chat | None:
        doc = await self.chats.find_one({"customerId": customer_id, "platform": platform,
                                         "externalChatId": external_chat_id})
        return Chat.model_validate(_strip(doc)) if doc else None

    async def find_chats(self, customer_id: str, platform: str,
                         external_chat_ids: Iterable[str]) -> dict[str, Chat]:
        """The stored chats with these platform ids, by platform id, in one read."""
        query = {"customerId": customer_id, "platform": platform,
                 "externalChatId": {"$in": sorted(set(external_chat_ids))}}
        return {d["externalChatId"]: Chat.model_validate(_strip(d)) async for d in self.chats.find(query)}

    async def touch_chats(self, integration_id: str, latest: dict[str, datetime]) -> None:
        """Move each chat's ``lastMessageAt`` forward (never back) and onto ``integration_id``,
        for many chats in one round-trip; ``latest`` maps chat ids to their newest message."""
        if latest:
            await self.chats.bulk_write([
                UpdateOne({"_id": chat_id}, {"$set": {"integrationId": integration_id},
                                             "$max": {"lastMessageAt": at}})
                for chat_id, at in latest.items()], ordered=False)

    async def list_chats(self, *, customer_id: str | None = None,
                         integration_id: str | None = None) -> list[Chat]:
        query = {}
        if customer_id is not None:
            query["customerId"] = customer_id
        if integration_id is not None:
            query["integrationId"] = integration_id
        cursor = self.chats.find(query).sort([("createdAt", 1), ("_id", 1)])
        return [Chat.model_validate(_strip(d)) async for d in cursor]

    async def delete_chat(self, id: str) -> int:
        removed = await self.messages.delete_many({"chatId": id})
        await self.sync_status.delete_many({"chatId": id})
        await self.chats.delete_one({"_id": id})
        return removed.deleted_count

    async def repoint_chats(self, customer_id: str, platform: str, integration_id: str) -> int:
        active = {integration_id}
        async for doc in self.integrations.find(
                {"customerId": customer_id, "platform": platform, "status": "active"}, {"_id": 1}):
            active.add(doc["_id"])
        stale = {"customerId": customer_id, "platform": platform,
                 "integrationId": {"$nin": sorted(active)}}
        chat_ids = [d["_id"] async for d in self.chats.find(stale, {"_id": 1})]
        if not chat_ids:
            return 0
        result = await self.chats.update_many({"_id": {"$in": chat_ids}},
                                              {"$set": {"integrationId": integration_id}})
        await self.messages.update_many(
            {"chatId": {"$in": chat_ids}},
            {"$set": {"integrationId": integration_id}, "$inc": {"rev": 1}})
        return result.modified_count

    # -- messages -------------------------------------------------------------------------
    async def upsert_messages(self, rows: list[Message], *, guess_new: bool = False,
                              report: bool = True, checkpoint: Checkpoint | None = None) -> WriteResult:
        """Merge a page of platform messages: one read, one bulk write, retries only for the
        keys a concurrent writer touched in between.

        ``guess_new`` is for pages that are mostly new (imports, webhooks): keys whose rows
        carry no edit and no delete are written as inserts without being read first, so a
        new page costs one round-trip; the unique index refuses those that exist after all,
        and only those are read and merged in the next round. ``report=False`` leaves
        ``WriteResult.changed`` empty (nobody listens: no app callback is configured).

        ``checkpoint`` builds the page's sync status from the result the write will have.
        Where the server writes several collections at once (:meth:`writes_across_collections`)
        and a round's writes are all inserts, the status goes as the last operation of that
        round's ordered bulk write, in the same round-trip: it applies only if every insert
        before it did, so a cursor is never ahead of the messages it covers. When an insert
        meets an existing key, nothing after it runs: the rest is read and merged in the next
        round, which carries the status in turn if its writes are all inserts. A round with
        updates never carries it (an update that missed its revision is retried in the next
        round). What became of it is ``WriteResult.checkpointed``; None: the caller saves it."""
        pending: dict[tuple[str, str, str], list[Message]] = {}
        for row in rows:
            if not row.external_message_id:
                raise ValueError("upsert_messages needs externalMessageId on every row; "
                                 "register app messages with insert_pending_message")
            pending.setdefault((row.customer_id, row.platform, row.external_message_id),
                               []).append(row)
        result = WriteResult()
        unread = {key for key, rows in pending.items()
                  if all(r.edited_at is None and r.deleted_at is None for r in rows)} if guess_new else set()
        for _ in range(MAX_ROUNDS):
            if not pending:
                return result
            pending = await self._write_round(pending, result, unread, report, checkpoint)
            unread = set()
        raise StoreConflict(f"{len(pending)} messages kept conflicting with concurrent writers")

    async def _read_keys(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple, dict]:
        by_scope: dict[tuple[str, str], list[str]] = {}
        for customer, platform, external_id in keys:
            by_scope.setdefault((customer, platform), []).append(external_id)
        found: dict[tuple, dict] = {}
        for (customer, platform), ids in by_scope.items():
            query = {"customerId": customer, "platform": platform,
                     "externalMessageId": {"$in": ids}}
            async for doc in self.messages.find(query):
                found[(customer, platform, doc["externalMessageId"])] = doc
        return found

    async def _write_round(self, pending: dict[tuple, list[Message]], result: WriteResult,
                           unread: Iterable[tuple] = (), report: bool = True,
                           checkpoint: Checkpoint | None = None) -> dict[tuple, list[Message]]:
        unread = set(unread)
        existing = await self._read_keys(k for k in pending if k not in unread)
        now = self.clock()
        planned: list[tuple[tuple, _Plan]] = []
        for key, rows in pending.items():
            plan = _plan(existing.get(key), rows, now, report)
            if plan.op is None:
                plan.commit(result)
            else:
                planned.append((key, plan))
        if not planned:
            return {}
        if checkpoint is not None and all(p.document is not None for _, p in planned) \
                and await self.writes_across_collections():
            predicted = replace(result, changed=list(result.changed))
            for _, plan in planned:
                plan.commit(predicted)
            status = checkpoint(predicted)
            if status.started_at is not None:
                return await self._insert_with_checkpoint(pending, planned, result, status)
        lost: set[int] = set()
        try:
            matched = (await self.messages.bulk_write([p.op for _, p in planned],
                                                      ordered=False)).matched_count
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != _DUP_KEY:
                    raise
                lost.add(error["index"])  # a racing writer inserted this key first
            matched = exc.details.get("nMatched", 0)
        updates = [i for i, (_, p) in enumerate(planned) if isinstance(p.op, UpdateOne)]
        if matched < len(updates):
            fresh = await self._read_keys(planned[i][0] for i in updates)
            lost.update(i for i in updates
                        if not planned[i][1].applied_to(fresh.get(planned[i][0])))
        retry = {}
        for i, (key, plan) in enumerate(planned):
            if i in lost:
                retry[key] = pending[key]
            else:
                plan.commit(result)
        return retry

    async def _insert_with_checkpoint(self, pending: dict[tuple, list[Message]],
                                      planned: list[tuple[tuple, _Plan]], result: WriteResult,
                                      status: SyncStatus) -> dict[tuple, list[Message]]:
        """One round of inserts and ``status``'s checkpoint in one ordered client-level bulk
        write, the checkpoint last; what is left for the next round."""
        name = self.db.name
        ops: list[InsertOne | UpdateOne] = [InsertOne(p.document, namespace=f"{name}.messages")
                                            for _, p in planned]
        ops.append(UpdateOne(*self._checkpoint_update(status), namespace=f"{name}.sync_status"))
        try:
            written = await self.client.bulk_write(ops, ordered=True)
        except ClientBulkWriteException as exc:
            errors = exc.write_errors or []
            if exc.error is not None or exc.write_concern_errors or len(errors) != 1 \
                    or errors[0].get("code") != _DUP_KEY or errors[0]["idx"] >= len(planned):
                raise
            # Ordered: the inserts before the refused one applied, nothing after it ran (the
            # checkpoint included); those keys are read and merged in the next round, and
            # the caller saves the checkpoint once they are stored.
            first_lost = errors[0]["idx"]
            for _, plan in planned[:first_lost]:
                plan.commit(result)
            return {key: pending[key] for key, _ in planned[first_lost:]}
        for _, plan in planned:
            plan.commit(result)
        # Every insert applied, so the round's matched count is the checkpoint's.
        result.checkpointed = written.matched_count > 0 or await self._checkpoint_missed(status)
        return {}

    async def get_message(self, id: str) -> Message | None:
        doc = await self.messages.find_one({"_id": id})
        return Message.model_validate(_strip(doc)) if doc else None

    async def find_message(self, customer_id: str, platform: str, *, id: str | None = None,
                           external_message_id: str | None = None,
                           app_message_id: str | None = None) -> Message | None:
        """The message named by our id, the platform's id or the app's id (first that matches)."""
        scope = {"customerId": customer_id, "platform": platform}
        for field_name, value in (("_id", id), ("externalMessageId", external_message_id),
                                  ("appMessageId", app_message_id)):
            if value is not None:
                doc = await self.messages.find_one({**scope, field_name: value})
                if doc:
                    return Message.model_validate(_strip(doc))
        return None

    async def find_messages(self, customer_id: str, platform: str,
                            external_message_ids: Iterable[str]) -> dict[str, Message]:
        """The stored messages with these platform ids, by platform id, in one read."""
        found = await self._read_keys((customer_id, platform, ext) for ext in external_message_ids)
        return {key[2]: Message.model_validate(_strip(doc)) for key, doc in found.items()}

    async def list_messages(self, chat_id: str, *, cursor: str | None = None,
                            limit: int = 50) -> tuple[list[Message], str | None]:
        """One page of a chat, newest first (tombstones included so the app can drop them);
        ``limit`` is capped at ``MAX_PAGE``; a cursor we did not hand out is a ``ValueError``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        limit = min(limit, MAX_PAGE)
        query: dict[str, Any] = {"chatId": chat_id}
        if cursor:
            sent_at, last_id = decode_cursor(cursor)
            if sent_at is None:
                query.update({"sentAt": None, "_id": {"$lt": last_id}})
            else:
                # Comparisons never cross BSON types: messages without sentAt sort last and
                # must be asked for separately.
                query["$or"] = [{"sentAt": {"$lt": sent_at}},
                                {"sentAt": sent_at, "_id": {"$lt": last_id}},
                                {"sentAt": None}]
        docs = await (self.messages.find(query).sort([("sentAt", DESCENDING), ("_id", DESCENDING)])
                      .limit(limit + 1).to_list(limit + 1))
        page = [Message.model_validate(_strip(d)) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = docs[limit - 1]
            next_cursor = encode_cursor(normalize(last.get("sentAt")), last["_id"])
        return page, next_cursor

    async def insert_pending_message(self, msg: Message) -> Message:
        if msg.app_message_id:
            existing = await self.find_message(msg.customer_id, msg.platform,
                                               app_message_id=msg.app_message_id)
            if existing:
                return existing
        doc = {**normalize(_doc(msg)), "rev": 0}
        doc["deliveryState"] = doc["deliveryState"] or "pending"
        try:
            await self.messages.insert_one(doc)
        except DuplicateKeyError:
            found = await self.get_message(msg.id) or await self.find_message(
                msg.customer_id, msg.platform, external_message_id=msg.external_message_id)
            if found is None:
                raise
            return found
        return Message.model_validate(_strip(doc))

    async def record_sent(self, message_id: str, external_message_id: str, *,
                          sent_at: datetime | None = None, external_thread_id: str | None = None,
                          extra: dict | None = None) -> Message:
        """Give the app's pending message its platform id. When the platform's echo was stored
        first, its platform fields move into the app's document and the echo document goes,
        so exactly one document remains."""
        absorbed: dict[str, Any] = {}  # survives a lost round: the echo is already deleted then
        for _ in range(MAX_ROUNDS):
            doc = await self.messages.find_one({"_id": message_id})
            if doc is None:
                raise KeyError(f"message {message_id} not found")
            if doc.get("externalMessageId") != external_message_id:
                echo = await self.messages.find_one(
                    {"customerId": doc["customerId"], "platform": doc["platform"],
                     "externalMessageId": external_message_id})
                if echo is not None:
                    absorbed = absorb_echo(absorbed, echo)
                    gone = await self.messages.delete_one({"_id": echo["_id"],
                                                           "rev": echo.get("rev")})
                    if gone.deleted_count == 0:
                        continue
            sets = sent_changes(doc, external_message_id, sent_at, external_thread_id,
                                extra, absorbed, self.clock())
            sets["rev"] = (doc.get("rev") or 0) + 1
            try:
                saved = await self.messages.find_one_and_update(
                    {"_id": message_id, "rev": doc.get("rev")}, {"$set": sets},
                    return_document=_AFTER)
            except DuplicateKeyError:
                continue  # the echo was stored again meanwhile: absorb it too
            if saved is not None:
                return Message.model_validate(_strip(saved))
        raise StoreConflict(f"message {message_id} kept conflicting while recording its send")

    async def update_message(self, id: str, **fields: Any) -> Message | None:
        """Set message fields as given (snake_case; ``None`` erases): the app's own edits,
        deletes and delivery states, which are not platform merges."""
        sets: dict[str, Any] = {}
        for name, value in fields.items():
            info = Message.model_fields.get(name)
            if info is None or name in ("id", "created_at"):
                raise TypeError(f"message field cannot be updated: {name}")
            if hasattr(value, "doc"):
                value = value.doc()
            elif isinstance(value, list):
                value = [v.doc() if hasattr(v, "doc") else v for v in value]
            sets[info.alias or name] = value
        sets["updatedAt"] = self.clock()
        doc = await self.messages.find_one_and_update(
            {"_id": id}, {"$set": sets, "$inc": {"rev": 1}}, return_document=_AFTER)
        return Message.model_validate(_strip(doc)) if doc else None

    async def live_external_ids(self, chat_id: str) -> set[str]:
        query = {"chatId": chat_id, "deletedAt": None, "externalMessageId": {"$type": "string"}}
        return {d["externalMessageId"]
                async for d in self.messages.find(query, {"externalMessageId": 1})}

    async def mark_deleted(self, chat_id: str, external_message_ids: Iterable[str],
                           at: datetime) -> int:
        ids = sorted(set(external_message_ids))
        total = 0
        for start in range(0, len(ids), 500):
            result = await self.messages.update_many(
                {"chatId": chat_id, "externalMessageId": {"$in": ids[start:start + 500]},
                 "deletedAt": None},
                {"$set": {"deletedAt": at, "updatedAt": self.clock()}, "$inc": {"rev": 1}})
            total += result.modified_count
        return total

    # -- sync status ----------------------------------------------------------------------
    async def get_sync_status(self, integration_id: str,
                              chat_id: str | None = None) -> SyncStatus | None:
        doc = await self.sync_status.find_one({"integrationId": integration_id, "chatId": chat_id})
        return SyncStatus.model_validate(_strip(doc)) if doc else None

    async def save_sync_status(self, status: SyncStatus) -> None:
        sets = {k: v for k, v in status.doc().items() if k != "id"}
        sets["updatedAt"] = self.clock()
        key = {"integrationId": status.integration_id, "chatId": status.chat_id}
        await self._upsert(self.sync_status, key,
                           {"$set": sets, "$setOnInsert": {"_id": status.id, "id": status.id}})

    async def checkpoint_sync_status(self, status: SyncStatus) -> bool:
        """Save ``status`` if its stored plan is still the one it belongs to (same
        ``startedAt``), in one round-trip; False when a newer plan replaced it. A status that
        is not stored at all is saved."""
        if status.started_at is None:
            await self.save_sync_status(status)
            return True
        result = await self.sync_status.update_one(*self._checkpoint_update(status))
        return result.matched_count > 0 or await self._checkpoint_missed(status)

    def _checkpoint_update(self, status: SyncStatus) -> tuple[dict[str, Any], dict[str, Any]]:
        """The filter and update of a checkpoint: it applies only to its own plan."""
        sets = {k: v for k, v in status.doc().items() if k != "id"}
        sets["updatedAt"] = self.clock()
        key = {"integrationId": status.integration_id, "chatId": status.chat_id}
        return {**key, "startedAt": normalize(status.started_at)}, {"$set": sets}

    async def _checkpoint_missed(self, status: SyncStatus) -> bool:
        """After a checkpoint matched nothing: False when another plan holds the key; a
        status that is not stored at all is saved."""
        key = {"integrationId": status.integration_id, "chatId": status.chat_id}
        if await self.sync_status.find_one(key, {"_id": 1}) is not None:
            return False
        await self.save_sync_status(status)
        return True

    async def update_sync_status(self, integration_id: str, chat_id: str | None = None,
                                 **fields: Any) -> SyncStatus:
        """Write only the given fields (snake_case), so two writers of one status document
        (the importer's cursor, the poller's mark) do not overwrite each other's fields."""
        sets: dict[str, Any] = {}
        for name, value in fields.items():
            info = SyncStatus.model_fields.get(name)
            if info is None or name in ("id", "integration_id", "chat_id"):
                raise TypeError(f"sync status field cannot be updated: {name}")
            sets[info.alias or name] = value.doc() if hasattr(value, "doc") else value
        sets["updatedAt"] = self.clock()
        fresh = SyncStatus(integration_id=integration_id, chat_id=chat_id).doc()
        on_insert = {k: v for k, v in fresh.items()
                     if k not in sets and k not in ("integrationId", "chatId")}
        key = {"integrationId": integration_id, "chatId": chat_id}
        saved = await self._upsert(self.sync_status, key, {
            "$set": sets, "$setOnInsert": {**on_insert, "_id": fresh["id"]}})
        return SyncStatus.model_validate(_strip(saved))

    async def list_sync_status(self, integration_id: str) -> list[SyncStatus]:
        cursor = self.sync_status.find({"integrationId": integration_id}).sort([("_id", 1)])
        return [SyncStatus.model_validate(_strip(d)) async for d in cursor]

    # -- inbox ----------------------------------------------------------------------------
    async def inbox_put(self, item: InboxItem) -> bool:
        try:
            await self.inbox.insert_one(_doc(item))
            return True
        except DuplicateKeyError:
            return False

    async def inbox_claim(self, now: datetime, lease_s: float) -> InboxItem | None:
        doc = await self.inbox.find_one_and_update(
            {"status": "pending", "nextAttemptAt": {"$lte": now},
             "$or": [{"leaseUntil": None}, {"leaseUntil": {"$lte": now}}]},
            {"$set": {"leaseUntil": now + timedelta(seconds=lease_s)}, "$inc": {"attempts": 1}},
            sort=[("nextAttemptAt", ASCENDING), ("receivedAt", ASCENDING)],
            return_document=_AFTER)
        return InboxItem.model_validate(_strip(doc)) if doc else None

    async def inbox_claim_many(self, now: datetime, lease_s: float, limit: int) -> list[InboxItem]:
        """Up to ``limit`` due deliveries, oldest first, in two round-trips (not two per item).

        The claim stamps a token, so when another replica took some of the same items between
        our read and our write, one more read says which ones are ours."""
        due = {"status": "pending", "nextAttemptAt": {"$lte": now},
               "$or": [{"leaseUntil": None}, {"leaseUntil": {"$lte": now}}]}
        docs = await (self.inbox.find(due).sort([("nextAttemptAt", ASCENDING), ("receivedAt", ASCENDING)])
                      .limit(limit).to_list(limit))
        if not docs:
            return []
        token, until = new_id(), now + timedelta(seconds=lease_s)
        ids = [d["_id"] for d in docs]
        claimed = await self.inbox.update_many(
            {**due, "_id": {"$in": ids}},
            {"$set": {"leaseUntil": until, "claimToken": token}, "$inc": {"attempts": 1}})
        if claimed.modified_count != len(ids):
            docs = await self.inbox.find({"_id": {"$in": ids}, "claimToken": token}).to_list(None)
            docs.sort(key=lambda d: ids.index(d["_id"]))
        else:
            for doc in docs:
                doc.update(leaseUntil=until, attempts=doc.get("attempts", 0) + 1)
        return [InboxItem.model_validate(_strip(d)) for d in docs]

    async def inbox_done(self, id: str) -> None:
        await self.inbox.update_one({"_id": id}, {"$set": {"status": "done", "leaseUntil": None}})

    async def inbox_done_many(self, ids: list[str]) -> None:
        if ids:
            await self.inbox.update_many({"_id": {"$in": ids}},
                                         {"$set": {"status": "done", "leaseUntil": None}})

    async def inbox_retry(self, id: str, error: str, next_attempt_at: datetime) -> None:
        await self.inbox.update_one({"_id": id}, {"$set": {
            "status": "pending", "leaseUntil": None, "error": error,
            "nextAttemptAt": next_attempt_at}})

    async def inbox_fail(self, id: str, error: str) -> None:
        await self.inbox.update_one({"_id": id}, {"$set": {
            "status": "failed", "leaseUntil": None, "error": error}})

    async def inbox_counts(self, integration_id: str | None = None) -> dict[str, int]:
        match = {} if integration_id is None else {"integrationId": integration_id}
        return await self._counts(self.inbox, match, _INBOX_STATES)

    async def list_inbox(self, *, status: str | None = None, integration_id: str | None = None,
                         limit: int = 100) -> list[InboxItem]:
        query = {}
        if status is not None:
            query["status"] = status
        if integration_id is not None:
            query["integrationId"] = integration_id
        cursor = self.inbox.find(query).sort([("receivedAt", DESCENDING), ("_id", DESCENDING)])
        docs = await cursor.limit(limit).to_list(limit)
        return [InboxItem.model_validate(_strip(d)) for d in docs]

    async def _counts(self, collection: Any, match: dict,
                      states: tuple[str, ...]) -> dict[str, int]:
        counts = dict.fromkeys(states, 0)
        pipeline = [{"$match": match}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        async for row in collection.aggregate(pipeline):
            counts[row["_id"]] = row["n"]
        return counts

    # -- outbox ---------------------------------------------------------------------------
    async def outbox_put(self, item: OutboxItem) -> tuple[OutboxItem, bool]:
        try:
            await self.outbox.insert_one(_doc(item))
            return item, True
        except DuplicateKeyError:
            doc = await self.outbox.find_one({"customerId": item.customer_id,
                                              "idempotencyKey": item.idempotency_key})
            if doc is None:
                raise
            return OutboxItem.model_validate(_strip(doc)), False

    async def outbox_claim(self, now: datetime, lease_s: float, *, types: list[str] | None = None,
                           exclude_types: list[str] | None = None) -> OutboxItem | None:
        """The next due item, or one whose worker died mid-send (its lease ran out)."""
        query: dict[str, Any] = {"$or": [
            {"status": "queued", "nextAttemptAt": {"$lte": now}},
            {"status": "sending", "leaseUntil": {"$lte": now}}]}
        type_filter: dict[str, Any] = {}
        if types is not None:
            type_filter["$in"] = list(types)
        if exclude_types:
            type_filter["$nin"] = list(exclude_types)
        if type_filter:
            query["type"] = type_filter
        doc = await self.outbox.find_one_and_update(
            query,
            {"$set": {"status": "sending", "leaseUntil": now + timedelta(seconds=lease_s),
                      "updatedAt": now},
             "$inc": {"attempts": 1}},
            sort=[("nextAttemptAt", ASCENDING), ("createdAt", ASCENDING)],
            return_document=_AFTER)
        return OutboxItem.model_validate(_strip(doc)) if doc else None

    async def _outbox_set(self, id: str, sets: dict[str, Any]) -> None:
        await self.outbox.update_one(
            {"_id": id}, {"$set": {**sets, "leaseUntil": None, "updatedAt": self.clock()}})

    async def outbox_done(self, id: str, result: dict) -> None:
        await self._outbox_set(id, {"status": "sent", "result": result})

    async def outbox_retry(self, id: str, error: str, next_attempt_at: datetime, *,
                           waiting: bool = False) -> None:
        """Queue the item again; ``waiting`` counts the attempt as a wait (for its create,
        for new credentials), which does not use up the item's attempt budget."""
        update: dict[str, Any] = {"$set": {"status": "queued", "error": error, "nextAttemptAt": next_attempt_at,
                                           "leaseUntil": None, "updatedAt": self.clock()}}
        if waiting:
            update["$inc"] = {"waits": 1}
        await self.outbox.update_one({"_id": id}, update)

    async def outbox_failures(self, id: str) -> int:
        """Attempts of the item that failed or are in hand, not counting those that waited."""
        doc = await self.outbox.find_one({"_id": id}, {"attempts": 1, "waits": 1})
        return (doc.get("attempts") or 0) - (doc.get("waits") or 0) if doc else 0

    async def outbox_dead(self, id: str, error: str) -> None:
        await self._outbox_set(id, {"status": "dead", "error": error})

    async def find_outbox(self, customer_id: str, idempotency_key: str) -> OutboxItem | None:
        doc = await self.outbox.find_one({"customerId": customer_id,
                                          "idempotencyKey": idempotency_key})
        return OutboxItem.model_validate(_strip(doc)) if doc else None

    async def get_outbox(self, id: str) -> OutboxItem | None:
        doc = await self.outbox.find_one({"_id": id})
        return OutboxItem.model_validate(_strip(doc)) if doc else None

    async def outbox_counts(self, customer_id: str | None = None) -> dict[str, int]:
        match = {} if customer_id is None else {"customerId": customer_id}
        return await self._counts(self.outbox, match, _OUTBOX_STATES)

    async def list_outbox(self, *, status: str | None = None, limit: int = 100) -> list[OutboxItem]:
        query = {} if status is None else {"status": status}
        cursor = self.outbox.find(query).sort([("createdAt", DESCENDING), ("_id", DESCENDING)])
        docs = await cursor.limit(limit).to_list(limit)
        return [OutboxItem.model_validate(_strip(d)) for d in docs]

    # -- leases ---------------------------------------------------------------------------
    async def acquire_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self.clock()
        try:
            await self.leases.find_one_and_update(
                {"_id": name, "$or": [{"expiresAt": {"$lt": now}}, {"owner": owner}]},
                {"$set": {"owner": owner, "expiresAt": now + timedelta(seconds=ttl_s)}},
                upsert=True, return_document=_AFTER)
            return True
        except DuplicateKeyError:
            return False  # the lease exists, unexpired, with another owner

    async def renew_lease(self, name: str, owner: str, ttl_s: float) -> bool:
        result = await self.leases.update_one(
            {"_id": name, "owner": owner},
            {"$set": {"expiresAt": self.clock() + timedelta(seconds=ttl_s)}})
        return result.matched_count == 1

    async def release_lease(self, name: str, owner: str) -> None:
        await self.leases.delete_one({"_id": name, "owner": owner})

    async def release_all(self, owner: str) -> int:
        return (await self.leases.delete_many({"owner": owner})).deleted_count

    async def lease_holder(self, name: str) -> str | None:
        doc = await self.leases.find_one({"_id": name, "expiresAt": {"$gte": self.clock()}})
        return doc["owner"] if doc else None

