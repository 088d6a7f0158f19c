"""Mailgun as a simulator: one domain, its receiving address, the emails sent through it.

Endpoints (HTTP Basic ``api:<key>``): ``GET /v3/domains/{domain}``, ``POST /v3/{domain}/messages``
(URL-encoded form: ``from``, ``to`` (repeatable), ``subject``, ``text``, ``html``,
``h:In-Reply-To``, ``h:References``, ``v:<var>`` -> ``{"id": "<...@domain>", "message":
"Queued. Thank you."}``), ``GET /v3/{domain}/events`` (``event`` a filter expression such as
``accepted OR stored``, ``ascending``, ``limit`` at most 300; ``{items, paging}`` whose
``paging.next`` is a whole URL ``/v3/{domain}/events/<page>``, present even after the last
page), ``GET /v3/domains/{domain}/messages/<storage key>`` (the stored email as JSON; 404 once
its retention is over). 401 on a wrong key; 429 from ``faults``. Deliveries are built as
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

from syncd.providers import email_threads
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
    at: float = field(default_factory=time.time)
    storage_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: Its retention is over: the event stays, the stored email is gone.
    expired: bool = False

    @property
    def event(self) -> str:
        """The event that stores it: ``stored`` for an inbound email (a route's ``store()``),
        ``accepted`` for one sent through the API."""
        return "stored" if self.inbound else "accepted"


@dataclass
class MailgunSimulator(Trial):
    domain: str = "mg.example.com"
    api_key: str = field(default_factory=lambda: "key-" + secrets.token_hex(16))
    signing_key: str = field(default_factory=lambda: secrets.token_hex(16))
    address: str = "support@mg.example.com"
    faults: Faults = field(default_factory=Faults)
    emails: dict[str, MailgunEmail] = field(default_factory=dict)
    sent_forms: list[list[tuple[str, str]]] = field(default_factory=list)
    #: The query of every first page of the event log asked for.
    event_queries: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/v3/domains/{domain}", self._domain, methods=["GET"]),
            Route("/v3/{domain}/messages", self._send, methods=["POST"]),
            Route("/v3/{domain}/events", self._events, methods=["GET"]),
            Route("/v3/{domain}/events/{page}", self._events, methods=["GET"]),
            Route("/v3/domains/{domain}/messages/{key}", self._stored, methods=["GET"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    #: ``syncd sim mailgun``: the API root is the simulator's own.
    trial_roots: ClassVar[dict[str, str]] = {"mailgun": ""}

    def trial_seed(self) -> str:
        question = self.add("ann@example.net", "Where is my order?", "it has not arrived", at=time.time() - 600)
        self.add(self.address, "Re: Where is my order?", "it ships today", reply_to=question.message_id,
                 at=time.time() - 300)
        return f"{len(self.emails)} stored emails in one thread"

    def trial_chat(self) -> str | None:
        first = min((e for e in self.emails.values() if e.inbound), key=lambda e: e.at, default=None)
        return email_threads.thread_id(first.message_id) if first else None

    def trial_credentials(self) -> dict[str, str]:
        return {"apiKey": self.api_key, "domain": self.domain, "incomingAddress": self.address,
                "webhookSigningKey": self.signing_key}

    def trial_history(self, chats: int, messages: int) -> int:
        """``chats`` threads (one sender each) of ``messages`` stored emails, each a reply to
        the one before."""
        now = time.time()
        for c in range(chats):
            previous = None
            for m in range(messages):
                previous = self.add(f"sender{c}@example.net", f"Thread {c}", f"message {m} of thread {c}",
                                    reply_to=previous.message_id if previous else None,
                                    at=now - 3600 + c + m * 0.001)
        return chats * messages

    def trial_delivery(self, n: int) -> MailgunDelivery:
        """An email from one of 20 senders, forwarded by the route and signed."""
        return self.route_post(f"writer{n % 20}@example.net", f"Trial {n}", f"trial message {n}")

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

    def _log(self) -> list[dict[str, Any]]:
        """Every event, oldest first: each email's storing event, and a sent one's delivery."""
        out = []
        for email in sorted(self.emails.values(), key=lambda e: e.at):
            out.append(self._event_item(email, email.event, email.at))
            if email.state in ("delivered", "read"):
                out.append(self._event_item(email, "delivered", email.at + 1))
        return sorted(out, key=lambda e: e["timestamp"])

    def _event_item(self, email: MailgunEmail, event: str, at: float) -> dict[str, Any]:
        return {"id": secrets.token_urlsafe(16), "event": event, "timestamp": at, "recipient": email.to[0],
                "log-level": "info", "user-variables": email.variables,
                "envelope": {"sender": email.sender, "targets": ", ".join(email.to)},
                "message": {"headers": {"message-id": email.message_id, "from": email.sender,
                                        "to": ", ".join(email.to), "subject": email.subject}},
                "storage": {"key": email.storage_key,
                            "url": f"https://storage-us-east4.api.mailgun.net/v3/domains/{self.domain}/messages/"
                                   f"{email.storage_key}"}}

    async def _events(self, request: Request) -> Response:
        refused = await self._guard(request, "events")
        if refused is not None:
            return refused
        q: dict[str, str] = dict(request.query_params)
        page = request.path_params.get("page")
        start = 0
        if page is None:
            self.event_queries.append(q)
        else:  # a page token: the query it was made with, and where it starts
            q = dict(parse_qsl(base64.urlsafe_b64decode(page).decode()))
            start = int(q.pop("_start"))
        limit = int(q.get("limit", 100))
        if limit > 300:
            return JSONResponse({"message": "Invalid parameter: limit can not be more than 300"}, status_code=400)
        wanted = {w.strip() for w in str(q.get("event", "")).split(" OR ") if w.strip()}
        items = [e for e in self._log() if not wanted or e["event"] in wanted]
        if str(q.get("ascending", "yes")).lower() not in ("yes", "true"):
            items.reverse()
        chunk = items[start:start + limit]
        base = f"{str(request.base_url).rstrip('/')}/v3/{self.domain}/events/"

        def token(at: int) -> str:
            return base64.urlsafe_b64encode(urlencode({**q, "_start": at}).encode()).decode()

        # Mailgun names a next page after the last one too: the reader stops on an empty page.
        return JSONResponse({"items": chunk, "paging": {
            "first": base + token(0), "last": base + token(max(len(items) - limit, 0)),
            "next": base + token(start + len(chunk)), "previous": base + token(max(start - limit, 0))}})

    async def _stored(self, request: Request) -> Response:
        refused = await self._guard(request, "stored")
        if refused is not None:
            return refused
        found = [e for e in self.emails.values() if e.storage_key == request.path_params["key"] and not e.expired]
        if not found:
            return JSONResponse({"message": "Message not found"}, status_code=404)
        email = found[0]
        headers = [["Message-Id", f"<{email.message_id}>"], ["Subject", email.subject], ["From", email.sender],
                   ["To", ", ".join(email.to)]]
        if email.in_reply_to:
            headers.append(["In-Reply-To", f"<{email.in_reply_to}>"])
        if email.references:
            headers.append(["References", email.references])
        return JSONResponse({"recipients": ", ".join(email.to), "sender": email.sender, "from": email.sender,
                             "To": ", ".join(email.to), "subject": email.subject, "Subject": email.subject,
                             "Message-Id": f"<{email.message_id}>", "body-plain": email.text,
                             "stripped-text": email.text, "message-headers": headers,
                             "Content-Type": "text/plain; charset=utf-8"})

    # -- the domain's data ----------------------------------------------------------------------
    def add(self, sender: str, subject: str, text: str, *, reply_to: str | None = None,
            at: float | None = None) -> MailgunEmail:
        """An email stored as if it had been received (``sender`` another address) or sent
        (``sender`` the receiving address) before syncd was connected."""
        inbound = sender != self.address
        message_id = f"{secrets.token_hex(6)}@{'mail.example.net' if inbound else self.domain}"
        parent = self.emails.get(reply_to) if reply_to else None
        references = " ".join(x for x in ((parent.references if parent else None),
                                          f"<{reply_to}>" if reply_to else None) if x) or None
        to = [self.address] if inbound else [parent.sender if parent else "someone@example.net"]
        email = MailgunEmail(message_id, sender, to, subject, text, inbound, reply_to, references,
                             at=at if at is not None else time.time())
        self.emails[message_id] = email
        return email

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
