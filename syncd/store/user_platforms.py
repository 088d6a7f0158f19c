"""User platforms: the customer's own accounts on each platform (who "self" is)."""

from __future__ import annotations

from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from syncd.models import UserPlatform, new_id
from syncd.store.documents import StoreBase, _strip
from syncd.universal import UserData


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

    async def upsert_users(self, customer_id: str, platform: str, integration_id: str,
                           users: list[UserData]) -> None:
        """The users a platform listed, in one bulk write: names and emails are refreshed;
        ``isSelf`` is only ever set, never cleared (the platform's list does not know which
        of them is the customer's own account; ``identify`` and ``PUT /user-platforms`` do)."""
        ops = []
        for user in users:
            key = {"customerId": customer_id, "platform": platform, "externalUserId": user.external_user_id}
            sets: dict[str, Any] = {k: v for k, v in (("integrationId", integration_id), ("displayName", user.display_name),
                                      ("externalEmail", user.external_email)) if v is not None}
            if user.is_self:
                sets["isSelf"] = True
            uid = new_id()
            on_insert = {"_id": uid, "id": uid, **({} if user.is_self else {"isSelf": False})}
            ops.append(UpdateOne(key, {"$set": sets, "$setOnInsert": on_insert}, upsert=True))
        if not ops:
            return
        try:
            await self.user_platforms.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            # Two writers inserting one user meet the unique index: the other's insert stands,
            # and this write's values reach it on the next listing.
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

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
