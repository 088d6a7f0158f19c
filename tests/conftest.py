"""Fixtures shared by every test suite.

``SYNCD_TEST_STORE=double python -m pytest ...`` runs every in-memory store (each
``mongomock://`` one, the testbeds' included) on the benchmarks' counting double
(``bench/mongo_double.py``) instead of mongomock: it answers like a MongoDB 8.0 server and
yields to the event loop on every call as motor does, which mongomock never does, so races
that only a real server would show come out. Off by default (the default suite stays as it is).
"""

from __future__ import annotations

import os

import pytest

from syncd.store import Store

EVERY_STORE_ON_THE_DOUBLE = os.environ.get("SYNCD_TEST_STORE", "mongomock") == "double"


async def make_double_store(secret_key: str | None = None, cls: type[Store] = Store) -> Store:
    """A store on a fresh counting double (a MongoDB 8.0 server that yields on every call)."""
    from bench.mongo_double import Client
    from syncd.store import _fernet

    client = Client()
    store = cls(client, client["syncd"], _fernet(secret_key or "test-secret-key"))
    await store.ensure_indexes()
    return store


@pytest.fixture
def double_store():
    """``await double_store()``: a store on the counting double, for a test or a testbed
    (``Testbed.start(store=...)``) that must see the event loop turn on every MongoDB call."""
    return make_double_store


@pytest.fixture(autouse=EVERY_STORE_ON_THE_DOUBLE)
def _mongomock_on_the_double(monkeypatch):
    """With ``SYNCD_TEST_STORE=double``: every ``mongomock://`` store is the double instead."""
    connect = Store.connect.__func__

    async def connect_on_the_double(cls, uri: str, *, secret_key: str | None = None) -> Store:
        if uri.startswith("mongomock://"):
            return await make_double_store(secret_key, cls)
        return await connect(cls, uri, secret_key=secret_key)

    monkeypatch.setattr(Store, "connect", classmethod(connect_on_the_double))


@pytest.fixture
async def store():
    """A fresh in-memory store (mongomock) with all its indexes, one per test."""
    store = await Store.connect("mongomock://", secret_key="test-secret-key")
    yield store
    await store.close()
