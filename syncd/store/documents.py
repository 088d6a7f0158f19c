"""What every part of the store shares: documents stored as camelCase with ``_id = id``,
the collections and clock of :class:`StoreBase`, and the upsert that survives a racing insert."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from syncd.models import Integration

#: How many times a write that lost a race is merged again before giving up.
MAX_ROUNDS = 5
_AFTER = ReturnDocument.AFTER
_DUP_KEY = 11000


class StoreConflict(RuntimeError):
    """A write kept losing races with other writers for ``MAX_ROUNDS`` rounds."""


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "rev", "credentials")}



def _doc(model: Any) -> dict[str, Any]:
    doc = model.doc()
    doc["_id"] = doc["id"]
    return doc



class StoreBase:
    """The state every part of :class:`syncd.store.Store` works on, set by ``Store.__init__``;
    the parts reach each other's methods through ``self`` (they only make sense composed)."""

    client: Any
    db: Any
    _fernet: Fernet | MultiFernet
    clock: Callable[[], datetime]
    integrations: Any
    chats: Any
    messages: Any
    user_platforms: Any
    sync_status: Any
    inbox: Any
    outbox: Any
    leases: Any
    _integration_cache: OrderedDict[str, tuple[float, Integration]]
    _across_collections: bool | None

    async def _upsert(self, collection: Any, key: dict, update: dict) -> dict:
        """``find_one_and_update`` with upsert; two racing inserts of one key meet the unique
        index, and the loser simply updates the winner's document."""
        try:
            return await collection.find_one_and_update(key, update, upsert=True,
                                                        return_document=_AFTER)
        except DuplicateKeyError:
            return await collection.find_one_and_update(key, update, upsert=True,
                                                        return_document=_AFTER)
