"""An Instagram professional account's direct messages as a simulator (Meta's page-messaging
simulator with Instagram's ids, usernames and ``messaging_seen`` reads)."""

from __future__ import annotations

from typing import Any

from syncd.providers.meta.sim import MetaDelivery
from syncd.providers.meta.sim_pages import PageMessagingSimulator, _encode


class InstagramSimulator(PageMessagingSimulator):
    """An Instagram professional account's direct messages (``object: "instagram"``)."""

    platform = "instagram"
    webhook_object = "instagram"
    window_subcode = 2534022
    name_key = "username"

    def __init__(self, *, ig_user_id: str = "17841400000000001", username: str = "sim.bakery",
                 page_id: str = "104619381298765", page_name: str = "Sim Bakery", **kwargs: Any):
        super().__init__(account_id=ig_user_id, account_name=username, **kwargs)
        #: The Facebook Page the account is linked to (what ``GET /me/accounts`` lists).
        self.page_id, self.page_name = page_id, page_name

    def trial_credentials(self) -> dict[str, Any]:
        return {"accessToken": min(self.valid_tokens), "igUserId": self.account_id,
                "appSecret": self.app_secret, "verifyToken": self.verify_token}

    def _managed_page(self) -> dict[str, Any]:
        return {"name": self.page_name, "id": self.page_id, "instagram_business_account": {"id": self.account_id}}

    def _new_mid(self) -> str:
        return _encode(f"ig_message_item:1:IGMessageThread:{self.account_id}:{next(self._seq):019d}")

    def _new_conversation_id(self) -> str:
        return _encode(f"ig_conversation:{self.account_id}:{next(self._seq)}")

    def _party(self, user_id: str | None) -> dict[str, Any]:
        person = self.people[user_id or ""]
        return {"username": person.name, "id": person.id}

    def read(self, user_id: str, *, watermark_ms: int | None = None, mid: str | None = None) -> MetaDelivery:
        """The person saw a message (``messaging_seen``: ``read: {mid}``); defaults to the
        account's latest message to them."""
        if mid is None:
            mid = next(m.mid for m in self._thread(user_id) if m.from_account)
        self._mark_read(user_id, self.messages[mid].created_ms)
        return self._envelope({**self._pair(user_id, False), "timestamp": self._now_ms(), "read": {"mid": mid}})


SIMULATOR = InstagramSimulator
