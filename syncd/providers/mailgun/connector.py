"""What Mailgun's manifest cannot say: a route's forward is a form (URL-encoded, or multipart
with attachments) whose signature fields sit beside the email's; it is read into the shape of
an event webhook, ``{"signature": {timestamp, token, signature}, "route": {...}}``, with the
email's thread worked out from its headers (``email_threads``). Without a webhook signing key
the API key signs, as on older accounts.

History: Mailgun has no mailbox and no threads, only a domain-wide event log. The log is walked
once (``history``), each email of the incoming address read back from storage (``stored``)
and threaded with the others in time order; the threads are the chats, and a chat's history
is one page of its emails from that walk."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import json
import time
from typing import Any
from urllib.parse import parse_qsl

from syncd.kit import templates
from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import ProviderError
from syncd.mapping import TRANSFORMS
from syncd.providers import email_threads
from syncd.universal import ChatData, HistoryPage, MessageData, WebhookRequest

SIGNATURE_FIELDS = ("timestamp", "token", "signature")
#: How long one walk of the event log serves the chats' imports before it is walked again.
WALK_MAX_AGE_S = 60.0


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a URL-encoded or multipart form (files are left out)."""
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            if name and not part.get_filename():
                # RFC 7578: a field without a charset is UTF-8.
                raw = part.get_payload(decode=True)
                raw = raw if isinstance(raw, bytes) else b""
                fields[str(name)] = raw.decode(part.get_content_charset() or "utf-8", "replace")
        return fields
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _headers(route: dict[str, Any]) -> dict[str, str]:
    """``message-headers``: a JSON text of pairs in a route's form, the pairs themselves in a
    stored email."""
    pairs = route.get("message-headers") or []
    if isinstance(pairs, str):
        try:
            pairs = json.loads(pairs or "[]")
        except ValueError:
            return {}
    return {str(p[0]).lower(): str(p[1]) for p in pairs if isinstance(p, list) and len(p) == 2}


def threaded(route: dict[str, Any], index: email_threads.ThreadIndex | None = None) -> dict[str, Any]:
    """The route's fields with messageId, threadId, threadName and the referencesChain a
    reply to it carries; ``index`` holds the threads of emails read before it."""
    headers = _headers(route)
    own = email_threads.first_message_id(headers.get("message-id") or route.get("Message-Id"))
    if own is None:
        own = email_threads.content_id([route.get("sender"), route.get("subject"), route.get("timestamp"),
                                        route.get("body-plain")])
    mail = email_threads.Threading(own, email_threads.first_message_id(headers.get("in-reply-to")),
                                   tuple(email_threads.message_ids(headers.get("references"))), route.get("subject"))
    index = index or email_threads.ThreadIndex()
    thread = index.assign(mail)
    _, chain = email_threads.reply_references(own, headers.get("references"))
    return {**route, "messageId": own, "threadId": thread, "threadName": index.name(thread), "referencesChain": chain}


def _address(value: Any) -> str | None:
    return TRANSFORMS["email_address"](value) if value else None


class MailgunConnector(ManifestConnector):
    _walked: tuple[float, dict[str, ChatData], dict[str, list[MessageData]]] | None = None

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any], settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        credentials, settings = super().prepare_credentials(credentials, settings)
        if not credentials.get("webhookSigningKey") and credentials.get("apiKey"):
            credentials = {**credentials, "webhookSigningKey": credentials["apiKey"]}
        return credentials, settings

    def parse_body(self, request: WebhookRequest) -> Any:
        content_type = request.headers.get("content-type", "").lower()
        if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            return super().parse_body(request)
        fields = form_fields(request.headers.get("content-type", ""), request.body)
        signature = {k: fields.pop(k) for k in SIGNATURE_FIELDS if k in fields}  # absent ones: 401
        return {"signature": signature, "route": threaded(fields)}

    # -- history ----------------------------------------------------------------------------
    async def list_chats(self) -> list[ChatData]:
        chats, _ = await self._walk(max_age_s=0.0)
        return list(chats.values())

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        _, threads = await self._walk(max_age_s=WALK_MAX_AGE_S)
        return HistoryPage(threads.get(chat.external_chat_id, []), None)

    async def _walk(self, *, max_age_s: float) -> tuple[dict[str, ChatData], dict[str, list[MessageData]]]:
        """The threads of every stored email of the incoming address, from a walk of the event
        log at most ``max_age_s`` old."""
        if self._walked is not None and time.monotonic() - self._walked[0] <= max_age_s:
            return self._walked[1], self._walked[2]
        scope = self.scope()
        ours = str(scope["credentials"]["incomingAddress"]).lower()
        events: dict[str, dict[str, Any]] = {}
        for record, _ in await self.walk_records("history", self.required("history"), scope):
            message_id = TRANSFORMS["message_id"](templates.lookup(record, "message.headers.message-id") or "")
            if message_id and message_id not in events and self._involves(record, ours):
                events[message_id] = record  # one email has several events: read it once
        index, chats, threads = email_threads.ThreadIndex(), dict[str, ChatData](), dict[str, list[MessageData]]()
        for event in sorted(events.values(), key=lambda e: float(e.get("timestamp") or 0)):
            stored = await self._stored(event)
            if stored is None:
                continue
            record = {**threaded(stored, index), "timestamp": event.get("timestamp")}
            message = self.map_as("message", "inbound", record, {})
            threads.setdefault(message.external_chat_id, []).append(message)
            if message.external_chat_id not in chats:
                chats[message.external_chat_id] = self.map_as("chat", "threadChat", record, {})
            self._add_participants(chats[message.external_chat_id], stored, ours)
        for thread, chat in chats.items():
            chat.name = index.name(thread) or chat.name
        self._walked = (time.monotonic(), chats, threads)
        return chats, threads

    @staticmethod
    def _involves(event: dict[str, Any], ours: str) -> bool:
        """The event's email was received at, or sent from, the incoming address."""
        if event.get("event") == "stored":
            named = [event.get("recipient"), templates.lookup(event, "message.headers.to")]
        else:
            named = [templates.lookup(event, "envelope.sender"), templates.lookup(event, "message.headers.from")]
        return ours in {a.lower() for _, a in email.utils.getaddresses([str(n) for n in named if n])}

    async def _stored(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The stored email of ``event``; ``None`` once Mailgun no longer keeps it."""
        try:
            _, stored = await self.call("stored", self.named("stored"), self.scope(record=event))
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        return stored if isinstance(stored, dict) else None

    @staticmethod
    def _add_participants(chat: ChatData, stored: dict[str, Any], ours: str) -> None:
        """Everyone but the incoming address who wrote or was written to in the thread."""
        found = [stored.get("sender"), *str(stored.get("recipients") or stored.get("To") or "").split(",")]
        for value in found:
            address = _address(value)
            if address and address != ours and address not in chat.participants:
                chat.participants.append(address)


CONNECTOR = MailgunConnector
