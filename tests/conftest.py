"""Fixtures shared by every test suite.

``SYNCD_TEST_STORE=double python -m pytest ...`` runs every in-memory store (each
``mongomock://`` one, the testbeds' included) on the benchmarks' counting double
(``bench/mongo_double.py``) instead of mongomock: it answers like a MongoDB 8.0 server and
yields to the event loop on every call as motor does, which mongomock never does, so races
that only a real server would show come out. Off by default (the default suite stays as it is).
"""

from __future__ import annotations

import gc
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


def pytest_collection_finish(session: pytest.Session) -> None:
    """The collected tests (half a million objects) live as long as the session: frozen out of
    the collector, they are not walked again by every full collection, which would otherwise
    stall each test's event loop for up to a second as they add up."""
    gc.collect()
    gc.freeze()


def forget_apps() -> None:
    """Clear FastAPI's module-level caches keyed by endpoint and dependency callables (4,096
    each in 0.165): they keep every app a test builds alive, with its engine and mappings, until
    a worker holds a million objects and each full garbage collection stalls its event loop for
    a second or two. A daemon builds one app; a test worker builds hundreds."""
    from fastapi.dependencies import models

    for name in dir(models):
        cache = getattr(models, name)
        if name.endswith("_cached") and hasattr(cache, "cache_clear"):
            cache.cache_clear()


@pytest.fixture(autouse=True)
def _forget_each_tests_apps():
    yield
    forget_apps()


@pytest.fixture
def forget_fastapi_apps():
    """What runs after every test, for a test that checks it frees what the test built."""
    return forget_apps


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
