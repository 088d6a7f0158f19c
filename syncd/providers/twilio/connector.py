"""What Twilio's manifest cannot say: the account's own number (looked up once from
``phoneNumberSid``, then used as ``From`` and as a history filter), and a chat's history as two
legs of the Messages list -- messages to the number from the counterpart, then from the number
to the counterpart -- checkpointed as one cursor ``<leg>|<next_page_uri>``."""

from __future__ import annotations

from typing import Any

from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import PermanentError
from syncd.universal import ChatData, HistoryPage, OutgoingMessage, SendResult

LEGS = ("in", "out")


class TwilioConnector(ManifestConnector):
    _number: str | None = None

    async def number(self) -> str:
        if self._number is None:
            found = await self.identify()
            if not found:
                raise PermanentError("the phone number SID names no number")
            self._number = found[0].external_user_id
        return self._number

    def scope(self, **more: Any) -> dict[str, Any]:
        return super().scope(number=self._number, **more)

    @staticmethod
    def _leg(name: str, number: str, counterpart: str | None) -> dict[str, Any]:
        return {"to": number, "from": counterpart} if name == "in" else {"to": counterpart, "from": number}

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        number = await self.number()
        leg, _, inner = (cursor or "in|").partition("|")
        if leg not in LEGS:
            raise PermanentError(f"not a history cursor of this platform: {leg!r}")
        scope = self.scope(chat=chat.model_dump(by_alias=True), leg=self._leg(leg, number, chat.external_chat_id))
        messages, after = await self.page("history", self.required("history"), "message", scope, inner or None)
        if after is not None:
            return HistoryPage(messages, f"{leg}|{after}")
        return HistoryPage(messages, "out|" if leg == "in" else None)

    async def list_chats(self) -> list[ChatData]:
        """Every counterpart the number has exchanged messages with (Twilio lists no chats)."""
        number, spec, seen = await self.number(), self.required("history"), dict[str, ChatData]()
        for leg, side in (("in", "from"), ("out", "to")):
            scope = self.scope(chat={"externalChatId": ""}, leg=self._leg(leg, number, None))
            for record, _ in await self.walk_records("list_chats", spec, scope):
                other = record.get(side)
                if other and other not in seen:
                    seen[other] = ChatData(external_chat_id=other, name=other, kind="dm")
        return list(seen.values())

    async def send(self, message: OutgoingMessage) -> SendResult:
        await self.number()
        return await super().send(message)


CONNECTOR = TwilioConnector
