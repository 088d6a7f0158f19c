"""The MessageBird SMS REST API as a simulator: one account, its originator and its messages.

Endpoints (``Authorization: AccessKey <key>``): ``GET /balance``; ``GET /messages`` (newest
first, ``limit``/``offset`` paging with ``count``, ``totalCount`` and ``links``, filtered by
``originator``, ``recipient``, ``direction`` and ``status``); ``GET /messages/{id}``;
``POST /messages`` (JSON or form; ``recipients`` a list or a comma-separated string; 201 with
the message object, 32-hex ids). Errors are MessageBird's ``{"errors": [{code, description,
parameter}]}``: 401 code 2 for a wrong key, 404 code 20, 422 code 9/10 for bad parameters,
429 (with ``Retry-After``) and 5xx from ``faults``.

Webhooks are built as MessageBird calls them: an inbound SMS as a form POST (or GET query
parameters), a status report as GET query parameters, each signed with the signing key by
``MessageBird-Signature-JWT`` (HS256; ``url_hash`` of the URL called with its query,
``payload_hash`` of a non-empty body) and/or the legacy ``MessageBird-Signature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

ROOT = "https://rest.messagebird.com"
MAX_LIMIT = 450
#: A message status and the state syncd keeps for it.
STATES = {"scheduled": "pending", "sent": "sent", "buffered": "sent", "delivered": "delivered",
          "expired": "failed", "delivery_failed": "failed"}


@dataclass
class MessageBirdDelivery:
    """A webhook call as MessageBird makes it: method, query string, raw body, headers."""

    method: str
    query: str
    body: bytes
    headers: dict[str, str]


@dataclass
class SmsMessage:
    id: str
    direction: str  # "mt" (sent by the account) or "mo" (received)
    originator: str
    recipient: str
    body: str
    created: datetime
    status: str = "sent"
    reference: str | None = None
    report_url: str | None = None

    @property
    def counterpart(self) -> str:
        return self.recipient if self.direction == "mt" else self.originator

    def as_json(self) -> dict[str, Any]:
        stamp = _iso(self.created)
        recipient: Any = int(self.recipient) if self.recipient.isdigit() else self.recipient
        return {
            "id": self.id, "href": f"{ROOT}/messages/{self.id}", "direction": self.direction, "type": "sms",
            "originator": self.originator, "body": self.body, "reference": self.reference, "validity": None,
            "gateway": 10, "typeDetails": {}, "datacoding": "plain", "mclass": 1, "scheduledDatetime": None,
            "createdDatetime": stamp,
            "recipients": {"totalCount": 1, "totalSentCount": 1,
                           "totalDeliveredCount": int(self.status == "delivered"),
                           "totalDeliveryFailedCount": int(self.status == "delivery_failed"),
                           "items": [{"recipient": recipient, "status": self.status, "statusDatetime": stamp}]},
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _error(status: int, code: int, description: str, parameter: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "description": description, "parameter": parameter}]},
                        status_code=status, headers=headers)


@dataclass
class MessageBirdSimulator(Trial):
    """One account (``access_key``, ``originator``, ``signing_key``); an ASGI app."""

    access_key: str = field(default_factory=lambda: "live_" + secrets.token_urlsafe(18))
    signing_key: str = field(default_factory=lambda: secrets.token_hex(32))
    originator: str = "3197010260001"
    faults: Faults = field(default_factory=Faults)
    messages: dict[str, SmsMessage] = field(default_factory=dict)
    #: The public URL syncd was given (inbound SMS and status reports go there).
    webhook_url: str = "https://syncd.example/webhooks/messagebird/unknown"
    sent_bodies: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._order: dict[str, int] = {}  # creation order: ties of the same second stay in order
        #: ``newest_first`` and its messages by originator and by recipient, for the size of
        #: ``messages`` and ``_order`` they were built at: every list request would sort them.
        self._sorted: tuple[tuple[int, int], list[SmsMessage], dict[tuple[str, str], list[SmsMessage]]] | None = None
        self.app = Starlette(routes=[
            Route("/balance", self._balance, methods=["GET"]),
            Route("/messages", self._list, methods=["GET"]),
            Route("/messages", self._create, methods=["POST"]),
            Route("/messages/{id}", self._one, methods=["GET"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    #: ``syncd sim messagebird``: the REST root is the simulator's own.
    trial_roots: ClassVar[dict[str, str]] = {"messagebird": ""}

    def trial_credentials(self) -> dict[str, Any]:
        return {"accessKey": self.access_key, "originator": self.originator, "signingKey": self.signing_key}

    def trial_seed(self) -> str:
        for i, number in enumerate(("31612345678", "31687654321")):
            self.add("mo", number, f"hello from {number}", minutes_ago=30 - i)
            self.add("mt", number, f"welcome {number}", minutes_ago=20 - i)
        return "2 conversations of 2 messages"

    def trial_chat(self) -> str | None:
        return "31612345678"

    def trial_webhook(self, created: dict[str, Any]) -> str:
        """The inbound URL; kept, since a delivery signs the exact URL it is sent to."""
        self.webhook_url = str(created["integration"]["webhookUrl"])
        return self.webhook_url

    def trial_delivery(self, n: int) -> MessageBirdDelivery:
        """An SMS from one of 20 numbers, posted to the inbound URL and signed (JWT)."""
        return self.inbound(f"3162{n % 20:08d}", f"trial message {n}")

    def trial_history(self, chats: int, messages: int) -> int:
        """``chats`` numbers that each sent ``messages`` SMS to the account."""
        for c in range(chats):
            number = f"316{c:08d}"
            for m in range(messages):
                self.add("mo", number, f"message {m} from {number}", minutes_ago=10 * (messages - m) + c)
        return chats * messages

    # -- the account's messages -----------------------------------------------------------------
    def add(self, direction: str, counterpart: str, text: str, *, minutes_ago: float = 0,
            status: str | None = None) -> SmsMessage:
        """A message in the account's history, sent to or received from ``counterpart``."""
        created = datetime.fromtimestamp(time.time() - minutes_ago * 60, tz=UTC)
        mine, theirs = self.originator, counterpart
        message = SmsMessage(secrets.token_hex(16), direction, mine if direction == "mt" else theirs,
                             theirs if direction == "mt" else mine, text, created,
                             status or ("sent" if direction == "mt" else "delivered"))
        message.created = message.created.replace(microsecond=0)
        self._order[message.id] = len(self._order)
        self.messages[message.id] = message
        return message

    def newest_first(self) -> list[SmsMessage]:
        return list(self._index()[1])

    def _index(self) -> tuple[Any, list[SmsMessage], dict[tuple[str, str], list[SmsMessage]]]:
        # Messages are only added (and, by the demo, popped): their counts tell a stale index.
        version = (len(self.messages), len(self._order))
        if self._sorted is None or self._sorted[0] != version:
            ordered = sorted(self.messages.values(), key=lambda m: (m.created, self._order[m.id]), reverse=True)
            by: dict[tuple[str, str], list[SmsMessage]] = {}
            for m in ordered:
                by.setdefault(("originator", m.originator), []).append(m)
                by.setdefault(("recipient", m.recipient), []).append(m)
            self._sorted = (version, ordered, by)
        return self._sorted

    # -- the API --------------------------------------------------------------------------------
    async def _guard(self, request: Request, endpoint: str) -> JSONResponse | None:
        fault = await self.faults.check(endpoint)
        if fault is not None and fault.kind == "rate_limit":
            return _error(429, 429, "Too many requests", headers={"Retry-After": str(fault.retry_after_s or 1)})
        if fault is not None:
            return _error(fault.status, 500, "Internal server error")
        if request.headers.get("authorization") != f"AccessKey {self.access_key}":
            return _error(401, 2, "Request not allowed (incorrect access_key)", "access_key")
        return None

    async def _balance(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "balance")
        return refused or JSONResponse({"payment": "prepaid", "type": "credits", "amount": 100.0})

    async def _one(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "message")
        if refused is not None:
            return refused
        message = self.messages.get(request.path_params["id"])
        return JSONResponse(message.as_json()) if message else _error(404, 20, "message not found", None)

    async def _list(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "messages")
        if refused is not None:
            return refused
        q = request.query_params
        try:
            limit, offset = int(q.get("limit", 20)), int(q.get("offset", 0))
        except ValueError:
            return _error(422, 10, "limit and offset are numbers", "limit")
        if not 0 < limit <= MAX_LIMIT or offset < 0:
            return _error(422, 10, f"limit is 1 to {MAX_LIMIT}, offset at least 0", "limit")
        _, ordered, by = self._index()
        party = next(((name, q[name]) for name in ("originator", "recipient") if q.get(name) is not None), None)
        found = [m for m in (ordered if party is None else by.get(party, []))
                 if all(q.get(name) in (None, value) for name, value in (
                     ("originator", m.originator), ("recipient", m.recipient),
                     ("direction", m.direction), ("status", m.status)))]
        page = found[offset:offset + limit]
        return JSONResponse({"offset": offset, "limit": limit, "count": len(page), "totalCount": len(found),
                             "links": self._links(request, offset, limit, len(found)),
                             "items": [m.as_json() for m in page]})

    @staticmethod
    def _links(request: Request, offset: int, limit: int, total: int) -> dict[str, str | None]:
        def at(where: int) -> str:
            query = {**request.query_params, "offset": str(where), "limit": str(limit)}
            return f"{ROOT}/messages/?{urlencode(query)}"
        last = max(0, (total - 1) // limit * limit)
        return {"first": at(0), "previous": at(max(0, offset - limit)) if offset else None,
                "next": at(offset + limit) if offset + limit < total else None, "last": at(last)}

    async def _create(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "send")
        if refused is not None:
            return refused
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip().startswith(b"{") else dict(parse_qsl(raw.decode()))
        except ValueError:
            return _error(422, 9, "the body is not JSON", None)
        recipients = body.get("recipients")
        numbers = [str(r).strip() for r in (recipients.split(",") if isinstance(recipients, str) else recipients or [])]
        if not numbers or not all(n.isdigit() for n in numbers):
            return _error(422, 9, "no (correct) recipients found", "recipients")
        if not body.get("originator"):
            return _error(422, 9, "originator is required", "originator")
        if not body.get("body"):
            return _error(422, 9, "body is required", "body")
        self.sent_bodies.append(body)
        message = self.add("mt", numbers[0], str(body["body"]))
        message.originator, message.reference = str(body["originator"]), body.get("reference")
        message.report_url = body.get("reportUrl")
        return JSONResponse(message.as_json(), status_code=201)

    # -- webhooks -------------------------------------------------------------------------------
    def sign(self, method: str, params: dict[str, str], body: bytes = b"", *, url: str | None = None,
             jwt_header: bool = True, legacy: bool = False, key: str | None = None,
             now: float | None = None) -> MessageBirdDelivery:
        """A call to ``url`` (the webhook URL) with ``params`` as its query, signed."""
        key, now = key or self.signing_key, time.time() if now is None else now
        query = urlencode(params)
        called = (url or self.webhook_url) + (f"?{query}" if query else "")
        headers = {"user-agent": "MessageBird/Webhooks"}
        if body:
            headers["content-type"] = "application/x-www-form-urlencoded"
        if jwt_header:
            claims: dict[str, Any] = {"iss": "MessageBird", "nbf": int(now), "exp": int(now) + 60,
                                      "jti": str(uuid.uuid4()), "url_hash": hashlib.sha256(called.encode()).hexdigest()}
            if body:
                claims["payload_hash"] = hashlib.sha256(body).hexdigest()
            headers["messagebird-signature-jwt"] = jwt.encode(claims, key, algorithm="HS256")
        if legacy:
            stamp = str(int(now))
            payload = f"{stamp}\n{urlencode(sorted(params.items()))}\n".encode() + hashlib.sha256(body).digest()
            headers["messagebird-request-timestamp"] = stamp
            headers["messagebird-signature"] = base64.b64encode(hmac.new(key.encode(), payload, hashlib.sha256).digest()).decode()
        return MessageBirdDelivery(method, query, body, headers)

    def inbound(self, counterpart: str, text: str, *, method: str = "POST", **signing: Any) -> MessageBirdDelivery:
        """An SMS from ``counterpart`` to the account's number, as the inbound URL gets it."""
        message = self.add("mo", counterpart, text)
        fields = {"id": message.id, "recipient": self.originator, "originator": counterpart, "body": text,
                  "createdDatetime": _iso(message.created)}
        if method == "GET":
            return self.sign("GET", fields, **signing)
        return self.sign("POST", {}, urlencode(fields).encode(), **signing)

    def status_report(self, message_id: str, status: str, **signing: Any) -> MessageBirdDelivery:
        """A status report for a sent message, as GET query parameters to its report URL."""
        message = self.messages[message_id]
        message.status = status
        params = {"id": message.id, **({"reference": message.reference} if message.reference else {}),
                  "recipient": message.recipient, "status": status, "statusDatetime": _iso(datetime.now(tz=UTC)),
                  "mccmnc": "20408", "ported": "0"}
        if status == "delivery_failed":
            params |= {"statusReason": "unknown subscriber", "statusErrorCode": "1"}
        return self.sign("GET", params, url=signing.pop("url", None) or message.report_url, **signing)

    def truth(self) -> list[SmsMessage]:
        return list(reversed(self.newest_first()))


SIMULATOR = MessageBirdSimulator
