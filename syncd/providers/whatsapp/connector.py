"""WhatsApp Business Cloud API: one chat per customer phone (``wa_id``), webhooks only.

Transport quirks kept here (shape lives in ``mappings/whatsapp.yaml``; Meta's signature,
handshake and error classification in ``meta.py``):

- there is no history or conversation API: ``list_chats`` is empty, imports read nothing and
  every message exists in syncd only because its webhook was stored. A delivery is acknowledged
  only after it is in the durable inbox, and Meta retries unacknowledged ones (the same body),
  so the delivery id is a digest of the body;
- one app may serve several business numbers: only changes whose ``metadata.phone_number_id``
  is the integration's are kept (a delivery for other numbers alone is acknowledged and
  dropped);
- the business's own sends never come back as messages, only as ``statuses`` keyed by the
  wamid the send returned; those update the stored message's ``deliveryState``. A status for
  a wamid syncd has not stored yet becomes an ids-only outbound message: the status may be
  processed before the outbox records the send's wamid, and the store then folds it into the
  app's message (one document); Meta never resends a status, so dropping it would lose it;
- customers' edits and deletes arrive as ``type: edit`` / ``type: revoke`` messages naming the
  original wamid; the business itself cannot edit or delete (``can_edit = can_delete = False``);
- free-form text is allowed only within 24 hours of the customer's last message: error 131047
  is permanent (the outbox dead-letters it at once; the message shows ``failed``);
- throttling (130429, 131056, 4/17/32/613, 80007) arrives as 400/200 bodies as well as 429.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from syncd.kit.connector import Connector, body_digest
from syncd.kit.errors import PermanentError
from syncd.kit.http import ProviderHttp, RetryPolicy, bearer
from syncd.providers import meta
from syncd.universal import (
    Changes,
    ChatData,
    HistoryPage,
    MessageData,
    OutgoingMessage,
    PollResult,
    SendResult,
    UserData,
    WebhookAccepted,
    WebhookRequest,
)

WEBHOOK_OBJECT = "whatsapp_business_account"
#: Re-engagement: free-form messages only within 24 h of the customer's last message.
WINDOW_CLOSED = "131047"
WINDOW_MESSAGE = "outside the 24-hour customer service window; use a template"
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")


class WhatsAppCredentials(BaseModel):
    """A system-user (or temporary) access token, the business phone number id, and the app's
    secret and verify token for webhooks. Never printed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", hide_input_in_errors=True
    )

    access_token: str = Field(repr=False, min_length=1)
    phone_number_id: str = Field(min_length=1, max_length=64)
    app_secret: str = Field(repr=False, min_length=1)
    verify_token: str = Field(repr=False, min_length=1)

    @field_validator("phone_number_id", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        # A number id given as a JSON number stays exact: ints are arbitrary precision.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not value.isdigit():
            raise ValueError("the phone number id is the numeric id from WhatsApp Manager, not the phone number")
        return value


def classify(response: httpx.Response) -> None:
    """Meta's classification, with the 24-hour window error made explicit."""
    try:
        meta.classify(response)
    except PermanentError as exc:
        if exc.code == WINDOW_CLOSED:
            raise PermanentError(f"{WINDOW_MESSAGE} (131047)", status=exc.status, code=exc.code) from None
        raise


def _attachments(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The media object of an image/document/audio/video/sticker message (metadata only: the
    bytes need a separate, authenticated media download)."""
    media = message.get(message.get("type") or "")
    if message.get("type") not in MEDIA_TYPES or not isinstance(media, dict):
        return None
    return [{"externalId": str(media["id"]) if media.get("id") is not None else None,
             "mimeType": media.get("mime_type"), "name": media.get("filename"), "url": media.get("url")}]


def _contacts(value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The value's ``contacts[]`` by customer id (``wa_id``, else a business-scoped ``user_id``)."""
    out = {}
    for contact in value.get("contacts") or []:
        key = (contact.get("wa_id") or contact.get("user_id")) if isinstance(contact, dict) else None
        if key:
            out[str(key)] = contact
    return out


class WhatsAppConnector(Connector):
    platform: ClassVar[str] = "whatsapp"
    Credentials: ClassVar[type[BaseModel]] = WhatsAppCredentials
    base_url_key: ClassVar[str | None] = "meta"
    can_edit: ClassVar[bool] = False
    can_delete: ClassVar[bool] = False
    has_history: ClassVar[bool] = False
    can_poll: ClassVar[bool] = False
    manual_teardown: ClassVar[str | None] = (
        "the Callback URL under WhatsApp > Configuration in the Meta app dashboard")

    @classmethod
    def make_http(
        cls,
        base_url: str,
        credentials: BaseModel,
        *,
        policy: RetryPolicy,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ProviderHttp:
        authenticate = bearer(credentials.access_token)  # type: ignore[attr-defined]

        return ProviderHttp(base_url, classify=classify, authenticate=authenticate, policy=policy,
                            timeout_s=timeout_s, transport=transport)

    @property
    def phone_number_id(self) -> str:
        return self.credentials.phone_number_id  # type: ignore[attr-defined]

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        response = await self.http.request(
            "GET", f"/{self.phone_number_id}", label="GET /{phone-number-id}",
            params={"fields": "display_phone_number,verified_name"})
        data = response.json()
        # The business's own messages carry the phone number id as their sender.
        return [self.mapping.user({**data, "id": self.phone_number_id})]

    async def list_chats(self) -> list[ChatData]:
        """WhatsApp cannot list conversations: chats exist once a customer has written."""
        return []

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        # The engine never asks (has_history is False); refusing keeps an empty page from ever
        # passing for "everything is gone at the platform".
        raise PermanentError("WhatsApp has no history API: there is nothing to re-read, and every "
                             "message received by webhook is kept")

    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        return PollResult(Changes(), state)

    # -- export ---------------------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> SendResult:
        if not (message.text or "").strip():
            raise PermanentError("WhatsApp sends plain text: the message has no text")
        body = self.mapping.outgoing("send", message)
        response = await self.http.request("POST", f"/{self.phone_number_id}/messages",
                                           label="POST /{phone-number-id}/messages", json=body)
        data = response.json()
        try:
            wamid = str(data["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise PermanentError("the send answer has no messages[0].id") from None
        contacts = data.get("contacts") or [{}]
        extra = {"waId": contacts[0].get("wa_id")} if isinstance(contacts[0], dict) and contacts[0].get("wa_id") else {}
        return SendResult(wamid, external_thread_id=message.external_thread_id, extra=extra)

    # -- webhooks -------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        shook = meta.handshake(request, self.credentials.verify_token)  # type: ignore[attr-defined]
        if shook is not None:
            return shook
        meta.verify_signature(self.credentials.app_secret, request)  # type: ignore[attr-defined]
        if not self._values(meta.parse_body(request)):
            return WebhookAccepted(None)  # another number's or another product's delivery
        return WebhookAccepted(body_digest(request.body))

    def _values(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``messages`` change values of this integration's phone number."""
        if payload.get("object") != WEBHOOK_OBJECT:
            return []
        out = []
        for entry in payload.get("entry") or []:
            for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
                if not isinstance(change, dict) or change.get("field") != "messages":
                    continue
                value = change.get("value")
                if not isinstance(value, dict):
                    continue
                if str((value.get("metadata") or {}).get("phone_number_id")) == self.phone_number_id:
                    out.append(value)
        return out

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        changes = Changes()
        chats: dict[str, ChatData] = {}
        for value in self._values(meta.parse_body(request)):
            contacts = _contacts(value)
            for raw in value.get("messages") or []:
                sender = self._sender(raw, contacts) if isinstance(raw, dict) else None
                if sender:
                    mapped = self._message({**raw, "from": sender}, contacts)
                    if mapped is not None:
                        changes.messages.append(mapped)
                        self._chat(chats, mapped.external_chat_id, contacts)
            for raw in value.get("statuses") or []:
                mapped = self._status(raw) if isinstance(raw, dict) else None
                if mapped is not None:
                    changes.messages.append(mapped)
                    self._chat(chats, mapped.external_chat_id, contacts)
        changes.chats = list(chats.values())
        return changes

    def _chat(self, chats: dict[str, ChatData], wa_id: str, contacts: dict[str, dict[str, Any]]) -> None:
        contact = contacts.get(wa_id) or self._only(contacts) or {}
        chat = self.mapping.chat({**contact, "wa_id": wa_id}, {"participants": [wa_id]})
        if wa_id not in chats or chat.name:
            chats[wa_id] = chat

    @staticmethod
    def _only(contacts: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        # Meta lists the sender of the value's message(s) in contacts[]; when its wa_id is
        # written differently from `from`, the single contact is still that sender.
        return next(iter(contacts.values())) if len(contacts) == 1 else None

    def _sender(self, raw: dict[str, Any], contacts: dict[str, dict[str, Any]]) -> str | None:
        """The customer's id: ``from``, else the value's one contact (newer payloads may name a
        customer by a business-scoped ``user_id`` only)."""
        if raw.get("from"):
            return str(raw["from"])
        only = self._only(contacts) or {}
        found = only.get("wa_id") or only.get("user_id")
        return str(found) if found else None

    def _message(self, raw: dict[str, Any], contacts: dict[str, dict[str, Any]]) -> MessageData | None:
        wa_id = str(raw["from"])
        contact = contacts.get(wa_id) or self._only(contacts) or {}
        ctx: dict[str, Any] = {"chat": wa_id, "senderName": (contact.get("profile") or {}).get("name")}
        kind = raw.get("type")
        if kind == "reaction":
            return None  # an emoji on another message: no universal field for it
        if kind == "edit":
            edit = raw.get("edit") or {}
            inner = edit.get("message") if isinstance(edit.get("message"), dict) else {}
            if not edit.get("original_message_id"):
                return None
            source = {**inner, "from": wa_id}
            ctx.update(messageId=str(edit["original_message_id"]), editedAt=raw.get("timestamp"),
                       attachments=_attachments(inner))
            return self.mapping.message(source, ctx)
        if kind == "revoke":
            original = (raw.get("revoke") or {}).get("original_message_id")
            if not original:
                return None
            ctx.update(messageId=str(original), deletedAt=raw.get("timestamp"))
            return self.mapping.message({"from": wa_id}, ctx)
        ctx.update(sentAt=raw.get("timestamp"), attachments=_attachments(raw))
        return self.mapping.message(raw, ctx)

    def _status(self, raw: dict[str, Any]) -> MessageData | None:
        data = self.mapping.section("status", raw, {"sender": self.phone_number_id})
        if data.get("deliveryState") is None:
            return None  # a status syncd has no state for (e.g. "deleted", "warning")
        try:
            return MessageData.model_validate(data)
        except ValidationError as exc:
            raise PermanentError(f"whatsapp status cannot be mapped: {exc.errors()[0]['msg']}") from None


CONNECTOR = WhatsAppConnector
