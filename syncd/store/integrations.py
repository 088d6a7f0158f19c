"""Integrations (docs/architecture.md §2): a short-lived read cache, and credentials encrypted at rest."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from cryptography.fernet import InvalidToken
from pymongo import ASCENDING

from syncd.models import Integration
from syncd.store.documents import _AFTER, StoreBase, _doc, _strip

_INTEGRATION_FIELDS = ("status", "status_reason", "settings", "name", "paused_at", "disconnect")
#: How long an integration read is reused. Every webhook request and every inbox batch needs
#: its integration, which rarely changes: writes through this store refresh the copy at once,
#: other replicas' writes are seen within this many seconds.
INTEGRATION_CACHE_S = 2.0
#: A listing of thousands of integrations gives the event loop a turn this often while it
#: validates them, so polls and webhooks due meanwhile are not held up.
YIELD_EVERY = 500


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
        await self.integrations.insert_one({**_doc(integration), "credentials": self._encrypt(credentials),
                                            "credentialsVersion": 1})

    def _remember(self, id: str, integration: Integration | None) -> Integration | None:
        cache = self._integration_cache
        cache.pop(id, None)
        if integration is None:
            return None
        now = time.monotonic()
        cache[id] = (now, integration)
        # Expired copies are dropped as new ones come in: each integration is read again only
        # at its next poll, and 10,000 stale copies were ~2 KB each of the daemon's memory.
        while (oldest := next(iter(cache))) != id and now - cache[oldest][0] >= INTEGRATION_CACHE_S:
            del cache[oldest]
        return _own_copy(integration)

    async def get_integration(self, id: str) -> Integration | None:
        cached = self._integration_cache.get(id)
        if cached is not None and time.monotonic() - cached[0] < INTEGRATION_CACHE_S:
            return _own_copy(cached[1])
        doc = await self.integrations.find_one({"_id": id}, {"credentials": 0})
        return self._remember(id, Integration.model_validate(_strip(doc)) if doc else None)

    async def list_integrations(self, *, customer_id: str | None = None,
                                platform: str | None = None,
                                status: str | tuple[str, ...] | None = None,
                                include_deleted: bool = False) -> list[Integration]:
        query: dict[str, Any] = {}
        if customer_id is not None:
            query["customerId"] = customer_id
        if platform is not None:
            query["platform"] = platform
        if isinstance(status, tuple):
            query["status"] = {"$in": list(status)}
        elif status is not None:
            query["status"] = status
        elif not include_deleted:
            query["status"] = {"$ne": "deleted"}
        cursor = self.integrations.find(query, {"credentials": 0})
        cursor = cursor.sort([("createdAt", ASCENDING), ("_id", ASCENDING)])
        found: list[Integration] = []
        async for doc in cursor:
            found.append(Integration.model_validate(_strip(doc)))
            if len(found) % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # 10,000 validated at once held the event loop ~0.2 s
        return found

    async def update_integration(self, id: str, **fields: Any) -> Integration | None:
        unknown = set(fields) - set(_INTEGRATION_FIELDS)
        if unknown:
            raise TypeError(f"integration fields cannot be updated: {sorted(unknown)}")
        sets = {Integration.model_fields[k].alias or k: v.doc() if hasattr(v, "doc") else v
                for k, v in fields.items()}
        sets["updatedAt"] = self.clock()
        doc = await self.integrations.find_one_and_update(
            {"_id": id}, {"$set": sets}, projection={"credentials": 0}, return_document=_AFTER)
        return self._remember(id, Integration.model_validate(_strip(doc)) if doc else None)

    async def get_credentials(self, id: str) -> dict:
        return (await self.get_versioned_credentials(id))[0]

    async def get_versioned_credentials(self, id: str) -> tuple[dict, int]:
        """The credentials and their version: a write made from them names that version (see
        :meth:`set_credentials`)."""
        doc = await self.integrations.find_one({"_id": id}, {"credentials": 1, "credentialsVersion": 1})
        if doc is None:
            raise KeyError(f"integration {id} not found")
        try:
            credentials = json.loads(self._fernet.decrypt(doc["credentials"].encode()))
        except (InvalidToken, KeyError, AttributeError) as exc:
            raise ValueError(f"credentials of integration {id} cannot be decrypted with the "
                             "configured secret key") from exc
        return credentials, int(doc.get("credentialsVersion") or 0)

    async def set_credentials(self, id: str, credentials: dict, *, based_on: int | None = None) -> int | None:
        """Store new credentials; returns their version. ``based_on`` fences the write: it is
        refused (``None``) unless the stored credentials are still that version, so a token
        refreshed from credentials that were replaced meanwhile never overwrites the new ones.
        Without it (an operator's new credentials) the write always wins."""
        self._integration_cache.pop(id, None)
        query: dict[str, Any] = {"_id": id}
        if based_on is not None:
            # Integrations stored before versions existed are version 0 (no field).
            query["credentialsVersion"] = based_on if based_on else {"$in": [0, None]}
        doc = await self.integrations.find_one_and_update(
            query, {"$set": {"credentials": self._encrypt(credentials), "updatedAt": self.clock()},
                    "$inc": {"credentialsVersion": 1}},
            projection={"credentialsVersion": 1}, return_document=_AFTER)
        if doc is not None:
            return int(doc["credentialsVersion"])
        if based_on is not None and await self.integrations.count_documents({"_id": id}, limit=1):
            return None
        raise KeyError(f"integration {id} not found")

    async def wipe_credentials(self, id: str) -> None:
        """Remove the stored credentials for good (a deleted integration keeps none)."""
        self._integration_cache.pop(id, None)
        await self.integrations.update_one({"_id": id}, {"$unset": {"credentials": ""},
                                                         "$set": {"updatedAt": self.clock()}})

    async def has_credentials(self, id: str) -> bool:
        return await self.integrations.find_one({"_id": id, "credentials": {"$exists": True}},
                                                {"_id": 1}) is not None

    async def due_disconnects(self, now: Any) -> list[Integration]:
        """Deleted integrations whose disconnect at the platform is due for another attempt."""
        cursor = self.integrations.find({"status": "deleted", "disconnect.state": "pending",
                                         "disconnect.nextAttemptAt": {"$lte": now}}, {"credentials": 0})
        return [Integration.model_validate(_strip(d)) async for d in cursor]
