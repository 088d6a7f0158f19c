"""MessageBird SMS: what the manifest cannot say. The Messages list filters one side of a
conversation at a time (``recipient`` or ``originator``), and its items are sent or received
messages whose counterpart sits in a different field. So the chats are the counterparts found
in the list, and a chat's history is its sent side, then its received side, under one cursor
(``sent:<offset>``, then ``received:<offset>``). Paths, filters and paging stay in the manifest.
"""

from __future__ import annotations

from syncd.kit.declarative import ManifestConnector
from syncd.universal import ChatData, HistoryPage


class MessageBirdConnector(ManifestConnector):
    async def list_chats(self) -> list[ChatData]:
        chats: dict[str, ChatData] = {}
        for record, parent in await self.walk_records("list_chats", self.required("list_chats"), self.scope()):
            section = "sentChat" if record.get("direction") == "mt" else "receivedChat"
            chat = self.map_as("chat", section, record, {"parent": parent})
            chats.setdefault(chat.external_chat_id, chat)
        return list(chats.values())

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        side, _, offset = (cursor or "sent:").partition(":")
        spec = self.required("history") if side == "sent" else self.named("historyReceived")
        scope = self.scope(chat=chat.model_dump(by_alias=True))
        messages, after = await self.page(f"history_{side}", spec, "message", scope, offset or None)
        if after is not None:
            return HistoryPage(messages, f"{side}:{after}")
        return HistoryPage(messages, "received:" if side == "sent" else None)


CONNECTOR = MessageBirdConnector
