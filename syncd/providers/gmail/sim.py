"""A Gmail API simulator: mailboxes of real RFC 2822 messages served as Gmail resources.

Implements the endpoints syncd and the official ``google-api-python-client`` use, with
Google's paths, paging (``pageToken``), history records and retention (404 on a too-old
``startHistoryId``), Google's error envelope, bearer auth with expiring tokens, the OAuth
token endpoint (``POST /token``: the refresh grant, and the authorization-code grant of the
consent page ``GET /o/oauth2/v2/auth``, which approves at once or refuses with ``oauth_deny``),
``users.watch`` (recorded in ``watches``) and Pub/Sub push envelopes. Faults come from ``base.py``.

    sim = GmailSimulator("me@example.com", token="tok")
    thread = sim.add_incoming(None, "Guilherme Dias <g@example.org>", "Hello", "Hi there")
    httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), base_url="http://gmail.sim")
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import email.utils
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, NamedTuple, cast
from urllib.parse import parse_qs, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from syncd.sim.base import Fault, Faults, Trial

USERS = "/gmail/v1/users/{userId}"
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
#: historyTypes values -> the record keys they select.
HISTORY_KEYS = {"messageAdded": "messagesAdded", "messageDeleted": "messagesDeleted",
                "labelAdded": "labelsAdded", "labelRemoved": "labelsRemoved"}
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000
#: Google's authorization codes are short-lived; ten minutes is the documented upper bound.
OAUTH_CODE_TTL_S = 600
#: What Google's token endpoint reports for the short scope names a consent page accepts.
SCOPE_NAMES = {"email": "https://www.googleapis.com/auth/userinfo.email",
               "profile": "https://www.googleapis.com/auth/userinfo.profile"}


class GoogleError(Exception):
    """Rendered as Google's error envelope ``{"error": {code, message, errors, status}}``."""

    def __init__(self, status: int, message: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.reason, self.headers = status, message, reason, headers or {}

    def response(self) -> JSONResponse:
        error = {"code": self.status, "message": self.message,
                 "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
                 "status": STATUS_NAMES.get(self.status, "UNKNOWN")}
        return JSONResponse({"error": error}, self.status, headers=self.headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _attachment_id(stored: Stored, part_id: str) -> str:
    return "ANGjdJ" + _b64url(f"{stored.id}:{part_id}".encode()).rstrip("=")


def _normal_subject(subject: str) -> str:
    return re.sub(r"^((re|fwd?)\s*:\s*)+", "", subject.strip(), flags=re.IGNORECASE).lower()


class GmailDelivery(NamedTuple):
    """One Pub/Sub push exactly as Google POSTs it (unpacks as ``body, headers``)."""

    body: bytes
    headers: dict[str, str]


@dataclass
class Stored:
    id: str
    thread_id: str
    raw: bytes
    labels: list[str]
    internal_date: int
    history_id: int
    #: What ``raw`` renders to, per format (``raw`` never changes): parsing and rendering a
    #: message costs milliseconds, which a served thread of many messages would pay per request.
    renders: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def mail(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)


@dataclass
class Mailbox:
    address: str
    messages: dict[str, Stored] = field(default_factory=dict)
    threads: dict[str, list[str]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_id: int = 1000
    #: The oldest startHistoryId history.list still answers; older ones get 404.
    oldest_start: int = 1000


#: How many people write the trial deliveries' emails, each in a thread of their own.
TRIAL_SENDERS = 20
#: The push token a testbed or demo integration is created with (the ``?token=`` of pushes).
PUSH_TOKEN = "testbed-push-token"


class GmailSimulator(Trial):
    """An ASGI app: ``await sim(scope, receive, send)``; mailboxes keyed by access token."""

    def __init__(
        self,
        address: str = "user@example.com",
        token: str = "sim-access-token",
        *,
        refresh_token: str = "sim-refresh-token",
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",
        faults: Faults | None = None,
        history_retention: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.address = address
        self.faults = faults or Faults()
        self.clock = clock
        self.history_retention = history_retention
        self.client = (client_id, client_secret)
        self.mailboxes: dict[str, Mailbox] = {}
        self.tokens: dict[str, str] = {}  # access token -> address
        self.refresh_tokens: dict[str, str] = {}
        self.expired: set[str] = set()
        self.push_endpoint: str | None = None
        #: Every ``users.watch`` call: ``{"address", "topicName", "expiration"}``.
        self.watches: list[dict[str, Any]] = []
        #: Mailboxes whose watch ``users.stop`` ended, in call order.
        self.stopped: list[str] = []
        #: Codes handed out by the consent page, and the account that consents there.
        self.oauth_codes: dict[str, dict[str, Any]] = {}
        self.oauth_account = address
        #: Set to an error (``"access_denied"``) to have the consent page refuse.
        self.oauth_deny: str | None = None
        self._ids = 0x18D1234A000
        self._last_ms = 0
        self._pushes = 0
        self._trial_threads: dict[int, str] = {}  # trial sender -> their thread
        self.add_mailbox(address, token, refresh_token)
        routes = [
            Route("/token", self._token, methods=["POST"]),
            Route("/o/oauth2/v2/auth", self._authorize, methods=["GET"]),
            Route(f"{USERS}/profile", self._profile, methods=["GET"]),
            Route(f"{USERS}/threads", self._threads_list, methods=["GET"]),
            Route(f"{USERS}/threads/{{id}}", self._threads_get, methods=["GET"]),
            Route(f"{USERS}/messages", self._messages_list, methods=["GET"]),
            Route(f"{USERS}/messages/send", self._messages_send, methods=["POST"]),
            Route(f"{USERS}/messages/{{id}}", self._messages_get, methods=["GET"]),
            Route(f"{USERS}/messages/{{id}}", self._messages_delete, methods=["DELETE"]),
            Route(f"{USERS}/messages/{{id}}/trash", self._messages_trash, methods=["POST"]),
            Route(f"{USERS}/messages/{{mid}}/attachments/{{id}}", self._attachment, methods=["GET"]),
            Route(f"{USERS}/history", self._history, methods=["GET"]),
            Route(f"{USERS}/watch", self._watch, methods=["POST"]),
            Route(f"{USERS}/stop", self._stop, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes, exception_handlers={GoogleError: lambda r, e: e.response()})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- a trial (``syncd sim gmail``) ------------------------------------------------------
    trial_roots: ClassVar[dict[str, str]] = {"gmail": "", "google_oauth": "", "google_accounts": ""}

    def trial_seed(self) -> str:
        box, thread = self._box(None), None
        for i, sender in enumerate(("Ana Lima <ana@customer.example>", "Ben Ode <ben@customer.example>") * 2):
            message_id = self.add_incoming(thread, sender, "Order #1001", f"Message {i} about order 1001")
            thread = thread or box.messages[message_id].thread_id
        self._trial_thread = thread
        return f"{len(box.messages)} emails in 1 thread"

    def trial_credentials(self) -> dict[str, Any]:
        token = next(t for t, address in self.tokens.items() if address == self.address)
        return {"accessToken": token, "emailAddress": self.address}

    def trial_chat(self) -> str | None:
        return getattr(self, "_trial_thread", None)

    def trial_inbound(self, text: str) -> None:
        self.add_incoming(self._trial_thread, "Ana Lima <ana@customer.example>", "Re: Order #1001", text)

    def trial_delivery(self, n: int) -> GmailDelivery:
        """Email ``n`` arrives (from one of ``TRIAL_SENDERS`` people, in their thread) and Gmail
        publishes the mailbox's new historyId: the push carries nothing else, so syncd reads
        the email through history.list and messages.get. The email exists from this call on:
        build a delivery when it is due to be sent, not all of them ahead."""
        box, sender = self._box(None), n % TRIAL_SENDERS
        message_id = self.add_incoming(self._trial_threads.get(sender), f"Person {sender} <p{sender}@customer.example>",
                                       f"Trial thread {sender}", f"trial message {n}")
        stored = box.messages[message_id]
        self._trial_threads.setdefault(sender, stored.thread_id)
        self._rendered(stored)  # parsed now, as Gmail keeps it, not when syncd asks for it
        return self.push_notification()

    def trial_history(self, chats: int, messages: int) -> int:
        box = self._box(None)
        for c in range(chats):
            thread = None
            for m in range(messages):
                sent = self.add_incoming(thread, f"Person {m % 3} <person{m % 3}@customer.example>",
                                         f"History thread {c}", f"Message {m} of thread {c}")
                thread = thread or box.messages[sent].thread_id
        for stored in box.messages.values():  # parsed now, as Gmail keeps them, not per request
            self._rendered(stored)
        return chats * messages

    # -- setup and mutations (tests, demo) -------------------------------------------------
    def add_mailbox(self, address: str, token: str, refresh_token: str | None = None) -> Mailbox:
        box = self.mailboxes.setdefault(address.lower(), Mailbox(address))
        self.tokens[token] = box.address
        if refresh_token:
            self.refresh_tokens[refresh_token] = box.address
        return box

    def expire_token(self, token: str) -> None:
        """Make ``token`` answer 401, like an access token past its hour."""
        self.expired.add(token)

    def expire_history(self, address: str | None = None) -> None:
        """Drop every history record: any stored startHistoryId now gets 404."""
        box = self._box(address)
        box.history.clear()
        box.oldest_start = box.history_id

    def add_incoming(
        self,
        thread_id: str | None,
        from_: str,
        subject: str,
        text: str,
        html: str | None = None,
        *,
        to: str | None = None,
        attachments: list[tuple[str, str, bytes]] | None = None,
        charset: str = "utf-8",
        address: str | None = None,
    ) -> str:
        """Deliver an email to the mailbox (into ``thread_id``, replying to its last message)."""
        box = self._box(address)
        mail = email.message.EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = from_, to or box.address, subject
        mail["Date"] = email.utils.formatdate(self._now_ms() / 1000, usegmt=True)
        mail["Message-ID"] = email.utils.make_msgid(domain="sim.example")
        if thread_id is not None:
            last = self._message(box, box.threads[thread_id][-1]).mail
            mail["In-Reply-To"] = last["Message-ID"]
            mail["References"] = " ".join(filter(None, [last.get("References"), last["Message-ID"]]))
        mail.set_content(text, charset=charset)
        if html is not None:
            mail.add_alternative(html, subtype="html", charset=charset)
        for name, mime, data in attachments or []:
            maintype, _, subtype = mime.partition("/")
            mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        return self._store(box, mail.as_bytes(), ["INBOX", "UNREAD"], thread_id).id

    def trash(self, message_id: str, address: str | None = None) -> None:
        box = self._box(address)
        message = self._message(box, message_id)
        if "TRASH" not in message.labels:
            message.labels = [label for label in message.labels if label != "INBOX"] + ["TRASH"]
            self._record(box, [message], labelsAdded=[{"message": self._ref(message), "labelIds": ["TRASH"]}])

    def delete(self, message_id: str, address: str | None = None) -> None:
        """Delete permanently (a ``messageDeleted`` history record)."""
        box = self._box(address)
        message = box.messages.pop(message_id)
        box.threads[message.thread_id].remove(message_id)
        if not box.threads[message.thread_id]:
            del box.threads[message.thread_id]
        self._record(box, [message], messagesDeleted=[{"message": self._ref(message)}])

    def truth(self, thread_id: str, address: str | None = None) -> list[dict[str, Any]]:
        """The thread's current messages, decoded, for comparing with what syncd stored."""
        box = self._box(address)
        out = []
        for message_id in box.threads.get(thread_id, []):
            stored = box.messages[message_id]
            mail = stored.mail
            text = mail.get_body(("plain",))
            html = mail.get_body(("html",))
            out.append({
                "id": stored.id, "threadId": stored.thread_id, "labelIds": list(stored.labels),
                "from": mail["From"], "to": mail["To"], "subject": mail["Subject"],
                "messageId": mail["Message-ID"], "inReplyTo": mail["In-Reply-To"],
                "references": mail["References"],
                "text": text.get_content() if text is not None else None,
                "html": html.get_content() if html is not None else None,
                "trashed": "TRASH" in stored.labels, "internalDate": stored.internal_date,
            })
        return out

    def push_notification(self, url_with_token: str | None = None, address: str | None = None) -> GmailDelivery:
        """A Pub/Sub push of the mailbox's current historyId, as Google sends it.

        ``url_with_token`` is the subscription's push endpoint (remembered for ``deliver``).
        """
        box = self._box(address)
        if url_with_token:
            self.push_endpoint = url_with_token
        self._pushes += 1
        data = json.dumps({"emailAddress": box.address, "historyId": str(box.history_id)}).encode()
        published = datetime.fromtimestamp(self.clock(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message_id = str(2070443601311540 + self._pushes)
        envelope = {
            "message": {"data": base64.b64encode(data).decode(), "messageId": message_id,
                        "message_id": message_id, "publishTime": published, "publish_time": published},
            "subscription": "projects/syncd-sim/subscriptions/gmail-push",
        }
        headers = {"content-type": "application/json",
                   "user-agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"}
        return GmailDelivery(json.dumps(envelope).encode(), headers)

    async def deliver(self, http_client: httpx.AsyncClient, url: str | None, delivery: GmailDelivery) -> httpx.Response:
        """POST one push to ``url`` (or the remembered push endpoint) the way Pub/Sub does."""
        body, headers = delivery
        if not (url or self.push_endpoint):
            raise ValueError("no push endpoint: pass url or call push_notification(url_with_token) first")
        return await http_client.post(url or self.push_endpoint or "", content=body, headers=headers)

    # -- storage ----------------------------------------------------------------------------
    def _box(self, address: str | None) -> Mailbox:
        return self.mailboxes[(address or self.address).lower()]

    def _now_ms(self) -> int:
        self._last_ms = max(self._last_ms + 1, int(self.clock() * 1000))
        return self._last_ms

    def _message(self, box: Mailbox, message_id: str) -> Stored:
        if message_id not in box.messages:
            raise GoogleError(404, "Requested entity was not found.", "notFound")
        return box.messages[message_id]

    @staticmethod
    def _ref(message: Stored) -> dict[str, Any]:
        return {"id": message.id, "threadId": message.thread_id, "labelIds": list(message.labels)}

    def _store(self, box: Mailbox, raw: bytes, labels: list[str], thread_id: str | None) -> Stored:
        self._ids += 0x1F
        message_id = format(self._ids, "x")
        thread_id = thread_id or message_id  # Gmail names a thread after its first message
        stored = Stored(message_id, thread_id, raw, labels, self._now_ms(), 0)
        box.messages[message_id] = stored
        box.threads.setdefault(thread_id, []).append(message_id)
        self._record(box, [stored], messagesAdded=[{"message": self._ref(stored)}])
        return stored

    def _record(self, box: Mailbox, messages: list[Stored], **changes: Any) -> None:
        box.history_id += 1
        for message in messages:
            message.history_id = box.history_id
        refs = [{"id": m.id, "threadId": m.thread_id} for m in messages]
        box.history.append({"id": str(box.history_id), "messages": refs, **changes})
        if self.history_retention is not None and len(box.history) > self.history_retention:
            dropped = box.history.pop(0)
            box.oldest_start = int(dropped["id"])

    # -- resources ----------------------------------------------------------------------------
    def _resource(self, stored: Stored, fmt: str, only_headers: list[str]) -> dict[str, Any]:
        # Labels and the history id change; the rest is the message's bytes, rendered once.
        out: dict[str, Any] = {"id": stored.id, "threadId": stored.thread_id, "labelIds": list(stored.labels),
                               "historyId": str(stored.history_id), "internalDate": str(stored.internal_date)}
        full = self._rendered(stored)
        out |= {"snippet": full["snippet"], "sizeEstimate": len(stored.raw)}
        if fmt == "raw":
            out["raw"] = _b64url(stored.raw)
        elif fmt == "metadata":
            wanted = {h.lower() for h in only_headers}
            payload = full["payload"]
            headers = [h for h in payload["headers"] if not wanted or h["name"].lower() in wanted]
            out["payload"] = {"mimeType": payload["mimeType"], "headers": headers}
        elif fmt == "full":
            out["payload"] = full["payload"]
        return out

    def _rendered(self, stored: Stored) -> dict[str, Any]:
        """The snippet and ``format=full`` payload of ``stored``, parsed once."""
        if "full" not in stored.renders:
            mail = stored.mail
            body = mail.get_body(("plain", "html"))
            snippet = " ".join(body.get_content().split())[:140] if body is not None else ""
            stored.renders["full"] = {"snippet": snippet, "payload": self._part(stored, mail, "")}
        return stored.renders["full"]

    def _part(self, stored: Stored, part: email.message.Message, part_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "partId": part_id, "mimeType": part.get_content_type(), "filename": part.get_filename() or "",
            "headers": [{"name": k, "value": str(v)} for k, v in part.items()],
        }
        if part.is_multipart():
            out["body"] = {"size": 0}
            prefix = f"{part_id}." if part_id else ""
            out["parts"] = [self._part(stored, p, f"{prefix}{i}") for i, p in enumerate(part.get_payload())]
            return out
        data = cast(bytes, part.get_payload(decode=True) or b"")  # a leaf part: its bytes
        if out["filename"]:
            out["body"] = {"attachmentId": _attachment_id(stored, part_id), "size": len(data)}
        else:
            out["body"] = {"size": len(data), "data": _b64url(data)}
        return out

    # -- request plumbing ---------------------------------------------------------------------
    async def _enter(self, request: Request, endpoint: str) -> Mailbox:
        """Faults, then bearer auth, then the userId check; returns the caller's mailbox."""
        fault = await self.faults.check(endpoint)
        if fault is not None:
            raise self._fault_error(fault)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens or token in self.expired:
            raise GoogleError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
                "authError",
                {"www-authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
            )
        box = self.mailboxes[self.tokens[token].lower()]
        user = request.path_params.get("userId", "me")
        if user != "me" and user.lower() != box.address.lower():
            raise GoogleError(403, f"Delegation denied for {box.address}", "forbidden")
        return box

    @staticmethod
    def _fault_error(fault: Fault) -> GoogleError:
        headers = {"retry-after": str(fault.retry_after_s)} if fault.retry_after_s is not None else {}
        if fault.kind == "rate_limit" and fault.status == 403:
            return GoogleError(403, "User-rate limit exceeded.", "userRateLimitExceeded", headers)
        if fault.kind == "rate_limit":
            return GoogleError(fault.status, "Too many concurrent requests for user.", "rateLimitExceeded", headers)
        return GoogleError(fault.status, "Backend Error", "backendError")

    @staticmethod
    def _page(items: list[Any], request: Request, default: int = 100) -> tuple[list[Any], str | None]:
        """Offset pages behind an opaque-looking token; maxResults capped at 500 as Google does."""
        try:
            size = min(int(request.query_params.get("maxResults", default)), 500)
            start = int(request.query_params.get("pageToken") or 0)
        except ValueError:
            raise GoogleError(400, "Invalid pageToken or maxResults", "invalidArgument") from None
        size = size if size > 0 else default
        end = start + size
        return items[start:end], (f"{end:020d}" if end < len(items) else None)

    @staticmethod
    def _visible(request: Request, stored: Stored) -> bool:
        spam_trash = request.query_params.get("includeSpamTrash", "false").lower() == "true"
        wanted = request.query_params.getlist("labelIds")
        if not spam_trash and ({"TRASH", "SPAM"} & set(stored.labels)):
            return False
        # Of Gmail's search operators, only rfc822msgid: (what syncd searches a lost send by).
        query = request.query_params.get("q", "").strip()
        if query.startswith("rfc822msgid:"):
            wanted_id = query.removeprefix("rfc822msgid:").strip().strip("<>")
            if str(stored.mail.get("message-id", "")).strip().strip("<>") != wanted_id:
                return False
        return all(label in stored.labels for label in wanted)

    # -- endpoints ------------------------------------------------------------------------------
    async def _profile(self, request: Request) -> Response:
        box = await self._enter(request, "profile")
        return JSONResponse({"emailAddress": box.address, "messagesTotal": len(box.messages),
                             "threadsTotal": len(box.threads), "historyId": str(box.history_id)})

    async def _threads_list(self, request: Request) -> Response:
        box = await self._enter(request, "threads.list")
        rows = []
        for thread_id, ids in box.threads.items():
            visible = [box.messages[i] for i in ids if self._visible(request, box.messages[i])]
            if visible:
                rows.append((max(m.internal_date for m in visible), thread_id, visible[-1]))
        rows.sort(key=lambda r: r[0], reverse=True)
        page, token = self._page(rows, request)
        body: dict[str, Any] = {"resultSizeEstimate": len(rows)}
        if page:
            body["threads"] = [{"id": t, "snippet": self._resource(last, "minimal", [])["snippet"],
                                "historyId": str(max(box.messages[i].history_id for i in box.threads[t]))}
                               for _, t, last in page]
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    async def _threads_get(self, request: Request) -> Response:
        box = await self._enter(request, "threads.get")
        thread_id = request.path_params["id"]
        if thread_id not in box.threads:
            raise GoogleError(404, "Requested entity was not found.", "notFound")
        fmt = request.query_params.get("format", "full")
        if fmt not in ("full", "metadata", "minimal"):
            raise GoogleError(400, f"Invalid value at 'format' ({fmt})", "invalidArgument")
        headers = request.query_params.getlist("metadataHeaders")
        messages = [self._resource(box.messages[i], fmt, headers) for i in box.threads[thread_id]]
        history_id = max(int(m["historyId"]) for m in messages)
        return JSONResponse({"id": thread_id, "historyId": str(history_id), "messages": messages})

    async def _messages_list(self, request: Request) -> Response:
        box = await self._enter(request, "messages.list")
        rows = sorted((m for m in box.messages.values() if self._visible(request, m)),
                      key=lambda m: m.internal_date, reverse=True)
        page, token = self._page(rows, request)
        body: dict[str, Any] = {"resultSizeEstimate": len(rows)}
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    async def _messages_get(self, request: Request) -> Response:
        box = await self._enter(request, "messages.get")
        fmt = request.query_params.get("format", "full")
        if fmt not in ("full", "metadata", "minimal", "raw"):
            raise GoogleError(400, f"Invalid value at 'format' ({fmt})", "invalidArgument")
        stored = self._message(box, request.path_params["id"])
        return JSONResponse(self._resource(stored, fmt, request.query_params.getlist("metadataHeaders")))

    async def _messages_send(self, request: Request) -> Response:
        box = await self._enter(request, "messages.send")
        try:
            body = await request.json()
            raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
        except (ValueError, KeyError, TypeError):
            raise GoogleError(400, "'raw' RFC822 payload message string or uploading message via /upload/* URL required", "invalidArgument") from None
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        if not mail.get("To") and not mail.get("Cc") and not mail.get("Bcc"):
            raise GoogleError(400, "Invalid To header", "invalidArgument")
        if not mail.get("Message-ID"):
            mail["Message-ID"] = email.utils.make_msgid(domain="mail.gmail.com")
        thread_id = body.get("threadId")
        if thread_id is not None:
            if thread_id not in box.threads:
                raise GoogleError(404, "Requested entity was not found.", "notFound")
            first = box.messages[box.threads[thread_id][0]].mail
            # Gmail threads a sent message only when its Subject matches the thread's.
            if _normal_subject(str(mail.get("Subject", ""))) != _normal_subject(str(first.get("Subject", ""))):
                thread_id = None
        stored = self._store(box, mail.as_bytes(), ["SENT"], thread_id)
        return JSONResponse({"id": stored.id, "threadId": stored.thread_id, "labelIds": list(stored.labels)})

    async def _messages_trash(self, request: Request) -> Response:
        box = await self._enter(request, "messages.trash")
        stored = self._message(box, request.path_params["id"])
        self.trash(stored.id, box.address)
        return JSONResponse(self._ref(stored))

    async def _messages_delete(self, request: Request) -> Response:
        box = await self._enter(request, "messages.delete")
        self.delete(self._message(box, request.path_params["id"]).id, box.address)
        return Response(status_code=204)

    async def _attachment(self, request: Request) -> Response:
        box = await self._enter(request, "messages.attachments.get")
        stored = self._message(box, request.path_params["mid"])
        stack = [(stored.mail, "")]
        while stack:
            part, part_id = stack.pop()
            if part.is_multipart():
                prefix = f"{part_id}." if part_id else ""
                stack += [(p, f"{prefix}{i}") for i, p in enumerate(part.get_payload())]
            elif _attachment_id(stored, part_id) == request.path_params["id"]:
                data = cast(bytes, part.get_payload(decode=True) or b"")  # a leaf part: its bytes
                return JSONResponse({"attachmentId": request.path_params["id"], "size": len(data), "data": _b64url(data)})
        raise GoogleError(404, "Requested entity was not found.", "notFound")

    async def _history(self, request: Request) -> Response:
        box = await self._enter(request, "history.list")
        try:
            start = int(request.query_params["startHistoryId"])
        except (KeyError, ValueError):
            raise GoogleError(400, "Invalid startHistoryId", "invalidArgument") from None
        if start < box.oldest_start:
            raise GoogleError(404, "Requested entity was not found.", "notFound")
        types = {HISTORY_KEYS.get(t, t) for t in request.query_params.getlist("historyTypes")}
        records = []
        for record in box.history:
            if int(record["id"]) <= start:
                continue
            if types:
                kept = {k: v for k, v in record.items() if k in ("id", "messages") or k in types}
                if len(kept) == 2:
                    continue
                record = kept
            records.append(record)
        page, token = self._page(records, request)
        body: dict[str, Any] = {"historyId": str(box.history_id)}
        if page:
            body["history"] = page
        if token:
            body["nextPageToken"] = token
        return JSONResponse(body)

    async def _watch(self, request: Request) -> Response:
        box = await self._enter(request, "watch")
        try:
            topic = (await request.json()).get("topicName")
        except ValueError:
            topic = None
        if not topic:
            raise GoogleError(400, "Invalid topicName does not match projects/SOME-PROJECT/topics/SOME-TOPIC", "invalidArgument")
        expiration = self._now_ms() + SEVEN_DAYS_MS
        self.watches.append({"address": box.address, "topicName": topic, "expiration": expiration})
        return JSONResponse({"historyId": str(box.history_id), "expiration": str(expiration)})

    async def _stop(self, request: Request) -> Response:
        # A mailbox has one watch at a time; users.stop ends it (and answers 204 when there is none).
        box = await self._enter(request, "stop")
        self.watches = [w for w in self.watches if w["address"] != box.address]
        self.stopped.append(box.address)
        return Response(status_code=204)

    async def _authorize(self, request: Request) -> Response:
        """Google's consent page: ``oauth_account`` approves at once (or refuses, ``oauth_deny``)."""
        q = request.query_params
        if q.get("client_id") != self.client[0]:
            return HTMLResponse("<h1>Error 401: invalid_client</h1><p>The OAuth client was not found.</p>", 401)
        redirect_uri = q.get("redirect_uri")
        if not redirect_uri:
            return HTMLResponse("<h1>Error 400: invalid_request</h1>"
                                "<p>Missing required parameter: redirect_uri</p>", 400)
        if q.get("response_type") != "code" or not q.get("scope"):
            return HTMLResponse("<h1>Error 400: invalid_request</h1>", 400)
        back: dict[str, str] = {}
        if q.get("state") is not None:
            back["state"] = q["state"]
        if self.oauth_deny:
            back["error"] = self.oauth_deny
        else:
            scopes = [SCOPE_NAMES.get(s, s) for s in q["scope"].split()]
            code = "4/0A" + secrets.token_urlsafe(40)
            self.oauth_codes[code] = {"redirect_uri": redirect_uri, "scopes": scopes, "account": self.oauth_account,
                                      "offline": q.get("access_type") == "offline",
                                      "expires": self.clock() + OAUTH_CODE_TTL_S}
            back.update(code=code, scope=" ".join(scopes), authuser="0", prompt="consent")
        return RedirectResponse(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(back)}", 302)

    async def _token(self, request: Request) -> Response:
        """Google's OAuth token endpoint (refresh and authorization-code grants); its errors are
        OAuth's, not the API's."""
        fault = await self.faults.check("token")
        if fault is not None:
            raise self._fault_error(fault)
        form = parse_qs((await request.body()).decode())
        got = {k: v[0] for k, v in form.items()}
        grant = got.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, 400)
        if (got.get("client_id"), got.get("client_secret")) != self.client:
            return JSONResponse({"error": "invalid_client", "error_description": "Unauthorized"}, 401)
        if grant == "authorization_code":
            return self._exchange_code(got)
        address = self.refresh_tokens.get(got.get("refresh_token", ""))
        if address is None:
            return JSONResponse({"error": "invalid_grant", "error_description": "Bad Request"}, 400)
        token = f"ya29.sim-{len(self.tokens)}-{self._now_ms()}"
        self.tokens[token] = address
        return JSONResponse({"access_token": token, "expires_in": 3599, "token_type": "Bearer",
                             "scope": "https://www.googleapis.com/auth/gmail.modify"})

    def _exchange_code(self, got: dict[str, str]) -> Response:
        grant = self.oauth_codes.pop(got.get("code", ""), None)
        if grant is None or grant["expires"] < self.clock():
            return JSONResponse({"error": "invalid_grant", "error_description": "Malformed auth code."}, 400)
        if got.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "redirect_uri_mismatch", "error_description": "Bad Request"}, 400)
        token = f"ya29.sim-{len(self.tokens)}-{self._now_ms()}"
        box = self.add_mailbox(grant["account"], token)
        answer: dict[str, Any] = {"access_token": token, "expires_in": 3599, "token_type": "Bearer",
                                  "scope": " ".join(grant["scopes"])}
        if grant["offline"]:
            refresh = "1//0g" + secrets.token_urlsafe(30)
            self.refresh_tokens[refresh] = box.address
            answer["refresh_token"] = refresh
        if "openid" in grant["scopes"]:
            answer["id_token"] = self._id_token(box.address)
        return JSONResponse(answer)

    def _id_token(self, address: str) -> str:
        """An ID token shaped like Google's (RS256 header, standard claims); its signature is
        random bytes, since no client may trust one it did not get straight from this endpoint."""
        now = int(self.clock())
        header = {"alg": "RS256", "kid": "sim-key-1", "typ": "JWT"}
        claims = {"iss": "https://accounts.google.com", "azp": self.client[0], "aud": self.client[0],
                  "sub": str(100000000000000000000 + sum(address.encode())), "email": address,
                  "email_verified": True, "at_hash": secrets.token_urlsafe(16), "iat": now, "exp": now + 3600}
        parts = [json.dumps(header).encode(), json.dumps(claims).encode(), secrets.token_bytes(256)]
        return ".".join(_b64url(p).rstrip("=") for p in parts)


SIMULATOR = GmailSimulator
