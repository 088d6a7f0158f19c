"""A counting in-memory stand-in for MongoDB, for the benchmarks only.

No MongoDB server can run on the benchmark machines, and mongomock scans every document on
every operation, so neither can say what syncd costs a real deployment. This double answers
the motor calls :class:`syncd.store.Store` makes, with hash indexes so that it stays cheap
at benchmark sizes, and counts every call as one **round-trip** (what a real server charges:
a network exchange), split into reads and writes. Documents go through a BSON-like copy
(aware datetimes become naive UTC, truncated to milliseconds) so the store sees what a real
server would hand back.

It keeps the semantics the store relies on: unique and partial unique indexes
(``DuplicateKeyError``, ``BulkWriteError`` with per-operation indexes), upserts, the update
operators ``$set $setOnInsert $inc $max $min $unset``, the query operators
``$in $nin $ne $lt $lte $gt $gte $type $exists $or $and``, sorts and limits. It answers
``hello`` as a MongoDB 8.0 server does (wire version 25) and takes that version's
client-level ``bulk_write`` across collections (``InsertOne``/``UpdateOne`` with a
namespace, ordered or not, non-verbose results, ``ClientBulkWriteException`` with indexes
into the whole list): one call, one round-trip. Anything else raises
``NotImplementedError``, so a benchmark never measures a silently wrong answer.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import InsertOne, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
)
from pymongo.results import ClientBulkWriteResult

READS = frozenset({"find", "find_one", "aggregate", "command", "count_documents"})
#: What ``hello`` answers: a MongoDB 8.0 primary (wire version 25 brings the client-level
#: ``bulkWrite`` command).
HELLO = {"isWritablePrimary": True, "minWireVersion": 0, "maxWireVersion": 25,
         "maxBsonObjectSize": 16 * 1024 * 1024, "maxMessageSizeBytes": 48_000_000,
         "maxWriteBatchSize": 100_000, "ok": 1.0}
_MISSING = object()
_MAX_KEYS = 1000


# -- BSON-like values ---------------------------------------------------------------------
_SCALARS = frozenset({str, int, float, bool, type(None), ObjectId, bytes})


def _date(value: datetime) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None, microsecond=value.microsecond - value.microsecond % 1000)


def _bson(value: Any) -> Any:
    """A private copy as a round-trip through BSON would give it back."""
    kind = type(value)
    if kind is dict:
        out = {}
        for key, item in value.items():
            item_kind = type(item)
            if item_kind in _SCALARS:
                out[key] = item
            elif item_kind is datetime:
                out[key] = _date(item)
            else:
                out[key] = _bson(item)
        return out
    if kind in _SCALARS:
        return value
    if kind is list or kind is tuple:
        return [v if type(v) in _SCALARS else _bson(v) for v in value]
    if kind is datetime:
        return _date(value)
    if isinstance(value, dict):
        return {k: _bson(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return _date(value)
    return value


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: (v if type(v) in _SCALARS else _copy(v)) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else _copy(v) for v in value]
    return value


def _rank(value: Any) -> tuple[int, Any]:
    """BSON comparison order: null < numbers < strings < objects < arrays < ids < bools < dates."""
    if value is None or value is _MISSING:
        return (1, 0)
    if isinstance(value, bool):
        return (8, value)
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, dict):
        return (4, str(sorted(value.items())))
    if isinstance(value, list):
        return (5, str(value))
    if isinstance(value, ObjectId):
        return (7, str(value))
    if isinstance(value, datetime):
        return (9, value)
    return (10, str(value))


def _get(doc: dict[str, Any], path: str) -> Any:
    if "." not in path:
        return doc.get(path, _MISSING)
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return ("d", tuple((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("l", tuple(_hashable(v) for v in value))
    return None if value is _MISSING else value


# -- matching -----------------------------------------------------------------------------
def _eq(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return value is None or value is _MISSING
    if isinstance(value, list) and not isinstance(wanted, list):
        return wanted in value
    return value is not _MISSING and value == wanted


def _compare(value: Any, op: str, arg: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    left, right = _rank(value), _rank(arg)
    if left[0] != right[0]:
        return False  # comparisons never cross BSON types
    if op == "$lt":
        return left[1] < right[1]
    if op == "$lte":
        return left[1] <= right[1]
    if op == "$gt":
        return left[1] > right[1]
    return left[1] >= right[1]


_TYPES = {"string": str, "date": datetime, "object": dict, "array": list, "bool": bool}


def _within(value: Any, options: list[Any]) -> bool:
    if value is _MISSING or value is None:
        return None in options
    if type(value) in _SCALARS or type(value) is datetime:
        return value in options
    return any(_eq(value, a) for a in options)


def _condition(value: Any, cond: dict[str, Any]) -> bool:
    for op, arg in cond.items():
        if op in ("$lt", "$lte", "$gt", "$gte"):
            if not _compare(value, op, arg):
                return False
        elif op == "$in":
            if not _within(value, arg):
                return False
        elif op == "$nin":
            if _within(value, arg):
                return False
        elif op == "$ne":
            if _eq(value, arg):
                return False
        elif op == "$type":
            if arg not in _TYPES or not isinstance(value, _TYPES[arg]) or (
                    arg != "bool" and isinstance(value, bool)):
                return False
        elif op == "$exists":
            if (value is not _MISSING) != bool(arg):
                return False
        else:
            raise NotImplementedError(f"query operator {op}")
    return True


def matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, cond in query.items():
        if key == "$or":
            if not any(matches(doc, c) for c in cond):
                return False
        elif key == "$and":
            if not all(matches(doc, c) for c in cond):
                return False
        elif key.startswith("$"):
            raise NotImplementedError(f"query operator {key}")
        elif isinstance(cond, dict) and cond and next(iter(cond)).startswith("$"):
            if not _condition(_get(doc, key), cond):
                return False
        elif not _eq(_get(doc, key), cond):
            return False
    return True


def _equalities(query: dict[str, Any]) -> dict[str, list[Any]]:
    """Fields the query pins to one value (or a short ``$in`` list of values)."""
    out: dict[str, list[Any]] = {}
    for key, cond in query.items():
        if key.startswith("$"):
            continue
        if isinstance(cond, dict) and cond and next(iter(cond)).startswith("$"):
            if set(cond) == {"$in"} and all(not isinstance(v, (dict, list)) for v in cond["$in"]):
                out[key] = list(cond["$in"])
        elif not isinstance(cond, (dict, list)) and cond is not None:
            out[key] = [cond]
    return out


# -- updates ------------------------------------------------------------------------------
def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    if "." not in path:
        doc[path] = value
        return
    *parents, leaf = path.split(".")
    node = doc
    for part in parents:
        # Copied on the way down: the previous version of the document shares its subdocuments.
        child = node.get(part)
        node[part] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[leaf] = value


def _apply_update(doc: dict[str, Any], update: dict[str, Any], inserting: bool) -> None:
    for op, fields in update.items():
        if op == "$setOnInsert":
            if inserting:
                for path, value in fields.items():
                    _set_path(doc, path, _bson(value))
        elif op == "$set":
            for path, value in fields.items():
                _set_path(doc, path, _bson(value))
        elif op == "$inc":
            for path, value in fields.items():
                current = _get(doc, path)
                _set_path(doc, path, (0 if current in (_MISSING, None) else current) + value)
        elif op in ("$max", "$min"):
            for path, value in fields.items():
                value = _bson(value)
                current = _get(doc, path)
                if current is _MISSING or current is None or (
                        _rank(value) > _rank(current) if op == "$max" else _rank(value) < _rank(current)):
                    _set_path(doc, path, value)
        elif op == "$unset":
            for path in fields:
                *parents, leaf = path.split(".")
                node: Any = doc
                for part in parents:
                    child = node.get(part)
                    if not isinstance(child, dict):
                        break
                    node[part] = node = dict(child)
                else:
                    node.pop(leaf, None)
        else:
            raise NotImplementedError(f"update operator {op}")


def _client_op(op: InsertOne | UpdateOne) -> dict[str, Any]:
    """The operation as the driver sends it in a ``bulkWrite`` command (what a write error's
    ``op`` shows)."""
    if isinstance(op, InsertOne):
        return {"insert": 0, "document": op._doc}
    return {"update": 0, "filter": op._filter, "updateMods": op._doc, "multi": False}


def _touched(update: dict[str, Any]) -> set[str]:
    return {path.split(".")[0] for fields in update.values() for path in fields}


# -- results ------------------------------------------------------------------------------
class _Result:
    def __init__(self, **counts: Any):
        self.__dict__.update(counts)
        self.acknowledged = True


class _Index:
    """A hash index on the first field and on the whole key (the shapes syncd queries by);
    non-unique compound indexes also keep their entries in order, so sorted queries with a
    limit (claims, a chat's latest messages) read a few entries, not a bucket."""

    def __init__(self, name: str, fields: list[str], unique: bool, partial: dict[str, Any] | None):
        self.name, self.fields, self.unique, self.partial = name, fields, unique, partial
        self.roots = {f.split(".")[0] for f in fields} | set(partial or ())
        #: Whole-key lookups serve unique keys and two-field keys (the compound keys syncd
        #: queries in full); a longer non-unique key is read through its first field or order.
        self.full: dict[tuple, dict[Any, None]] | None = \
            defaultdict(dict) if unique or len(fields) <= 2 else None
        self.first: dict[Any, dict[Any, None]] = defaultdict(dict)
        self.ordered: dict[Any, list[tuple]] | None = \
            defaultdict(list) if len(fields) > 1 and not unique else None
        self._flat = not any("." in f for f in fields)
        self._string_only = None
        if partial and len(partial) == 1:
            (field, cond), = partial.items()
            if cond == {"$type": "string"} and "." not in field:
                self._string_only = field

    def _entry(self, doc: dict[str, Any]) -> tuple:
        # In the compound key's order, as a server's index keeps it: a claim sorted by the
        # key's later fields too reads one entry, not every tie on the second field.
        return (*(_rank(_get(doc, f)) for f in self.fields[1:]), _rank(doc["_id"]), doc["_id"])

    def key(self, doc: dict[str, Any]) -> tuple | None:
        if self._string_only is not None:
            if type(doc.get(self._string_only)) is not str:
                return None
        elif self.partial is not None and not matches(doc, self.partial):
            return None
        if self._flat:
            values = tuple(map(doc.get, self.fields))
            for value in values:
                kind = type(value)
                if kind is dict or kind is list:
                    break
            else:
                return values
        return tuple(_hashable(_get(doc, f)) for f in self.fields)

    def add(self, doc: dict[str, Any], key: Any = _MISSING) -> None:
        if key is _MISSING:
            key = self.key(doc)
        if key is not None:
            if self.full is not None:
                self.full[key][doc["_id"]] = None
            self.first[key[0]][doc["_id"]] = None
            if self.ordered is not None:
                entries, entry = self.ordered[key[0]], self._entry(doc)
                if not entries or entries[-1] <= entry:
                    entries.append(entry)  # the usual case: keys arrive in order
                else:
                    bisect.insort(entries, entry)

    def remove(self, doc: dict[str, Any]) -> None:
        key = self.key(doc)
        if key is None:
            return
        for bucket, k in ((self.full, key), (self.first, key[0])):
            if bucket is None:
                continue
            ids = bucket.get(k)
            if ids is not None:
                ids.pop(doc["_id"], None)
                if not ids:
                    del bucket[k]
        if self.ordered is not None:
            entries = self.ordered.get(key[0])
            if entries is not None:
                entry = self._entry(doc)
                at = bisect.bisect_left(entries, entry)
                if at < len(entries) and entries[at] == entry:
                    del entries[at]
                if not entries:
                    del self.ordered[key[0]]

    def conflict(self, doc: dict[str, Any], key: Any = _MISSING) -> Any:
        """The id of another document holding ``doc``'s unique key, if any."""
        if not self.unique:
            return None
        if key is _MISSING:
            key = self.key(doc)
        if key is None:
            return None
        holders = self.full.get(key)
        if not holders:
            return None
        return next((i for i in holders if i != doc["_id"]), None)

    def candidates(self, eq: dict[str, list[Any]]) -> list[Any] | None:
        if self.full is not None and all(f in eq for f in self.fields):
            combos = 1
            for f in self.fields:
                combos *= len(eq[f])
            if combos <= _MAX_KEYS:
                out: list[Any] = []
                for combo in itertools.product(*(eq[f] for f in self.fields)):
                    out.extend(self.full.get(tuple(combo), ()))
                return out
        if self.fields[0] in eq:
            out = []
            for value in eq[self.fields[0]]:
                out.extend(self.first.get(value, ()))
            return out
        return None


class Cursor:
    def __init__(self, collection: Collection, query: dict[str, Any], projection: Any):
        self._collection, self._query, self._projection = collection, query, projection
        self._sort: list[tuple[str, int]] | None = None
        self._limit = 0
        self._skip = 0
        self._docs: list[dict[str, Any]] | None = None

    def sort(self, key: Any, direction: int | None = None) -> Cursor:
        self._sort = [(key, direction or 1)] if isinstance(key, str) else list(key)
        return self

    def limit(self, n: int) -> Cursor:
        self._limit = n
        return self

    def skip(self, n: int) -> Cursor:
        self._skip = n
        return self

    def _run(self) -> list[dict[str, Any]]:
        if self._docs is None:
            self._collection._count("find")
            docs = self._collection._select(self._query, self._sort, self._limit, self._skip)
            self._docs = [self._collection._out(d, self._projection) for d in docs]
        return self._docs

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        if self._docs is None:
            await asyncio.sleep(0)
        docs = self._run()
        return docs if length is None else docs[:length]

    def __aiter__(self) -> Cursor:
        self._iter = iter(self._run())
        self._yielded = False
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self._yielded:
            self._yielded = True
            await asyncio.sleep(0)
        try:
            return next(self._iter)
        except StopIteration:
            raise StopAsyncIteration from None


class _Rows:
    def __init__(self, rows: list[dict[str, Any]]):
        self._iter = iter(rows)

    def __aiter__(self) -> _Rows:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return next(self._iter)
        except StopIteration:
            raise StopAsyncIteration from None


class Collection:
    def __init__(self, db: Database, name: str):
        self.db, self.name = db, name
        self.docs: dict[Any, dict[str, Any]] = {}
        self.indexes: dict[str, _Index] = {}
        self._indexed: set[str] = {"_id"}
        #: Documents are counted, not kept (``Client.discard``); reads find nothing.
        self.discard = False
        self.discarded = 0
        #: ``externalMessageId`` -> monotonic time of its first write (``Client.timestamps``).
        self.written_at: dict[str, float] | None = None

    # -- bookkeeping ----------------------------------------------------------------------
    def _count(self, op: str) -> None:
        self.db.client.calls[(self.name, op)] += 1

    async def _roundtrip(self, op: str) -> None:
        """Count one round-trip and give the event loop a turn, as waiting for a server does."""
        self._count(op)
        await asyncio.sleep(0)

    def _out(self, doc: dict[str, Any], projection: Any = None) -> dict[str, Any]:
        if not projection:
            return _copy(doc)
        included = {k for k, v in projection.items() if v}
        if included:
            keys = included | ({"_id"} if projection.get("_id", 1) else set())
            return {k: _copy(v) for k, v in doc.items() if k in keys}
        excluded = {k for k, v in projection.items() if not v}
        return {k: _copy(v) for k, v in doc.items() if k not in excluded}

    def _add(self, doc: dict[str, Any]) -> None:
        if self.discard:
            self.discarded += 1
            return
        if doc["_id"] in self.docs:
            raise DuplicateKeyError(f"E11000 duplicate key error collection: {self.name} index: _id_", code=11000)
        keys = [(index, index.key(doc)) for index in self.indexes.values()]
        for index, key in keys:
            if index.conflict(doc, key) is not None:
                raise DuplicateKeyError(f"E11000 duplicate key error collection: {self.name} index: {index.name}",
                                        code=11000)
        self.docs[doc["_id"]] = doc
        for index, key in keys:
            index.add(doc, key)
        if self.written_at is not None and isinstance(doc.get("externalMessageId"), str):
            self.written_at.setdefault(doc["externalMessageId"], time.monotonic())

    def _replace(self, old: dict[str, Any], new: dict[str, Any], touched: set[str]) -> None:
        reindex = [index for index in self.indexes.values() if touched & index.roots]
        for index in reindex:
            if index.conflict(new) is not None:
                raise DuplicateKeyError(f"E11000 duplicate key error collection: {self.name} index: {index.name}",
                                        code=11000)
        for index in reindex:
            index.remove(old)
        self.docs[new["_id"]] = new
        for index in reindex:
            index.add(new)
        if self.written_at is not None and isinstance(new.get("externalMessageId"), str):
            self.written_at.setdefault(new["externalMessageId"], time.monotonic())

    def _remove(self, doc: dict[str, Any]) -> None:
        for index in self.indexes.values():
            index.remove(doc)
        del self.docs[doc["_id"]]

    def _candidates(self, query: dict[str, Any]) -> Iterable[dict[str, Any]]:
        eq = _equalities(query)
        if "_id" in eq:
            return [self.docs[i] for i in eq["_id"] if i in self.docs]
        best: list[Any] | None = None
        for index in self.indexes.values():
            if index.partial is not None:
                continue
            found = index.candidates(eq)
            if found is not None and (best is None or len(found) < len(best)):
                best = found
        if best is None and set(query) == {"$or"}:
            merged: dict[Any, dict[str, Any]] = {}
            for branch in query["$or"]:
                branch_docs = self._candidates(branch)
                if branch_docs is self.docs.values():
                    return self.docs.values()
                merged.update((d["_id"], d) for d in branch_docs)
            return merged.values()
        if best is None:
            # Partial indexes answer only queries that repeat their filter.
            for index in self.indexes.values():
                if index.partial is not None and all(query.get(k) is not None for k in index.fields):
                    found = index.candidates(eq)
                    if found is not None:
                        best = found
                        break
        if best is None:
            return self.docs.values()
        return [self.docs[i] for i in dict.fromkeys(best) if i in self.docs]

    def _in_order(self, query: dict[str, Any], sort: list[tuple[str, int]], enough: int) -> list[dict[str, Any]] | None:
        """Matches of a sorted, limited query read from an ordered index: stops once it holds
        ``enough`` and every tie with the last of them (the caller sorts those exactly)."""
        eq = _equalities(query)
        field, direction = sort[0]
        for index in self.indexes.values():
            if index.ordered is None or index.partial is not None or index.fields[1] != field:
                continue
            values = eq.get(index.fields[0])
            if values is None or len(values) != 1:
                continue
            entries = index.ordered.get(_hashable(values[0]), [])
            # The sort fields the index orders by (a tie on all of them is a tie for the sort).
            covered = 1
            while covered < len(sort) and covered + 1 < len(index.fields) \
                    and sort[covered] == (index.fields[covered + 1], direction):
                covered += 1
            bound = query.get(field)
            stop = None
            if direction > 0 and isinstance(bound, dict):
                limit = bound.get("$lte", bound.get("$lt"))
                if limit is not None:
                    stop = _rank(limit)
            found: list[dict[str, Any]] = []
            last = None
            for entry in (entries if direction > 0 else reversed(entries)):
                rank, doc_id = entry[:covered], entry[-1]
                if stop is not None and rank[0] > stop:
                    break
                if len(found) >= enough and rank != last:
                    break
                doc = self.docs.get(doc_id)
                if doc is not None and matches(doc, query):
                    found.append(doc)
                    last = rank
            return found
        return None

    def _in_order_or(self, query: dict[str, Any], sort: list[tuple[str, int]], enough: int
                     ) -> list[dict[str, Any]] | None:
        """An ``$or`` read branch by branch from ordered indexes and merged, as MongoDB's
        SORT_MERGE plan does (each branch's first ``enough`` hold the union's first ``enough``)."""
        rest = {k: v for k, v in query.items() if k != "$or"}
        merged: dict[Any, dict[str, Any]] = {}
        for branch in query["$or"]:
            if set(branch) & set(rest):
                return None
            found = self._in_order({**rest, **branch}, sort, enough)
            if found is None:
                return None
            merged.update((d["_id"], d) for d in found)
        return list(merged.values())

    def _select(self, query: dict[str, Any], sort: list[tuple[str, int]] | None = None, limit: int = 0,
                skip: int = 0) -> list[dict[str, Any]]:
        query = _bson(query)
        found = None
        if sort and limit:
            found = self._in_order(query, sort, limit + skip)
            if found is None and isinstance(query.get("$or"), list):
                found = self._in_order_or(query, sort, limit + skip)
        if found is None:
            found = [d for d in self._candidates(query) if matches(d, query)]
        if sort:
            for field, direction in reversed(sort):
                found.sort(key=lambda d, f=field: _rank(_get(d, f)), reverse=direction < 0)
        if skip:
            found = found[skip:]
        if limit:
            found = found[:limit]
        return found

    # -- motor API ------------------------------------------------------------------------
    async def create_index(self, keys: Any, name: str | None = None, unique: bool = False,
                           partialFilterExpression: dict[str, Any] | None = None, **_: Any) -> str:
        await self._roundtrip("create_index")
        fields = [keys] if isinstance(keys, str) else [k for k, _ in keys]
        name = name or "_".join(fields)
        if name not in self.indexes:
            index = _Index(name, fields, unique, partialFilterExpression)
            for doc in self.docs.values():
                index.add(doc)
            self.indexes[name] = index
            self._indexed.update(f.split(".")[0] for f in fields)
            if partialFilterExpression:
                self._indexed.update(partialFilterExpression)
        return name

    async def drop_index(self, name: str) -> None:
        await self._roundtrip("drop_index")
        if name not in self.indexes:
            raise OperationFailure(f"index not found with name [{name}]", code=27)
        del self.indexes[name]  # ``_indexed`` may keep its fields: a superset only costs upkeep

    async def index_information(self) -> dict[str, Any]:
        return {i.name: {"key": [(f, 1) for f in i.fields], "unique": i.unique} for i in self.indexes.values()}

    async def insert_one(self, doc: dict[str, Any]) -> _Result:
        await self._roundtrip("insert_one")
        stored = _bson(doc)
        if "_id" not in stored:
            stored["_id"] = ObjectId()
        self._add(stored)
        return _Result(inserted_id=stored["_id"])

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = True) -> _Result:
        await self._roundtrip("insert_many")
        result = await self._bulk([InsertOne(d) for d in docs], ordered)
        return _Result(inserted_ids=[], inserted_count=result.inserted_count)

    async def find_one(self, query: dict[str, Any] | None = None, projection: Any = None,
                       sort: Any = None) -> dict[str, Any] | None:
        await self._roundtrip("find_one")
        docs = self._select(query or {}, sort, 1)
        return self._out(docs[0], projection) if docs else None

    def find(self, query: dict[str, Any] | None = None, projection: Any = None) -> Cursor:
        return Cursor(self, query or {}, projection)

    async def count_documents(self, query: dict[str, Any]) -> int:
        await self._roundtrip("count_documents")
        return len(self._select(query))

    def _upsert_doc(self, query: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        doc = {k: _bson(v) for k, v in query.items()
               if not k.startswith("$") and not (isinstance(v, dict) and v and next(iter(v)).startswith("$"))}
        _apply_update(doc, update, inserting=True)
        if "_id" not in doc:
            doc["_id"] = ObjectId()
        return doc

    def _update_doc(self, doc: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        if not any(k.startswith("$") for k in update):
            raise NotImplementedError("replacement documents")
        new = dict(doc)  # subdocuments are copied where the update writes into them
        _apply_update(new, update, inserting=False)
        self._replace(doc, new, _touched(update))
        return new

    async def find_one_and_update(self, query: dict[str, Any], update: dict[str, Any], projection: Any = None,
                                  sort: Any = None, upsert: bool = False, return_document: bool = False,
                                  **_: Any) -> dict[str, Any] | None:
        await self._roundtrip("find_one_and_update")
        docs = self._select(query, sort, 1)
        if docs:
            before = docs[0]
            after = self._update_doc(before, update)
            return self._out(after if return_document else before, projection)
        if not upsert:
            return None
        doc = self._upsert_doc(query, update)
        self._add(doc)
        return self._out(doc, projection) if return_document else None

    async def update_one(self, query: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> _Result:
        await self._roundtrip("update_one")
        return self._update(query, update, upsert, many=False)

    async def update_many(self, query: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> _Result:
        await self._roundtrip("update_many")
        return self._update(query, update, upsert, many=True)

    def _update(self, query: dict[str, Any], update: dict[str, Any], upsert: bool, many: bool) -> _Result:
        docs = self._select(query, None, 0 if many else 1)
        for doc in docs:
            self._update_doc(doc, update)
        if not docs and upsert:
            doc = self._upsert_doc(query, update)
            self._add(doc)
            return _Result(matched_count=0, modified_count=0, upserted_id=doc["_id"])
        return _Result(matched_count=len(docs), modified_count=len(docs), upserted_id=None)

    async def delete_one(self, query: dict[str, Any]) -> _Result:
        await self._roundtrip("delete_one")
        docs = self._select(query, None, 1)
        for doc in docs:
            self._remove(doc)
        return _Result(deleted_count=len(docs))

    async def delete_many(self, query: dict[str, Any]) -> _Result:
        await self._roundtrip("delete_many")
        docs = self._select(query)
        for doc in docs:
            self._remove(doc)
        return _Result(deleted_count=len(docs))

    async def bulk_write(self, ops: list[Any], ordered: bool = True) -> _Result:
        await self._roundtrip("bulk_write")
        return await self._bulk(ops, ordered)

    async def _bulk(self, ops: list[Any], ordered: bool) -> _Result:
        inserted = matched = upserted = 0
        errors: list[dict[str, Any]] = []
        for i, op in enumerate(ops):
            try:
                if isinstance(op, InsertOne):
                    stored = _bson(op._doc)
                    if "_id" not in stored:
                        stored["_id"] = ObjectId()
                    self._add(stored)
                    inserted += 1
                elif isinstance(op, UpdateOne):
                    result = self._update(op._filter, op._doc, bool(op._upsert), many=False)
                    matched += result.matched_count
                    upserted += result.upserted_id is not None
                else:
                    raise NotImplementedError(f"bulk operation {type(op).__name__}")
            except DuplicateKeyError as exc:
                errors.append({"index": i, "code": 11000, "errmsg": str(exc)})
                if ordered:
                    break
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": inserted, "nMatched": matched,
                                  "nModified": matched, "nUpserted": upserted, "writeConcernErrors": []})
        return _Result(inserted_count=inserted, matched_count=matched, modified_count=matched,
                       upserted_count=upserted)

    def aggregate(self, pipeline: list[dict[str, Any]]) -> _Rows:
        self._count("aggregate")
        docs: list[dict[str, Any]] = list(self.docs.values())
        for stage in pipeline:
            (name, spec), = stage.items()
            if name == "$match":
                query = _bson(spec)
                docs = [d for d in self._candidates(query) if matches(d, query)]
            elif name == "$group" and set(spec) == {"_id", "n"} and spec["n"] == {"$sum": 1}:
                counts = Counter(_get(d, spec["_id"][1:]) for d in docs)
                docs = [{"_id": None if k is _MISSING else k, "n": n} for k, n in counts.items()]
            else:
                raise NotImplementedError(f"aggregation stage {name}")
        return _Rows(docs)


class Database:
    def __init__(self, client: Client, name: str):
        self.client, self.name = client, name
        self._collections: dict[str, Collection] = {}

    def __getitem__(self, name: str) -> Collection:
        if name not in self._collections:
            collection = Collection(self, name)
            collection.discard = name in self.client.discard
            if name == "messages" and self.client.timestamps:
                collection.written_at = {}
            self._collections[name] = collection
        return self._collections[name]

    async def command(self, name: str, *_: Any, **__: Any) -> dict[str, Any]:
        if name not in ("ping", "hello"):
            raise NotImplementedError(f"command {name}")
        self.client.calls[("$cmd", name)] += 1
        await asyncio.sleep(0)
        return dict(HELLO) if name == "hello" else {"ok": 1.0}


class Client:
    """``Client()["syncd"]`` is a :class:`Database`; ``calls`` counts round-trips.

    ``discard`` names collections whose documents are counted and dropped: the memory
    benchmark discards messages, because a real deployment holds them (and their indexes) in
    the MongoDB process, not in syncd's. ``timestamps`` records when each message was first
    written, for the latency benchmark.
    """

    def __init__(self, *, discard: frozenset[str] = frozenset(), timestamps: bool = False):
        self.discard = discard
        self.timestamps = timestamps
        self.calls: Counter[tuple[str, str]] = Counter()
        self._dbs: dict[str, Database] = {}

    def __getitem__(self, name: str) -> Database:
        if name not in self._dbs:
            self._dbs[name] = Database(self, name)
        return self._dbs[name]

    def get_default_database(self, default: str = "syncd") -> Database:
        return self[default]

    def close(self) -> None:
        pass

    async def run(self, fn: Any, *args: Any) -> Any:
        """``fn(self, *args)``, awaited if it is a coroutine function: how the benchmark's
        probes read the double, here or in its own process (``bench/double_process.py``)."""
        result = fn(self, *args)
        return await result if asyncio.iscoroutine(result) else result

    async def bulk_write(self, models: list[Any], session: Any = None, ordered: bool = True,
                         verbose_results: bool = False, bypass_document_validation: Any = None,
                         comment: Any = None, let: Any = None, write_concern: Any = None) -> ClientBulkWriteResult:
        """MongoDB 8.0's client-level bulk write: operations on any collections, one round-trip.
        Ordered, it stops at the first failed operation; the exception's ``writeErrors``
        carry ``idx``, the operation's position in ``models``, as the driver reports it."""
        if verbose_results or any(v is not None for v in (session, bypass_document_validation, comment, let,
                                                          write_concern)):
            raise NotImplementedError("client bulk_write options other than ordered")
        if not models:
            raise InvalidOperation("No operations to execute")
        targets = [self._namespace(op) for op in models]
        self.calls[("client", "bulk_write")] += 1
        await asyncio.sleep(0)
        full: dict[str, Any] = {"anySuccessful": False, "error": None, "writeErrors": [], "writeConcernErrors": [],
                                "nInserted": 0, "nUpserted": 0, "nMatched": 0, "nModified": 0, "nDeleted": 0,
                                "insertResults": {}, "updateResults": {}, "deleteResults": {}}
        for i, (op, collection) in enumerate(zip(models, targets)):
            try:
                if isinstance(op, InsertOne):
                    stored = _bson(op._doc)
                    stored.setdefault("_id", ObjectId())
                    collection._add(stored)
                    full["nInserted"] += 1
                else:
                    result = collection._update(op._filter, op._doc, bool(op._upsert), many=False)
                    full["nMatched"] += result.matched_count
                    full["nModified"] += result.modified_count
                    full["nUpserted"] += result.upserted_id is not None
                full["anySuccessful"] = True
            except DuplicateKeyError as exc:
                full["writeErrors"].append({"ok": 0.0, "idx": i, "code": 11000, "errmsg": str(exc),
                                            "op": _client_op(op)})
                if ordered:
                    break
        if full["writeErrors"]:
            raise ClientBulkWriteException(full, False)
        return ClientBulkWriteResult(full, acknowledged=True, has_verbose_results=False)

    def _namespace(self, op: Any) -> Collection:
        if not isinstance(op, (InsertOne, UpdateOne)):
            raise NotImplementedError(f"client bulk operation {type(op).__name__}")
        if not op._namespace:
            raise InvalidOperation("MongoClient.bulk_write requires a namespace to be provided "
                                   "for each write operation")
        if isinstance(op, UpdateOne) and (op._collation or op._array_filters or op._hint
                                          or getattr(op, "_sort", None)):
            raise NotImplementedError("update options in a client bulk write")
        db, _, collection = op._namespace.partition(".")
        return self[db][collection]

    # -- counting -------------------------------------------------------------------------
    def snapshot(self) -> Counter[tuple[str, str]]:
        return Counter(self.calls)

    @staticmethod
    def totals(calls: Counter[tuple[str, str]]) -> dict[str, int]:
        """``{"reads", "writes", "total"}`` of a (difference of) snapshot(s)."""
        reads = sum(n for (c, op), n in calls.items() if op in READS or c == "$cmd")
        writes = sum(n for (c, op), n in calls.items() if op not in READS and c != "$cmd"
                     and op != "create_index")
        return {"reads": reads, "writes": writes, "total": reads + writes}

    def messages_written_at(self) -> dict[str, float]:
        return self["syncd"]["messages"].written_at or {}
