"""WhatsApp Business Cloud API simulator: ``POST /{phone_number_id}/messages`` (body checked,
error 131047 outside the 24-hour customer service window by the simulator clock),
``GET /{phone_number_id}``, and builders of the webhook deliveries WhatsApp sends (incoming
text/media/reply, statuses, edit, revoke) shaped exactly like ``tests/fixtures/whatsapp.json``;
``truth()`` lists what the number sent and received, and ``on_send`` runs before a send is
answered (to deliver a status webhook that outruns the send's answer)."""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from syncd.providers.meta.sim import GraphError, MetaDelivery, MetaGraphSimulator

# ==================================================================================================
# WhatsApp Cloud API
# ==================================================================================================

WINDOW_S = 24 * 3600
_WINDOW_DETAILS = ("Message failed to send because more than 24 hours have passed since the customer last "
                   "replied to this number.")


@dataclass
class WhatsAppMessage:
    """One message of the truth: what the business number sent or received."""

    wamid: str
    wa_id: str
    direction: str  # "in" (from the customer) or "out" (sent by the business)
    type: str
    body: dict[str, Any]
    timestamp: int
    context_id: str | None = None
    status: str | None = None
    edited: bool = False
    revoked: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class WhatsAppSimulator(MetaGraphSimulator):
    """One WhatsApp Business phone number and its customers, as an ASGI app."""

    throttle_code = 130429
    webhook_object = "whatsapp_business_account"

    def __init__(
        self,
        *,
        phone_number_id: str = "106540352242922",
        display_phone_number: str = "15550783881",
        verified_name: str = "Sim Shop",
        waba_id: str = "102290129340398",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.verified_name = verified_name
        self.waba_id = waba_id
        #: wa_id -> profile name of the customers who wrote to the number.
        self.customers: dict[str, str] = {}
        #: wamid -> message, in the order they happened.
        self.messages: dict[str, WhatsAppMessage] = {}
        #: Awaited with the new wamid before a send is answered (e.g. to deliver its status
        #: webhook before the sender has recorded the wamid, as can happen for real).
        self.on_send: Callable[[str], Awaitable[None]] | None = None
        self._seq = itertools.count(1)
        self.route("GET", "{phone_number_id}", self._phone_number, endpoint="phone_number")
        self.route("POST", "{phone_number_id}/messages", self._send, endpoint="messages")

    def trial_credentials(self) -> dict[str, Any]:
        return {"accessToken": min(self.valid_tokens), "phoneNumberId": self.phone_number_id,
                "appSecret": self.app_secret, "verifyToken": self.verify_token}

    def trial_delivery(self, n: int) -> MetaDelivery:
        return self.incoming_text(f"1555010{n % 20:04d}", f"trial message {n}", name=f"Customer {n % 20}")

    # -- the truth --------------------------------------------------------------------------------
    def truth(self, wa_id: str | None = None) -> list[dict[str, Any]]:
        """Every message sent or received (of one customer), oldest first."""
        return [
            {"wamid": m.wamid, "wa_id": m.wa_id, "direction": m.direction, "type": m.type,
             "text": self._text_of(m), "context_id": m.context_id, "status": m.status,
             "edited": m.edited, "revoked": m.revoked, "timestamp": m.timestamp}
            for m in self.messages.values() if wa_id is None or m.wa_id == wa_id
        ]

    @staticmethod
    def _text_of(m: WhatsAppMessage) -> str | None:
        if m.type == "text":
            return m.body.get("text", {}).get("body")
        return (m.body.get(m.type) or {}).get("caption")

    def _now(self) -> int:
        return int(self.clock())

    def _wamid(self) -> str:
        raw = f"\x18\x0b{self.phone_number_id}\x15\x02\x00\x12\x18\x14SIM{next(self._seq):017X}\x00".encode()
        return "wamid." + base64.b64encode(raw).decode()

    def last_inbound_at(self, wa_id: str) -> int | None:
        times = [m.timestamp for m in self.messages.values() if m.wa_id == wa_id and m.direction == "in"]
        return max(times) if times else None

    # -- Cloud API ---------------------------------------------------------------------------------
    def _check_number(self, params: dict[str, str]) -> None:
        if params["phone_number_id"] != self.phone_number_id:
            raise GraphError(100, f"Unsupported get request. Object with ID '{params['phone_number_id']}' does not "
                             "exist, cannot be loaded due to missing permissions, or does not support this operation.",
                             type="GraphMethodException", subcode=33)

    async def _phone_number(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self._check_number(params)
        record = {"verified_name": self.verified_name, "code_verification_status": "VERIFIED",
                  "display_phone_number": self._display(), "quality_rating": "GREEN",
                  "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"}, "id": self.phone_number_id}
        fields = request.query_params.get("fields")
        if fields:
            wanted = {f.strip() for f in fields.split(",")} | {"id"}
            record = {k: v for k, v in record.items() if k in wanted}
        return record

    def _display(self) -> str:
        digits = self.display_phone_number
        return f"+{digits[0]} {digits[1:4]}-{digits[4:7]}-{digits[7:]}" if digits.isdigit() and len(digits) == 11 \
            else digits

    @staticmethod
    def _invalid(message: str, details: str) -> GraphError:
        return GraphError(100, message, error_data={"messaging_product": "whatsapp", "details": details})

    async def _send(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self._check_number(params)
        if body.get("messaging_product") != "whatsapp":
            raise self._invalid("(#100) The parameter messaging_product is required.",
                                "The parameter messaging_product is required.")
        if "status" in body:  # mark as read
            if body.get("status") != "read" or body.get("message_id") not in self.messages:
                raise self._invalid("(#100) Invalid parameter", "Invalid message_id")
            self.messages[body["message_id"]].status = "read"
            return {"success": True}
        to = str(body.get("to") or "")
        if not to.lstrip("+").isdigit():
            raise self._invalid("(#100) Invalid parameter", "The parameter to is required.")
        if body.get("recipient_type", "individual") != "individual":
            raise self._invalid("(#100) Invalid parameter", "recipient_type must be individual")
        kind = body.get("type", "text")
        if kind != "text":
            raise self._invalid("(#100) Invalid parameter", f"Only text is simulated, not {kind!r}")
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"].strip():
            raise self._invalid("(#100) The parameter text['body'] is required.",
                                "The parameter text['body'] is required.")
        if len(text["body"]) > 4096:
            raise self._invalid("(#100) Param text['body'] must be at most 4096 characters long.",
                                "Param text['body'] must be at most 4096 characters long.")
        wa_id = to.lstrip("+")
        last = self.last_inbound_at(wa_id)
        if last is None or self._now() - last > WINDOW_S:
            raise GraphError(131047, "Re-engagement message", title="Re-engagement message",
                             error_data={"messaging_product": "whatsapp", "details": _WINDOW_DETAILS})
        given = body.get("context")
        context: dict[str, Any] = given if isinstance(given, dict) else {}
        wamid = self._wamid()
        self.messages[wamid] = WhatsAppMessage(wamid, wa_id, "out", "text", {"text": {"body": text["body"]}},
                                               self._now(), context_id=context.get("message_id"), status="accepted")
        if self.on_send is not None:
            await self.on_send(wamid)
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}],
                "messages": [{"id": wamid}]}

    # -- webhook deliveries -------------------------------------------------------------------------
    def _envelope(self, value: dict[str, Any], *, phone_number_id: str | None = None) -> MetaDelivery:
        return self.sign({"object": self.webhook_object, "entry": [{"id": self.waba_id, "changes": [{
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": self.display_phone_number,
                                   "phone_number_id": phone_number_id or self.phone_number_id},
                      **value},
            "field": "messages"}]}]})

    def _contact(self, wa_id: str) -> list[dict[str, Any]]:
        return [{"profile": {"name": self.customers.get(wa_id, wa_id)}, "wa_id": wa_id}]

    def _incoming(self, wa_id: str, name: str | None, kind: str, content: dict[str, Any], *,
                  context_id: str | None = None, at: int | None = None,
                  phone_number_id: str | None = None) -> MetaDelivery:
        if name:
            self.customers[wa_id] = name
        self.customers.setdefault(wa_id, wa_id)
        wamid = self._wamid()
        ts = self._now() if at is None else at
        message: dict[str, Any] = {"from": wa_id, "id": wamid, "timestamp": str(ts)}
        if context_id:
            original = self.messages.get(context_id)
            message["context"] = {"from": original.wa_id if original and original.direction == "in"
                                  else self.display_phone_number, "id": context_id}
        message.update(type=kind, **content)
        self.messages[wamid] = WhatsAppMessage(wamid, wa_id, "in", kind, content, ts, context_id=context_id)
        return self._envelope({"contacts": self._contact(wa_id), "messages": [message]},
                              phone_number_id=phone_number_id)

    def incoming_text(self, wa_id: str, text: str, *, name: str | None = None, reply_to: str | None = None,
                      at: int | None = None, phone_number_id: str | None = None) -> MetaDelivery:
        """A customer writes (``reply_to`` a wamid quotes it); opens the 24-hour window."""
        return self._incoming(wa_id, name, "text", {"text": {"body": text}}, context_id=reply_to, at=at,
                              phone_number_id=phone_number_id)

    def incoming_media(self, wa_id: str, kind: str, *, media_id: str | None = None, mime_type: str = "image/jpeg",
                       caption: str | None = None, filename: str | None = None, name: str | None = None,
                       reply_to: str | None = None, at: int | None = None) -> MetaDelivery:
        """A customer sends an image/document/audio/video/sticker (metadata only, as WhatsApp does)."""
        media: dict[str, Any] = {"mime_type": mime_type, "sha256": hashlib.sha256(kind.encode()).hexdigest(),
                                 "id": media_id or str(1_000_000_000_000_000 + next(self._seq))}
        if caption is not None and kind in ("image", "document", "video"):
            media["caption"] = caption
        if filename is not None and kind == "document":
            media["filename"] = filename
        if kind == "audio":
            media["voice"] = False
        if kind == "sticker":
            media["animated"] = False
        return self._incoming(wa_id, name, kind, {kind: media}, context_id=reply_to, at=at)

    def edit(self, wamid: str, text: str, *, at: int | None = None) -> MetaDelivery:
        """The customer edits their message ``wamid``; the delivery carries a new wamid."""
        original = self.messages[wamid]
        original.history.append(dict(original.body))
        original.body = {"text": {"body": text}} if original.type == "text" else \
            {original.type: {**original.body.get(original.type, {}), "caption": text}}
        original.edited = True
        inner: dict[str, Any] = {"type": original.type, **original.body}
        if original.context_id:
            inner = {"context": {"id": original.context_id}, **inner}
        return self._envelope({"contacts": self._contact(original.wa_id), "messages": [{
            "from": original.wa_id, "id": self._wamid(), "timestamp": str(self._now() if at is None else at),
            "type": "edit", "edit": {"original_message_id": wamid, "message": inner}}]})

    def revoke(self, wamid: str, *, at: int | None = None) -> MetaDelivery:
        """The customer deletes their message ``wamid`` for everyone."""
        original = self.messages[wamid]
        original.revoked = True
        return self._envelope({"contacts": self._contact(original.wa_id), "messages": [{
            "from": original.wa_id, "id": self._wamid(), "timestamp": str(self._now() if at is None else at),
            "type": "revoke", "revoke": {"original_message_id": wamid}}]})

    def status(self, wamid: str, status: str, *, at: int | None = None,
               errors: list[dict[str, Any]] | None = None, recipient: str | None = None) -> MetaDelivery:
        """A ``sent``/``delivered``/``read``/``failed`` status of a business message."""
        record = self.messages.get(wamid)
        wa_id = recipient or (record.wa_id if record else "")
        if record is not None:
            record.status = status
        ts = str(self._now() if at is None else at)
        item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": ts, "recipient_id": wa_id}
        if status != "read":
            item["conversation"] = {"id": hashlib.md5(wa_id.encode()).hexdigest(),
                                    "expiration_timestamp": str(int(ts) + WINDOW_S), "origin": {"type": "service"}}
            item["pricing"] = {"billable": status != "failed", "pricing_model": "CBP", "category": "service"}
        if status == "failed":
            item["errors"] = errors or [{"code": 131026, "title": "Message undeliverable",
                                         "message": "Message undeliverable",
                                         "error_data": {"details": "Message Undeliverable."}}]
        return self._envelope({"contacts": self._contact(wa_id), "statuses": [item]})


SIMULATOR = WhatsAppSimulator
