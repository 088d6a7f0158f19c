"""What Mailgun's manifest cannot say: a route's forward is a form (URL-encoded, or multipart
with attachments) whose signature fields sit beside the email's; it is read into the shape of
an event webhook, ``{"signature": {timestamp, token, signature}, "route": {...}}``, with the
email's thread worked out from its headers (``email_threads``). Without a webhook signing key
the API key signs, as on older accounts."""

from __future__ import annotations

import email.parser
import email.policy
import json
from typing import Any
from urllib.parse import parse_qsl

from syncd.kit.declarative import ManifestConnector
from syncd.providers import email_threads
from syncd.universal import WebhookRequest

SIGNATURE_FIELDS = ("timestamp", "token", "signature")


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


def _headers(route: dict[str, str]) -> dict[str, str]:
    try:
        pairs = json.loads(route.get("message-headers") or "[]")
    except ValueError:
        return {}
    return {str(p[0]).lower(): str(p[1]) for p in pairs if isinstance(p, list) and len(p) == 2}


def threaded(route: dict[str, str]) -> dict[str, Any]:
    """The route's fields with messageId, threadId, threadName and the referencesChain a
    reply to it carries."""
    headers = _headers(route)
    own = email_threads.first_message_id(headers.get("message-id") or route.get("Message-Id"))
    if own is None:
        own = email_threads.content_id([route.get("sender"), route.get("subject"), route.get("timestamp"),
                                        route.get("body-plain")])
    mail = email_threads.Threading(own, email_threads.first_message_id(headers.get("in-reply-to")),
                                   tuple(email_threads.message_ids(headers.get("references"))), route.get("subject"))
    index = email_threads.ThreadIndex()
    thread = index.assign(mail)
    _, chain = email_threads.reply_references(own, headers.get("references"))
    return {**route, "messageId": own, "threadId": thread, "threadName": index.name(thread), "referencesChain": chain}


class MailgunConnector(ManifestConnector):
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


CONNECTOR = MailgunConnector
