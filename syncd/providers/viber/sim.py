"""The Viber REST Bot API as a simulator: one bot and its subscribers.

Endpoints (``POST``, JSON, ``X-Viber-Auth-Token``): ``/pa/get_account_info``,
``/pa/send_message`` (text; only to a subscriber who has written or subscribed, else status 6),
``/pa/set_webhook`` (answers, then checks the URL with a signed ``{"event": "webhook"}``).
Errors are HTTP 200 with ``status`` other than 0, as Viber answers them: 2 for a bad token,
12 "Too many requests" for throttling (``faults.fail_next("send_message")`` injects it), and a
real HTTP 5xx for a server fault. Callbacks are built signed like Viber's (hex HMAC-SHA256 of
the raw body with the bot token in ``X-Viber-Content-Signature``), with int64 message tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

#: Viber's message tokens are int64 beyond 2**53: a float parser would corrupt them.
FIRST_TOKEN = 4_912_661_846_655_238_145


@dataclass
class ViberDelivery:
    """A callback as Viber posts it: the raw body and its headers."""

    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class ViberMessage:
    token: int
    user_id: str
    text: str
    from_bot: bool
    timestamp_ms: int
    state: str | None = None


@dataclass
class ViberSimulator(Trial):
    """One bot (``token``) and its subscribers; an ASGI app."""

    token: str = field(default_factory=lambda: f"{secrets.token_hex(8)}-{secrets.token_hex(8)}-{secrets.token_hex(8)}")
    bot_id: str = "pa:5555555555555555555"
    bot_name: str = "Sim Bot"
    faults: Faults = field(default_factory=Faults)
    subscribers: dict[str, str] = field(default_factory=dict)
    messages: dict[int, ViberMessage] = field(default_factory=dict)
    webhook_url: str | None = None
    sent_bodies: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._tokens = itertools.count(FIRST_TOKEN)
        self.app = Starlette(routes=[
            Route("/pa/get_account_info", self._account_info, methods=["POST"]),
            Route("/pa/send_message", self._send_message, methods=["POST"]),
            Route("/pa/set_webhook", self._set_webhook, methods=["POST"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    #: ``syncd sim viber``: the Bot API root is the simulator's own.
    trial_roots: ClassVar[dict[str, str]] = {"viber": ""}

    def trial_credentials(self) -> dict[str, Any]:
        return {"token": self.token}

    def trial_delivery(self, n: int) -> ViberDelivery:
        return self.user_message(f"01234567890A{n % 20:04d}=", f"trial message {n}", name=f"Subscriber {n % 20}")

    # -- the API ------------------------------------------------------------------------------
    async def _guard(self, request: Request, endpoint: str) -> tuple[dict[str, Any] | None, JSONResponse | None]:
        fault = await self.faults.check(endpoint)
        if fault is not None and fault.kind == "server_error":
            return None, JSONResponse({"status": 500, "status_message": "internal error"}, status_code=fault.status)
        if fault is not None:
            return None, JSONResponse({"status": 12, "status_message": "Too many requests"})
        if request.headers.get("x-viber-auth-token") != self.token:
            return None, JSONResponse({"status": 2, "status_message": "invalidAuthToken"})
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None, JSONResponse({"status": 3, "status_message": "badData"})
        return (body, None) if isinstance(body, dict) else (None, JSONResponse({"status": 3, "status_message": "badData"}))

    async def _account_info(self, request: Request) -> JSONResponse:
        _, refused = await self._guard(request, "get_account_info")
        if refused is not None:
            return refused
        return JSONResponse({"status": 0, "status_message": "ok", "id": self.bot_id, "name": self.bot_name,
                             "uri": "simbot", "subscribers_count": len(self.subscribers), "webhook": self.webhook_url})

    async def _send_message(self, request: Request) -> JSONResponse:
        body, refused = await self._guard(request, "send_message")
        if refused is not None or body is None:
            return refused or JSONResponse({"status": 3, "status_message": "badData"})
        if not (body.get("sender") or {}).get("name") or body.get("type") != "text" or not body.get("text"):
            return JSONResponse({"status": 4, "status_message": "missingData"})
        if body.get("receiver") not in self.subscribers:
            return JSONResponse({"status": 6, "status_message": "receiverNotSubscribed"})
        self.sent_bodies.append(body)
        message = ViberMessage(next(self._tokens), body["receiver"], body["text"], True, self._now_ms())
        self.messages[message.token] = message
        return JSONResponse({"status": 0, "status_message": "ok", "message_token": message.token,
                             "chat_hostname": "SN-CHAT-01_", "billing_status": 1})

    async def _set_webhook(self, request: Request) -> JSONResponse:
        body, refused = await self._guard(request, "set_webhook")
        if refused is not None or body is None:
            return refused or JSONResponse({"status": 3, "status_message": "badData"})
        url = body.get("url")
        if url and not str(url).startswith(("https://", "http://")):
            return JSONResponse({"status": 1, "status_message": "URL not valid or not HTTPS"})
        self.webhook_url = url or None
        return JSONResponse({"status": 0, "status_message": "ok", "chat_hostname": "SN-CHAT-01_",
                             "event_types": body.get("event_types") or []})

    # -- callbacks ------------------------------------------------------------------------------
    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    def sign(self, payload: dict[str, Any], token: str | None = None) -> ViberDelivery:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        signature = hmac.new((token or self.token).encode(), body, hashlib.sha256).hexdigest()
        return ViberDelivery(body, {"content-type": "application/json", "x-viber-content-signature": signature}, payload)

    def webhook_check(self) -> ViberDelivery:
        return self.sign({"event": "webhook", "timestamp": self._now_ms(), "chat_hostname": "SN-CHAT-01_",
                          "message_token": next(self._tokens)})

    def subscribe(self, user_id: str, name: str) -> ViberDelivery:
        self.subscribers[user_id] = name
        return self.sign({"event": "subscribed", "timestamp": self._now_ms(), "chat_hostname": "SN-CHAT-01_",
                          "user": {"id": user_id, "name": name, "avatar": None, "country": "IL",
                                   "language": "en", "api_version": 10}})

    def user_message(self, user_id: str, text: str, name: str | None = None) -> ViberDelivery:
        self.subscribers.setdefault(user_id, name or user_id)
        message = ViberMessage(next(self._tokens), user_id, text, False, self._now_ms())
        self.messages[message.token] = message
        return self.sign({"event": "message", "timestamp": message.timestamp_ms, "chat_hostname": "SN-CHAT-01_",
                          "message_token": message.token,
                          "sender": {"id": user_id, "name": self.subscribers[user_id], "avatar": None,
                                     "language": "en", "country": "IL", "api_version": 10},
                          "message": {"type": "text", "text": text}, "silent": False})

    def receipt(self, token: int, event: str = "delivered") -> ViberDelivery:
        """``delivered``, ``seen`` or ``failed`` for a message the bot sent."""
        message = self.messages[token]
        message.state = {"seen": "read"}.get(event, event)
        payload: dict[str, Any] = {"event": event, "timestamp": self._now_ms(), "chat_hostname": "SN-CHAT-01_",
                                   "message_token": token, "user_id": message.user_id}
        if event == "failed":
            payload["desc"] = "failure desc"
        return self.sign(payload)

    def truth(self) -> list[ViberMessage]:
        return sorted(self.messages.values(), key=lambda m: m.token)


SIMULATOR = ViberSimulator
