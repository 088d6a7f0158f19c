"""The MongoDB variants of the fault scenarios need a real server: ``SYNCD_TEST_MONGODB_URI``."""

from __future__ import annotations

import os
import uuid

import pytest

from bench.faults.processes import database_uri, drop_database

URI = os.environ.get("SYNCD_TEST_MONGODB_URI")


@pytest.fixture
def mongodb_uri():
    """A database of its own on the test server, dropped afterwards."""
    if not URI:
        pytest.skip("SYNCD_TEST_MONGODB_URI is not set: no MongoDB server to kill syncd processes against")
    uri = database_uri(URI, f"syncd_faults_{uuid.uuid4().hex[:12]}")
    yield uri
    drop_database(uri)
