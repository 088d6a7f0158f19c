"""What X's manifest cannot say.

- Account Activity delivers v1.1 ``message_create`` events, which name a sender and a recipient
  but no conversation: a 1:1 conversation's id is ``"{smaller id}-{larger id}"`` (numeric
  order of snowflakes), as API v2 names it, so webhook and imported messages land in one chat.
  The sender's name comes from the delivery's ``users`` map.
- A 1:1 message is sent to the other participant (``/with/:participant_id``), the id of the
  conversation that is not the account's own; an access token is ``"{user id}-..."``. A group
  conversation (one snowflake) is written to by its id.
"""

from __future__ import annotations

from typing import Any

from syncd.kit.declarative import ManifestConnector
from syncd.universal import Changes, ChatData, OutgoingMessage, SendResult, WebhookRequest


def conversation_id(a: str, b: str) -> str:
    low, high = sorted((str(a), str(b)), key=int)
    return f"{low}-{high}"


class TwitterConnector(ManifestConnector):
    def own_id(self) -> str:
        return str(self.credentials.model_dump(by_alias=True)["accessTokenKey"]).partition("-")[0]

    def scope(self, **more: Any) -> dict[str, Any]:
        chat = more.get("chat")
        if isinstance(chat, dict) and "-" in str(chat.get("externalChatId") or ""):
            parties = str(chat["externalChatId"]).split("-")
            others = [p for p in parties if p != self.own_id()]
            # Talking to oneself is a conversation "{id}-{id}".
            more = {"participantId": others[0] if others else parties[0], **more}
        return super().scope(**more)

    async def list_chats(self) -> list[ChatData]:
        unique: dict[str, ChatData] = {}
        for chat in await super().list_chats():
            unique.setdefault(chat.external_chat_id, chat)
        return list(unique.values())

    async def send(self, message: OutgoingMessage) -> SendResult:
        if "-" in message.chat.external_chat_id:
            return await super().send(message)
        source = message.as_source()
        spec = self.named("sendToConversation")
        _, body = await self.call("send", spec, self.scope(message=source, chat=source["chat"]),
                                  body=self.mapping.section("send", source))
        data = self.mapping.section("sendResult", body if isinstance(body, dict) else {})
        return SendResult(str(data["externalMessageId"]))

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        body = self.parse_body(request)
        users = body.get("users") or {} if isinstance(body, dict) else {}
        for event in (body.get("direct_message_events") or []) if isinstance(body, dict) else []:
            create = event.get("message_create") if isinstance(event, dict) else None
            if not isinstance(create, dict):
                continue
            sender = str(create.get("sender_id") or "")
            recipient = str((create.get("target") or {}).get("recipient_id") or "")
            if sender.isdigit() and recipient.isdigit():
                event["dm_conversation_id"] = conversation_id(sender, recipient)
            event["sender"] = users.get(sender) or {"id": sender}
        return self.changes_of(body)


CONNECTOR = TwitterConnector
