"""User platforms: the customer's own accounts on each platform (who "self" is)."""

from __future__ import annotations

from syncd.models import UserPlatform
from syncd.store.documents import StoreBase, _strip


class UserPlatformsStore(StoreBase):
    """The ``user_platforms`` collection, keyed by customer, platform and platform user id."""

    async def upsert_user_platform(self, up: UserPlatform) -> UserPlatform:
        doc = up.doc()
        key = {"customerId": up.customer_id, "platform": up.platform,
               "externalUserId": up.external_user_id}
        sets = {k: v for k, v in doc.items() if k not in key and k != "id" and v is not None}
        update = {"$set": sets, "$setOnInsert": {"_id": up.id, "id": up.id}}
        saved = await self._upsert(self.user_platforms, key, update)
        return UserPlatform.model_validate(_strip(saved))

    async def list_user_platforms(self, customer_id: str,
                                  platform: str | None = None) -> list[UserPlatform]:
        query = {"customerId": customer_id}
        if platform is not None:
            query["platform"] = platform
        cursor = self.user_platforms.find(query).sort([("platform", 1), ("externalUserId", 1)])
        return [UserPlatform.model_validate(_strip(d)) async for d in cursor]

    async def self_identities(self, customer_id: str, platform: str) -> tuple[set[str], set[str]]:
        ids: set[str] = set()
        emails: set[str] = set()
        query = {"customerId": customer_id, "platform": platform, "isSelf": True}
        async for doc in self.user_platforms.find(query, {"externalUserId": 1, "externalEmail": 1}):
            ids.add(doc["externalUserId"])
            if doc.get("externalEmail"):
                emails.add(doc["externalEmail"].lower())
        return ids, emails
