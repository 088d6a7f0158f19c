"""``upsert_messages``: a page of platform messages merged into the stored ones in rounds
(one read, one bulk write, retries for the keys a concurrent writer touched), with the
page's checkpoint in the same round-trip where the server can write across collections."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, ClientBulkWriteException

from syncd.merge import ChangeKind, merge, normalize
from syncd.models import Message, SyncStatus
from syncd.store.documents import _DUP_KEY, MAX_ROUNDS, StoreBase, StoreConflict, _strip

#: Which ``WriteResult`` count a merge outcome adds to (anything else that changed: updated).
_COUNTED: dict[str | None, str] = {"created": "inserted", "deleted": "deleted"}


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


#: The field that marks a message whose app callback is not queued yet (its value: the kind).
PENDING_CALLBACK = "callbackPending"

#: Builds the caller's sync status (an import's page cursor and counts) from what a write of
#: its page did, so the status can travel in the same round-trip as the messages.
Checkpoint = Callable[[WriteResult], SyncStatus]


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
    # The callback this change owes the app, written with the change itself: a process that
    # dies before queueing it leaves the mark, and the sweep queues it (``callback_pending``).
    owed = {PENDING_CALLBACK: kind} if message is not None else {}
    if existing is None:
        assert current is not None
        document = {**current, "_id": current["id"], "rev": 0, **owed}
        return _Plan(InsertOne(document), {}, counts, kind, message, document)
    if not sets:
        return _Plan(None, {}, counts, kind, message)
    sets.update(owed)
    rev = existing.get("rev")
    sets["rev"] = (rev or 0) + 1
    op = UpdateOne({"_id": existing["_id"], "rev": rev}, {"$set": sets})
    return _Plan(op, sets, counts, kind, message)


class UpsertsStore(StoreBase):
    """Platform pages into ``messages``, and their checkpoint into ``sync_status``."""

    if TYPE_CHECKING:
        # Defined by the other parts of ``Store`` (``__init__.py``, ``sync_status.py``).
        async def writes_across_collections(self) -> bool: ...
        def _checkpoint_update(self, status: SyncStatus) -> tuple[dict[str, Any], dict[str, Any]]: ...
        async def _checkpoint_missed(self, status: SyncStatus) -> bool: ...

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

    async def owed_callbacks(self, changed_before: datetime, limit: int = 500) -> list[tuple[str, Message]]:
        """Messages whose change was written but whose app callback was never queued (the
        process died in between), as (kind, message); only those last changed before
        ``changed_before``, so a write whose callbacks are being queued right now is left alone."""
        query = {PENDING_CALLBACK: {"$exists": True}, "updatedAt": {"$lt": changed_before}}
        return [(doc[PENDING_CALLBACK], Message.model_validate(_strip(doc)))
                async for doc in self.messages.find(query).limit(limit)]

    async def callbacks_queued(self, message_ids: Iterable[str]) -> None:
        """The callbacks of these messages are in the outbox: their marks go."""
        ids = sorted(set(message_ids))
        if ids:
            await self.messages.update_many({"_id": {"$in": ids}, PENDING_CALLBACK: {"$exists": True}},
                                            {"$unset": {PENDING_CALLBACK: ""}})

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
            # pymongo types them as WriteError; they are the server's error documents.
            errors = cast(list[dict[str, Any]], exc.write_errors or [])
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
