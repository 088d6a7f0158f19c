"""A Facebook Page's Messenger inbox as a simulator (Meta's page-messaging simulator with
Messenger's ids, names and window error)."""

from __future__ import annotations

from typing import Any

from syncd.providers.meta.sim import GraphError, MetaDelivery
from syncd.providers.meta.sim_pages import PageMessagingSimulator, _encode


class MessengerSimulator(PageMessagingSimulator):
    """A Facebook Page's Messenger inbox (``object: "page"``)."""

    platform = "messenger"
    webhook_object = "page"
    window_subcode = 2018278
    name_key = "name"
    user_tokens_limited = True

    def __init__(self, *, page_id: str = "104619381298765", page_name: str = "Sim Bakery", **kwargs: Any):
        super().__init__(account_id=page_id, account_name=page_name, **kwargs)

    def trial_credentials(self) -> dict[str, Any]:
        return {"pageAccessToken": min(self.valid_tokens), "pageId": self.account_id,
                "appSecret": self.app_secret, "verifyToken": self.verify_token}

    def _new_mid(self) -> str:
        return "m_" + _encode(f"sim-{self.account_id}-{next(self._seq):08d}")

    def _new_conversation_id(self) -> str:
        return f"t_{10**14 + next(self._seq)}"

    def _party(self, user_id: str | None) -> dict[str, Any]:
        person = self.people[user_id or ""]
        return {"name": person.name, "email": f"{person.id}@facebook.com", "id": person.id}

    def _managed_page(self) -> dict[str, Any]:
        return {"category": "Bakery", "name": self.account_name, "id": self.account_id}

    def _check_messaging_type(self, body: dict[str, Any]) -> None:
        if not body.get("messaging_type"):
            raise GraphError(100, "(#100) The parameter messaging_type is required")
        super()._check_messaging_type(body)

    def read(self, user_id: str, *, watermark_ms: int | None = None, mid: str | None = None) -> MetaDelivery:
        """The person read the conversation up to ``watermark_ms`` (``message_reads``)."""
        watermark = watermark_ms if watermark_ms is not None else self._now_ms()
        self._mark_read(user_id, watermark)
        return self._envelope({**self._pair(user_id, False), "timestamp": self._now_ms(),
                               "read": {"watermark": watermark}})


SIMULATOR = MessengerSimulator
