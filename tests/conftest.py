"""Fixtures shared by every test suite."""

from __future__ import annotations

import pytest

from syncd.store import Store


@pytest.fixture
async def store():
    """A fresh in-memory store (mongomock) with all its indexes, one per test."""
    store = await Store.connect("mongomock://", secret_key="test-secret-key")
    yield store
    await store.close()
