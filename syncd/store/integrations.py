"""Integrations (docs/architecture.md §2): a short-lived read cache, and credentials encrypted at rest."""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.fernet import InvalidToken
from pymongo import ASCENDING

from syncd.models import Integration
from syncd.store.documents import _AFTER, StoreBase, _doc, _strip

_INTEGRATION_FIELDS = ("status", "status_reason", "settings", "name")
#: How long an integration read is reused. Every webhook request and every inbox batch needs
#: its integration, which rarely changes: writes through this store refresh the copy at once,
#: other replicas' writes are seen within this many seconds.
INTEGRATION_CACHE_S = 2.0


def _own_copy(integration: Integration) -> Integration:
    """A copy the caller may change without changing the cached one (settings is the only
    mutable field; pydantic's deep copy costs more than the read it saves)."""
    copy = integration.model_copy()
    copy.settings = json.loads(json.dumps(integration.settings)) if integration.settings else {}
    return copy


class IntegrationsStore(StoreBase):
    """The ``integrations`` collection; credentials are read and written on their own."""

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
