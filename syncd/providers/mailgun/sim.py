"""Mailgun as a simulator: one domain, its receiving address, the emails sent through it.

Endpoints (HTTP Basic ``api:<key>``): ``GET /v3/domains/{domain}``, ``POST /v3/{domain}/messages``
(URL-encoded form: ``from``, ``to`` (repeatable), ``subject``, ``text``, ``html``,
``h:In-Reply-To``, ``h:References``, ``v:<var>`` -> ``{"id": "<...@domain>", "message":
"Queued. Thank you."}``). 401 on a wrong key; 429 from ``faults``. Deliveries are built as
Mailgun posts them: a route's forward as a URL-encoded or multipart form with ``timestamp``,
``token`` and ``signature`` fields, and event webhooks as JSON with a ``signature`` block; the
signature is hex HMAC-SHA256 of ``timestamp + token`` keyed with the webhook signing key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.sim.base import Faults, Trial


@dataclass
class MailgunDelivery:
    body: bytes
    headers: dict[str, str]


@dataclass
class MailgunEmail:
    message_id: str  # without angle brackets
    sender: str
    to: list[str]
    subject: str
    text: str
    inbound: bool
    in_reply_to: str | None = None
    references: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    state: str | None = None


@dataclass
class MailgunSimulator(Trial):
    domain: str = "mg.example.com"
    api_key: str = field(default_factory=lambda: "key-" + secrets.token_hex(16))
    signing_key: str = field(default_factory=lambda: secrets.token_hex(16))
    address: str = "support@mg.example.com"
    faults: Faults = field(default_factory=Faults)
    emails: dict[str, MailgunEmail] = field(default_factory=dict)
    sent_forms: list[list[tuple[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/v3/domains/{domain}", self._domain, methods=["GET"]),
            Route("/v3/{domain}/messages", self._send, methods=["POST"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    #: ``syncd sim mailgun``: the API root is the simulator's own.
    trial_roots: ClassVar[dict[str, str]] = {"mailgun": ""}

    def trial_credentials(self) -> dict[str, str]:
        return {"apiKey": self.api_key, "domain": self.domain, "incomingAddress": self.address,
                "webhookSigningKey": self.signing_key}

    # -- the API ------------------------------------------------------------------------------
    async def _guard(self, request: Request, endpoint: str) -> Response | None:
        fault = await self.faults.check(endpoint)
        if fault is not None and fault.kind == "server_error":
            return JSONResponse({"message": "internal error"}, status_code=fault.status)
        if fault is not None:
            return JSONResponse({"message": "Too many requests"}, status_code=429,
                                headers={"retry-after": str(fault.retry_after_s)})
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return Response("Forbidden", status_code=401)
        if request.path_params["domain"] != self.domain:
            return JSONResponse({"message": "Domain not found"}, status_code=404)
        return None

    async def _domain(self, request: Request) -> Response:
        refused = await self._guard(request, "domain")
        return refused or JSONResponse({"domain": {"name": self.domain, "state": "active", "type": "custom"},
                                        "receiving_dns_records": [], "sending_dns_records": []})

    async def _send(self, request: Request) -> Response:
        refused = await self._guard(request, "send")
        if refused is not None:
            return refused
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        form = dict(pairs)
        to = [v for k, v in pairs if k == "to"]
        if not form.get("from") or not to or not (form.get("text") or form.get("html")):
            return JSONResponse({"message": "'from', 'to' and 'text' or 'html' are required"}, status_code=400)
        self.sent_forms.append(pairs)
        message_id = f"{time.strftime('%Y%m%d%H%M%S')}.{next(self._ids)}.{secrets.token_hex(4)}@{self.domain}"
        self.emails[message_id] = MailgunEmail(
            message_id, form["from"], to, form.get("subject", ""), form.get("text") or form.get("html", ""),
            False, form.get("h:In-Reply-To"), form.get("h:References"),
            {k[2:]: v for k, v in pairs if k.startswith("v:")})
        return JSONResponse({"id": f"<{message_id}>", "message": "Queued. Thank you."})

    # -- deliveries ---------------------------------------------------------------------------
    def signature(self, key: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        stamp, token = str(timestamp or int(time.time())), secrets.token_hex(25)
        digest = hmac.new((key or self.signing_key).encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        return {"timestamp": stamp, "token": token, "signature": digest}

    def route_post(self, sender: str, subject: str, text: str, *, reply_to: str | None = None,
                   multipart: bool = False) -> MailgunDelivery:
        """An email to the receiving address, forwarded by a route; ``reply_to`` the
        Message-ID (no brackets) it answers."""
        message_id = f"{secrets.token_hex(6)}@mail.example.net"
        parent = self.emails.get(reply_to) if reply_to else None
        references = " ".join(x for x in ((parent.references if parent else None), f"<{reply_to}>" if reply_to else None) if x)
        self.emails[message_id] = MailgunEmail(message_id, sender, [self.address], subject, text, True,
                                               reply_to, references or None)
        headers = [["Message-Id", f"<{message_id}>"], ["Subject", subject], ["From", sender]]
        if reply_to:
            headers += [["In-Reply-To", f"<{reply_to}>"], ["References", references]]
        fields = {"recipient": self.address, "sender": sender, "from": sender, "subject": subject,
                  "body-plain": text, "stripped-text": text, "message-headers": json.dumps(headers),
                  **self.signature()}
        if not multipart:
            return MailgunDelivery(urlencode(fields).encode(), {"content-type": "application/x-www-form-urlencoded"})
        boundary = "----sim" + secrets.token_hex(8)
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="attachment-1"; filename="a.txt"\r\n'
                     f"Content-Type: text/plain\r\n\r\nfile body\r\n--{boundary}--\r\n")
        return MailgunDelivery("".join(parts).encode(), {"content-type": f"multipart/form-data; boundary={boundary}"})

    def event(self, message_id: str, event: str) -> MailgunDelivery:
        """An event webhook (``delivered``, ``failed``, ``opened``) about a sent email."""
        sent = self.emails[message_id]
        sent.state = {"opened": "read"}.get(event, event)
        payload = {"signature": self.signature(), "event-data": {
            "event": event, "id": secrets.token_urlsafe(16), "timestamp": time.time(), "recipient": sent.to[0],
            "user-variables": sent.variables,
            "message": {"headers": {"message-id": message_id, "to": sent.to[0], "from": sent.sender,
                                    "subject": sent.subject}}}}
        return MailgunDelivery(json.dumps(payload).encode(), {"content-type": "application/json"})


SIMULATOR = MailgunSimulator
