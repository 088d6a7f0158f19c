"""get.chat's Team Inbox as a simulator: the Integration API of one WhatsApp number, and the
Inbox's side of the external-plugin contract (it calls the plugin, as get.chat's admin panel does).

Integration API (root ``/api/v1``, ``Authorization: Token <token>``; a wrong token 401, none 403):
``GET /chats/`` (most recent first, DRF pages ``{count, next, previous, results}`` by
``limit``/``offset``), ``GET /messages/`` (newest first; ``wa_id``, ``limit``, ``offset``,
``before_time``), ``POST /messages/`` (text; 202 ``{id}``: queued, delivered later, its
statuses built with :meth:`status`). ``faults.fail_next("messages")`` injects 429/5xx.

Webhooks are the WABA format get.chat propagates to the plugin's ``/webhook``: nothing signs them.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

ROOT = "https://demo-stack.inbox.platform.get.chat/api/v1"


@dataclass
class GetchatDelivery:
    """A propagated webhook: the raw body, its headers and the payload."""

    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class GetchatMessage:
    id: str
    wa_id: str
    text: str
    from_us: bool
    timestamp: int
    state: str | None = None


@dataclass
class GetchatSimulator(Trial):
    """One Inbox (one number) with its chats; an ASGI app."""

    token: str = field(default_factory=lambda: secrets.token_hex(20))
    phone_number_id: str = "106540352242922"
    faults: Faults = field(default_factory=Faults)
    names: dict[str, str] = field(default_factory=dict)
    messages: list[GetchatMessage] = field(default_factory=list)
    sent_bodies: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._clock = itertools.count(int(time.time()) - 86_400)
        self.app = Starlette(routes=[
            Route("/api/v1/", self._health, methods=["GET"]),
            Route("/api/v1/chats/", self._chats, methods=["GET"]),
            Route("/api/v1/messages/", self._list_messages, methods=["GET"]),
            Route("/api/v1/messages/", self._send, methods=["POST"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    #: ``syncd sim getchat``: the Integration API is served under ``/api/v1``; the credentials
    #: then name the simulator's own root (``apiUrl`` wins over any configured root).
    trial_roots: ClassVar[dict[str, str]] = {"getchat": "/api/v1"}
    trial_root: str = ROOT

    def trial_base_urls(self, url: str) -> dict[str, str]:
        roots = super().trial_base_urls(url)
        self.trial_root = roots["getchat"]
        return roots

    def trial_seed(self) -> str:
        self.seed("4915112345678", "Ann Ames", [("hello", False), ("hi Ann, how can we help?", True)])
        self.seed("4915187654321", "Bo Berg", [("is my order on its way?", False)])
        return f"{len(self.messages)} messages in 2 chats"

    def trial_chat(self) -> str:
        return "4915112345678"

    def trial_history(self, chats: int, messages: int) -> int:
        """``chats`` customers who each wrote ``messages`` messages."""
        for c in range(chats):
            self.seed(f"49151{c:08d}", f"Customer {c}", [(f"message {m} from customer {c}", False)
                                                          for m in range(messages)])
        return chats * messages

    def trial_delivery(self, n: int) -> GetchatDelivery:
        """A customer's message from one of 20 customers, as the Inbox propagates it."""
        return self.incoming(f"49152{n % 20:08d}", f"trial message {n}")

    def trial_webhook(self, created: dict[str, Any]) -> str:
        """The plugin's webhook: under the plugin URL the creation answer gives to paste."""
        return f"{created['integration']['pluginUrl']}/webhook"

    def trial_credentials(self) -> dict[str, str]:
        return {"apiUrl": self.trial_root, "apiToken": self.token}

    def configure_body(self) -> dict[str, str]:
        """What the Inbox posts to the plugin's ``/configure_api``."""
        return {"api_url": ROOT + "/", "api_token": self.token}

    # -- the Integration API ------------------------------------------------------------------
    def _refused(self, request: Request) -> JSONResponse | None:
        given = request.headers.get("authorization", "")
        if not given:
            return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=403)
        if given != f"Token {self.token}":
            return JSONResponse({"detail": "Invalid token."}, status_code=401)
        return None

    async def _fault(self, endpoint: str) -> JSONResponse | None:
        fault = await self.faults.check(endpoint)
        if fault is None:
            return None
        if fault.kind == "server_error":
            return JSONResponse({"detail": "Server error."}, status_code=fault.status)
        return JSONResponse({"detail": "Request was throttled."}, status_code=429, headers={"Retry-After": "1"})

    async def _health(self, request: Request) -> JSONResponse:
        return self._refused(request) or JSONResponse({})

    def _page(self, request: Request, items: list[dict[str, Any]]) -> JSONResponse:
        q = request.query_params
        try:
            limit, offset = int(q.get("limit") or 20), int(q.get("offset") or 0)
        except ValueError:
            return JSONResponse({"reason": "limit and offset must be integers"}, status_code=400)
        page = items[offset:offset + limit]
        more = offset + limit < len(items)
        base = {k: v for k, v in q.items() if k not in ("limit", "offset")}
        after = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?" \
            + urlencode({**base, "limit": limit, "offset": offset + limit})
        return JSONResponse({"count": len(items), "next": after if more else None, "previous": None, "results": page})

    async def _chats(self, request: Request) -> JSONResponse:
        refused = self._refused(request) or await self._fault("chats")
        if refused is not None:
            return refused
        latest: dict[str, GetchatMessage] = {}
        for m in self.messages:
            latest[m.wa_id] = m
        ordered = sorted(latest.values(), key=lambda m: -m.timestamp)
        return self._page(request, [self._chat(m) for m in ordered])

    async def _list_messages(self, request: Request) -> JSONResponse:
        refused = self._refused(request) or await self._fault("messages")
        if refused is not None:
            return refused
        q = request.query_params
        found = [m for m in self.messages if not q.get("wa_id") or m.wa_id == q["wa_id"]]
        if q.get("before_time"):
            found = [m for m in found if m.timestamp < float(q["before_time"])]
        found.sort(key=lambda m: -m.timestamp)
        return self._page(request, [self._message(m) for m in found])

    async def _send(self, request: Request) -> JSONResponse:
        refused = self._refused(request) or await self._fault("messages")
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"reason": "JSON parse error"}, status_code=400)
        text = (body.get("text") or {}).get("body") if isinstance(body, dict) else None
        if body.get("type") != "text" or not text or not body.get("wa_id"):
            return JSONResponse({"reason": "wa_id, type text and text.body are required"}, status_code=400)
        self.sent_bodies.append(body)
        message = self._add(str(body["wa_id"]), text, from_us=True)
        message.state = "pending"
        return JSONResponse({"id": message.id}, status_code=202)

    # -- shapes -------------------------------------------------------------------------------
    def _add(self, wa_id: str, text: str, *, from_us: bool) -> GetchatMessage:
        message = GetchatMessage(f"wamid.HBgL{next(self._ids):012d}", wa_id, text, from_us, next(self._clock))
        self.messages.append(message)
        return message

    def _person(self, wa_id: str) -> dict[str, Any]:
        return {"wa_id": wa_id, "waba_payload": {"profile": {"name": self.names.get(wa_id, wa_id)}, "wa_id": wa_id},
                "initials": "".join(w[0] for w in self.names.get(wa_id, "?").split()[:2]), "resolved": False}

    def _chat(self, last: GetchatMessage) -> dict[str, Any]:
        return {"wa_id": last.wa_id, "contact": self._person(last.wa_id), "new_messages": 0,
                "last_message": self._message(last), "assigned_to_user": None, "assigned_group": None, "tags": []}

    def _message(self, m: GetchatMessage) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": m.id, "type": "text", "timestamp": str(m.timestamp), "text": {"body": m.text}}
        payload.update({"to": m.wa_id} if m.from_us else {"from": m.wa_id})
        return {"id": m.id, "waba_payload": payload, "from_us": m.from_us, "received": not m.from_us,
                "customer_wa_id": m.wa_id, "tags": [], "chat_tags": [], "is_failed": m.state == "failed",
                "waba_statuses": {}, "sender": {"username": "agent"} if m.from_us else None}

    # -- history and webhooks ---------------------------------------------------------------------
    def seed(self, wa_id: str, name: str, texts: list[tuple[str, bool]]) -> None:
        """History: ``texts`` as (text, from_us), oldest first."""
        self.names[wa_id] = name
        for text, from_us in texts:
            self._add(wa_id, text, from_us=from_us)

    def _waba(self, value: dict[str, Any]) -> GetchatDelivery:
        payload = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
                "display_phone_number": "15550783881", "phone_number_id": self.phone_number_id}, **value}}]}]}
        body = json.dumps(payload, separators=(",", ":")).encode()
        return GetchatDelivery(body, {"content-type": "application/json"}, payload)

    def incoming(self, wa_id: str, text: str, name: str | None = None) -> GetchatDelivery:
        """A customer's message, as the propagated webhook carries it."""
        self.names.setdefault(wa_id, name or wa_id)
        m = self._add(wa_id, text, from_us=False)
        return self._waba({"contacts": [{"profile": {"name": self.names[wa_id]}, "wa_id": wa_id}],
                           "messages": [{"from": wa_id, "id": m.id, "timestamp": str(m.timestamp), "type": "text",
                                         "text": {"body": text}}]})

    def status(self, message_id: str, status: str) -> GetchatDelivery:
        """``sent``/``delivered``/``read``/``failed`` of a message sent through the API."""
        m = next(m for m in self.messages if m.id == message_id)
        m.state = status
        return self._waba({"statuses": [{"id": m.id, "getchat_id": str(self.messages.index(m) + 1),
                                         "recipient_id": m.wa_id, "status": status, "errors": [],
                                         "timestamp": str(next(self._clock))}]})

    def truth(self) -> list[GetchatMessage]:
        return list(self.messages)


SIMULATOR = GetchatSimulator
