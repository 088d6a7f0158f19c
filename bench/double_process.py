"""The counting double in a process of its own, as MongoDB runs beside syncd in a deployment.

``RemoteClient`` answers the same motor calls as :class:`bench.mongo_double.Client`, each one
an exchange over a Unix socket with ``python -m bench.double_process``, which holds the real
double: its documents, indexes and counts live in that process, so the daemon's memory and
CPU figures hold the daemon's own work plus what a driver does (encoding a call, decoding the
answer, waiting for it), not the database's. Calls are pickled (a driver BSON-encodes them),
answered concurrently in the order the double's own event loop runs them, and the double's
exceptions (``DuplicateKeyError``, ``BulkWriteError``, ``ClientBulkWriteException``,
``NotImplementedError``) come back as themselves.

The probes of ``bench/server.py`` run a function of the ``bench`` package inside the double's
process with :meth:`RemoteClient.run` (the in-process ``Client.run`` calls it in place), so
they read the double directly and add no counted round-trips. The child exits when its parent
does (its standard input closes).
"""

from __future__ import annotations

import argparse
import asyncio
import copyreg
import importlib
import itertools
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from pymongo.errors import ClientBulkWriteException

from bench.common import ROOT

_HEADER = struct.Struct("!I")
_PROTOCOL = pickle.HIGHEST_PROTOCOL
# pymongo's other errors pickle as they are; this one's constructor takes two arguments.
copyreg.pickle(ClientBulkWriteException, lambda exc: (ClientBulkWriteException, (exc.details, exc.verbose)))


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def _read(reader: asyncio.StreamReader) -> Any:
    size, = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


# -- the daemon's side ----------------------------------------------------------------------
class RemoteCursor:
    """``find``'s cursor: ``sort``, ``limit`` and ``skip`` are kept and sent with the query
    when the documents are first asked for (one exchange, as the double answers a find)."""

    def __init__(self, collection: RemoteCollection, query: Any, projection: Any):
        self._collection, self._query, self._projection = collection, query, projection
        self._chain: list[tuple[str, tuple[Any, ...]]] = []
        self._docs: list[dict[str, Any]] | None = None
        self._iter: Any = None

    def sort(self, key: Any, direction: int | None = None) -> RemoteCursor:
        self._chain.append(("sort", (key, direction)))
        return self

    def limit(self, n: int) -> RemoteCursor:
        self._chain.append(("limit", (n,)))
        return self

    def skip(self, n: int) -> RemoteCursor:
        self._chain.append(("skip", (n,)))
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        if self._docs is None:
            self._docs = await self._collection._call("find", self._query, self._projection, self._chain)
        return self._docs if length is None else self._docs[:length]

    def __aiter__(self) -> RemoteCursor:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._iter is None:
            self._iter = iter(await self.to_list())
        try:
            return next(self._iter)
        except StopIteration:
            raise StopAsyncIteration from None


class RemoteRows:
    """``aggregate``'s rows, asked for on the first iteration."""

    def __init__(self, collection: RemoteCollection, pipeline: Any):
        self._collection, self._pipeline = collection, pipeline
        self._iter: Any = None

    def __aiter__(self) -> RemoteRows:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._iter is None:
            self._iter = iter(await self._collection._call("aggregate", self._pipeline))
        try:
            return next(self._iter)
        except StopIteration:
            raise StopAsyncIteration from None


class RemoteCollection:
    def __init__(self, client: RemoteClient, db: str, name: str):
        self._client, self._target, self.name = client, ("c", db, name), name

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._client._exchange(self._target, method, args, kwargs)

    def find(self, query: Any = None, projection: Any = None) -> RemoteCursor:
        return RemoteCursor(self, query, projection)

    def aggregate(self, pipeline: Any) -> RemoteRows:
        return RemoteRows(self, pipeline)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._call(method, *args, **kwargs)
        return call


class RemoteDatabase:
    def __init__(self, client: RemoteClient, name: str):
        self._client, self.name = client, name
        self._collections: dict[str, RemoteCollection] = {}

    def __getitem__(self, name: str) -> RemoteCollection:
        if name not in self._collections:
            self._collections[name] = RemoteCollection(self._client, self.name, name)
        return self._collections[name]

    async def command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await self._client._exchange(("d", self.name), "command", (name, *args), kwargs)


