"""The LINE Messaging API as a simulator: one bot channel, its friends, groups and rooms.

Endpoints (``Authorization: Bearer <channel access token>``): ``GET /v2/bot/info``,
``POST /v2/bot/message/push`` (``{to, messages[≤5]}``; with ``X-Line-Retry-Key`` a retried
push is answered 409 with the first attempt's ``sentMessages``), ``GET /v2/bot/profile/{userId}``
(404 for a user who is not a friend), ``GET /v2/bot/group/{groupId}/summary``.
Errors are ``{message, details[]}`` as LINE answers them: 401 for a bad token, 429 "Too many
requests" for throttling (``faults.fail_next("push")``), 429 "You have reached your monthly
limit." once ``quota`` pushes were made, a real 5xx for a server fault. Webhook deliveries are
built signed like LINE's (base64 HMAC-SHA256 of the raw body with the channel secret in
``X-Line-Signature``), each event with a ULID-like ``webhookEventId``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

FIRST_MESSAGE_ID = 468_789_577_898_262_530
MONTHLY_LIMIT = "You have reached your monthly limit."


@dataclass
class LineDelivery:
    """A webhook delivery as LINE posts it: the raw body and its headers."""

    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class LineMessage:
    id: str
    chat_id: str
    text: str | None
    from_bot: bool
    timestamp_ms: int
    unsent: bool = False


@dataclass
class LineSimulator(Trial):
    """One channel (``token``, ``secret``) and the chats it is in; an ASGI app."""

    #: ``syncd sim``: the one API root it serves, at its URL.
    trial_roots: ClassVar[dict[str, str]] = {"line": ""}

    token: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    bot_user_id: str = "U" + "b0" * 16
    bot_name: str = "Sim LINE Bot"
    faults: Faults = field(default_factory=Faults)
    #: Pushes allowed this month; ``None``: no quota.
    quota: int | None = None
    users: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    rooms: set[str] = field(default_factory=set)
    messages: dict[str, LineMessage] = field(default_factory=dict)
    pushes: list[dict[str, Any]] = field(default_factory=list)
    #: Accepted retry keys and the messages their push made (``None``: not told in a 409).
    retry_keys: dict[str, list[dict[str, str]] | None] = field(default_factory=dict)
    profile_calls: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(FIRST_MESSAGE_ID)
        self._events = itertools.count(1)
        self.app = Starlette(routes=[
            Route("/v2/bot/info", self._info, methods=["GET"]),
            Route("/v2/bot/message/push", self._push, methods=["POST"]),
            Route("/v2/bot/profile/{user_id}", self._profile, methods=["GET"]),
            Route("/v2/bot/group/{group_id}/summary", self._group_summary, methods=["GET"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def trial_credentials(self) -> dict[str, str]:
        return {"channelAccessToken": self.token, "channelSecret": self.secret}

    def trial_delivery(self, n: int) -> LineDelivery:
        user_id = f"U{n % 20:032x}"
        self.users.setdefault(user_id, f"Friend {n % 20}")
        return self.deliver(self.message(user_id, f"trial message {n}"))

    # -- the API ------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, **more: Any) -> JSONResponse:
        return JSONResponse({"message": message, **more}, status_code=status)

    async def _guard(self, request: Request, endpoint: str) -> JSONResponse | None:
        fault = await self.faults.check(endpoint)
        if fault is not None and fault.kind == "server_error":
            return self._error(fault.status, "Internal server error")
        if fault is not None:
            return self._error(429, "Too many requests")
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._error(401, "Authentication failed. Confirm that the access token in the authorization header is valid.")
        return None

    async def _info(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "info")
        return refused or JSONResponse({"userId": self.bot_user_id, "basicId": "@216ru...", "displayName": self.bot_name,
                                        "chatMode": "bot", "markAsReadMode": "auto"})

    async def _profile(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "profile")
        if refused is not None:
            return refused
        self.profile_calls += 1
        user_id = request.path_params["user_id"]
        if user_id not in self.users:
            return self._error(404, "Not found")
        return JSONResponse({"userId": user_id, "displayName": self.users[user_id], "language": "en",
                             "pictureUrl": f"https://profile.line-scdn.net/{user_id}"})

    async def _group_summary(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "group_summary")
        if refused is not None:
            return refused
        group_id = request.path_params["group_id"]
        if group_id not in self.groups:
            return self._error(404, "Not found")
        return JSONResponse({"groupId": group_id, "groupName": self.groups[group_id],
                             "pictureUrl": f"https://profile.line-scdn.net/{group_id}"})

    async def _push(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "push")
        if refused is not None:
            return refused
        key = request.headers.get("x-line-retry-key")
        if key is not None and not _is_uuid(key):
            return self._error(400, "The value of the X-Line-Retry-Key header is invalid")
        if key in self.retry_keys:
            accepted = self.retry_keys[key]
            return self._error(409, "The retry key is already accepted", **({"sentMessages": accepted} if accepted else {}))
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._error(400, "The request body has 1 error(s)")
        problem = self._bad_push(body)
        if problem:
            return self._error(400, "The request body has 1 error(s)", details=[{"message": problem, "property": "messages"}])
        if self.quota is not None and len(self.pushes) >= self.quota:
            return self._error(429, MONTHLY_LIMIT)
        self.pushes.append(body)
        sent = [self._store_push(body["to"], m) for m in body["messages"]]
        if key is not None:
            self.retry_keys[key] = sent
        return JSONResponse({"sentMessages": sent})

    def _bad_push(self, body: Any) -> str | None:
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not 1 <= len(body["messages"]) <= 5:
            return "messages: 1 to 5 messages"
        if body.get("to") not in {*self.users, *self.groups, *self.rooms}:
            return "to: not a chat of this channel"
        if any(m.get("type") != "text" or not m.get("text") for m in body["messages"]):
            return "may not be empty"
        return None

    def _store_push(self, to: str, message: dict[str, Any]) -> dict[str, str]:
        stored = LineMessage(str(next(self._ids)), to, message["text"], True, self._now_ms())
        self.messages[stored.id] = stored
        return {"id": stored.id, "quoteToken": secrets.token_urlsafe(24)}

    def accepted_before(self, key: str, to: str, text: str) -> None:
        """A push with retry key ``key`` that LINE accepted, its answer lost on the way."""
        self.retry_keys[key] = [self._store_push(to, {"text": text})]

    # -- webhook deliveries -------------------------------------------------------------------------
    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    def sign(self, payload: dict[str, Any], secret: str | None = None) -> LineDelivery:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        digest = hmac.new((secret or self.secret).encode(), body, hashlib.sha256).digest()
        headers = {"content-type": "application/json; charset=utf-8",
                   "x-line-signature": base64.b64encode(digest).decode()}
        return LineDelivery(body, headers, payload)

    def deliver(self, *events: dict[str, Any]) -> LineDelivery:
        return self.sign({"destination": self.bot_user_id, "events": list(events)})

    def verify_request(self) -> LineDelivery:
        """What the console's Verify button posts: no events."""
        return self.deliver()

    def redeliver(self, delivery: LineDelivery) -> LineDelivery:
        """The same events again, flagged as a redelivery (so the body differs)."""
        events = [{**e, "deliveryContext": {"isRedelivery": True}} for e in delivery.payload["events"]]
        return self.deliver(*events)

    def _event(self, type_: str, source: dict[str, str], **more: Any) -> dict[str, Any]:
        return {"type": type_, "mode": "active", "timestamp": self._now_ms(), "source": source,
                "webhookEventId": f"01H{next(self._events):023d}", "deliveryContext": {"isRedelivery": False},
                **more}

    @staticmethod
    def source(chat_id: str, user_id: str | None = None) -> dict[str, str]:
        if chat_id.startswith("C"):
            return {"type": "group", "groupId": chat_id, **({"userId": user_id} if user_id else {})}
        if chat_id.startswith("R"):
            return {"type": "room", "roomId": chat_id, **({"userId": user_id} if user_id else {})}
        return {"type": "user", "userId": chat_id}

    def follow(self, user_id: str, name: str) -> dict[str, Any]:
        self.users[user_id] = name
        return self._event("follow", self.source(user_id), replyToken=secrets.token_hex(16), follow={"isUnblocked": False})

    def join(self, chat_id: str, name: str | None = None) -> dict[str, Any]:
        if chat_id.startswith("C"):
            self.groups[chat_id] = name or chat_id
        else:
            self.rooms.add(chat_id)
        return self._event("join", self.source(chat_id), replyToken=secrets.token_hex(16))

    def message(self, chat_id: str, text: str, user_id: str | None = None) -> dict[str, Any]:
        stored = LineMessage(str(next(self._ids)), chat_id, text, False, self._now_ms())
        self.messages[stored.id] = stored
        return self._event("message", self.source(chat_id, user_id), replyToken=secrets.token_hex(16),
                           message={"id": stored.id, "type": "text", "text": text,
                                    "quoteToken": secrets.token_urlsafe(24)})

    def unsend(self, message_id: str, user_id: str | None = None) -> dict[str, Any]:
        message = self.messages[message_id]
        message.unsent = True
        return self._event("unsend", self.source(message.chat_id, user_id), unsend={"messageId": message_id})

    def truth(self) -> list[LineMessage]:
        return sorted(self.messages.values(), key=lambda m: int(m.id))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


SIMULATOR = LineSimulator