class RemoteClient:
    """The double in a child process (:meth:`spawn`), reached over one Unix socket that every
    call of the daemon shares, answers matched by number."""

    def __init__(self, process: subprocess.Popen[bytes], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, folder: tempfile.TemporaryDirectory[str]):
        self.process, self._reader, self._writer, self._folder = process, reader, writer, folder
        self._numbers = itertools.count()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._dbs: dict[str, RemoteDatabase] = {}
        self._answers = asyncio.get_running_loop().create_task(self._dispatch())

    @classmethod
    async def spawn(cls, **options: Any) -> RemoteClient:
        """Start the double's process (``options`` as :class:`~bench.mongo_double.Client`
        takes them) and connect to it."""
        folder = tempfile.TemporaryDirectory(prefix="syncd-double-")
        path = os.path.join(folder.name, "double.sock")
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.double_process", "--socket", path, "--options", json.dumps(options)],
            cwd=ROOT, stdin=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 30
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(path, limit=2**26)
                return cls(process, reader, writer, folder)
            except (FileNotFoundError, ConnectionRefusedError):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    folder.cleanup()
                    raise RuntimeError("the double's process did not start") from None
                await asyncio.sleep(0.02)

    async def _dispatch(self) -> None:
        try:
            while True:
                number, ok, value = await _read(self._reader)
                waiter = self._waiting.pop(number)
                if not waiter.done():
                    waiter.set_result(value) if ok else waiter.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"the double's process went away: {exc!r}"))

    def _exchange(self, target: tuple[str, ...], method: str, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        number = next(self._numbers)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[number] = waiter
        self._writer.write(_frame((number, target, method, args, kwargs)))
        return waiter

    def __getitem__(self, name: str) -> RemoteDatabase:
        if name not in self._dbs:
            self._dbs[name] = RemoteDatabase(self, name)
        return self._dbs[name]

    def get_default_database(self, default: str = "syncd") -> RemoteDatabase:
        return self[default]

    async def bulk_write(self, models: list[Any], **options: Any) -> Any:
        return await self._exchange(("k",), "bulk_write", (models,), options)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(client, *args)`` in the double's process (awaited there if it is a coroutine
        function); ``fn`` is a module-level function of the ``bench`` package."""
        return await self._exchange(("fn",), f"{fn.__module__}:{fn.__qualname__}", args, {})

    def close(self) -> None:
        self._answers.cancel()
        self._writer.close()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._folder.cleanup()


# -- the double's side ----------------------------------------------------------------------
async def _answer(double: Any, target: tuple[str, ...], method: str, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
    kind = target[0]
    if kind == "fn":
        module, _, name = method.partition(":")
        if module.split(".")[0] != "bench":
            raise PermissionError(f"{method} is not a function of the bench package")
        result = getattr(importlib.import_module(module), name)(double, *args)
        return await result if asyncio.iscoroutine(result) else result
    if kind == "k":
        return await double.bulk_write(*args, **kwargs)
    db = double[target[1]]
    if kind == "d":
        return await getattr(db, method)(*args, **kwargs)
    collection = db[target[2]]
    if method == "find":
        query, projection, chain = args
        cursor = collection.find(query, projection)
        for step, step_args in chain:
            cursor = getattr(cursor, step)(*step_args)
        return await cursor.to_list(None)
    if method == "aggregate":
        return [row async for row in collection.aggregate(*args)]
    return await getattr(collection, method)(*args, **kwargs)


async def _serve_one(double: Any, message: Any, writer: asyncio.StreamWriter) -> None:
    number, target, method, args, kwargs = message
    try:
        reply = (number, True, await _answer(double, target, method, args, kwargs))
    except Exception as exc:  # the caller gets the double's exception as its own
        reply = (number, False, exc)
    try:
        writer.write(_frame(reply))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        writer.write(_frame((number, False, RuntimeError(f"unpicklable answer: {exc!r}"))))


async def _serve(path: str, options: dict[str, Any]) -> None:
    from bench.mongo_double import Client

    double = Client(discard=frozenset(options.get("discard", ())), timestamps=bool(options.get("timestamps")))
    tasks: set[asyncio.Task[None]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                task = asyncio.create_task(_serve_one(double, await _read(reader), writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_unix_server(connection, path, limit=2**26)
    async with server:
        await server.serve_forever()


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--options", default="{}")
    args = parser.parse_args()
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    try:
        import uvloop
        uvloop.run(_serve(args.socket, json.loads(args.options)))
    except ImportError:
        asyncio.run(_serve(args.socket, json.loads(args.options)))


if __name__ == "__main__":
    cli()
