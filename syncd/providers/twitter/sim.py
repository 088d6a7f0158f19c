"""X's Direct Message API v2 and Account Activity webhooks as a simulator: one account and its
1:1 conversations.

Endpoints: ``GET /2/users/me``; ``GET /2/dm_events`` and
``GET /2/dm_conversations/{id}/dm_events`` (newest first, ``max_results`` 1-100,
``pagination_token`` = ``meta.next_token``, the last 30 days only);
``POST /2/dm_conversations/with/{participant_id}/messages`` (201
``{"data": {"dm_conversation_id", "dm_event_id"}}``); ``DELETE /2/dm_events/{id}``. Every
request must carry a valid OAuth 1.0a HMAC-SHA1 ``Authorization`` header, checked here from
RFC 5849 by hand (not by the library syncd signs with); a wrong one is answered 401. Throttling
is 429 with ``x-rate-limit-*`` headers. Deliveries are built as the Account Activity API posts
them: v1.1 ``message_create`` events signed ``x-twitter-webhooks-signature: sha256=<base64>``.
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
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

#: Snowflakes beyond 2**53: a float parser would corrupt them.
FIRST_EVENT = 1_582_838_499_983_564_806
THIRTY_DAYS_S = 30 * 86400


def _enc(value: str) -> str:
    return quote(value, safe="-._~")


def oauth1_signature(method: str, url: str, params: list[tuple[str, str]], consumer_secret: str,
                     token_secret: str) -> str:
    """RFC 5849 §3.4: base64 HMAC-SHA1 of the signature base string."""
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in params))
    base = "&".join([method.upper(), _enc(url), _enc(normalized)])
    key = f"{_enc(consumer_secret)}&{_enc(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base.encode(), hashlib.sha1).digest()).decode()


def parse_oauth_header(header: str) -> dict[str, str]:
    if not header.startswith("OAuth "):
        return {}
    out = {}
    for part in header[len("OAuth "):].split(","):
        key, _, value = part.strip().partition("=")
        out[unquote(key)] = unquote(value.strip('"'))
    return out


@dataclass
class XDelivery:
    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]
    query: str = ""


@dataclass
class XEvent:
    id: str
    conversation_id: str
    sender_id: str
    text: str
    created_s: float
    deleted: bool = False


@dataclass
class XSimulator(Trial):
    """One account (``user_id``), its app's keys and its DM events; an ASGI app."""

    user_id: str = "3805104374"
    name: str = "Sim Shop"
    username: str = "simshop"
    consumer_key: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    consumer_secret: str = field(default_factory=lambda: secrets.token_urlsafe(36))
    token_secret: str = field(default_factory=lambda: secrets.token_urlsafe(33))
    faults: Faults = field(default_factory=Faults)
    people: dict[str, str] = field(default_factory=dict)
    events: dict[str, XEvent] = field(default_factory=dict)
    #: Every signed request's (method, path, Authorization params, JSON body), for wire checks.
    requests: list[dict[str, Any]] = field(default_factory=list)
    clock: Any = time.time

    def __post_init__(self) -> None:
        self.access_token = f"{self.user_id}-{secrets.token_urlsafe(30)}"
        self._ids = itertools.count(FIRST_EVENT)
        self.app = Starlette(routes=[
            Route("/2/users/me", self._me, methods=["GET"]),
            Route("/2/dm_events", self._all_events, methods=["GET"]),
            Route("/2/dm_conversations/{conversation}/dm_events", self._conversation_events, methods=["GET"]),
            Route("/2/dm_conversations/with/{participant}/messages", self._send, methods=["POST"]),
            Route("/2/dm_conversations/{conversation}/messages", self._send_to_conversation, methods=["POST"]),
            Route("/2/dm_events/{event_id}", self._delete, methods=["DELETE"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    #: ``syncd sim twitter``: the API root (``/2/...``) is the simulator's own.
    trial_roots: ClassVar[dict[str, str]] = {"twitter": ""}

    def trial_credentials(self) -> dict[str, Any]:
        return {"consumerKey": self.consumer_key, "consumerSecret": self.consumer_secret,
                "accessTokenKey": self.access_token, "accessTokenSecret": self.token_secret}

    def trial_seed(self) -> str:
        self.seed(conversations=3, per_conversation=5)
        return "15 DM events in 3 conversations of the last 30 days, and one older"

    def trial_chat(self) -> str | None:
        return self.conversation_with("9876543210")

    def trial_history(self, chats: int, messages: int) -> int:
        """``chats`` one-to-one conversations of ``messages`` DMs each, all from the other
        person, within the last 30 days."""
        for c in range(chats):
            other = str(5_000_000_000 + c)
            self.people[other] = f"Person {c}"
            for i in range(messages):
                self.add_event(other, f"message {i} from person {c}", age_s=60 * (messages - i) + c)
        return chats * messages

    def trial_delivery(self, n: int) -> XDelivery:
        """A DM from one of 20 people, as Account Activity posts and signs it."""
        return self.incoming(str(6_000_000_000 + n % 20), f"trial message {n}")

    # -- the account's data ---------------------------------------------------------------------
    def conversation_with(self, other: str) -> str:
        low, high = sorted((self.user_id, other), key=int)
        return f"{low}-{high}"

    def add_event(self, other: str, text: str, *, from_me: bool = False, age_s: float = 0) -> XEvent:
        event = XEvent(str(next(self._ids)), self.conversation_with(other), self.user_id if from_me else other,
                       text, self.clock() - age_s)
        self.events[event.id] = event
        return event

    def seed(self, conversations: int = 3, per_conversation: int = 5) -> None:
        for c in range(conversations):
            other = str(9_876_543_210 + c)
            self.people[other] = f"Person {c}"
            for i in range(per_conversation):
                self.add_event(other, f"message {i} with person {c}", from_me=i % 2 == 1,
                               age_s=3600 * (per_conversation - i))
        # Older than 30 days: X no longer returns it.
        self.add_event("9876543210", "too old to list", age_s=THIRTY_DAYS_S + 60)

    def truth(self) -> list[XEvent]:
        return [e for e in sorted(self.events.values(), key=lambda e: int(e.id)) if not e.deleted]

    # -- OAuth 1.0a -----------------------------------------------------------------------------
    async def _refused(self, request: Request, endpoint: str) -> Response | None:
        fault = await self.faults.check(endpoint)
        if fault is not None and fault.kind == "rate_limit":
            reset = int(self.clock()) + (fault.retry_after_s or 1)
            return JSONResponse({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                                 "status": 429}, status_code=429,
                                headers={"x-rate-limit-limit": "15", "x-rate-limit-remaining": "0",
                                         "x-rate-limit-reset": str(reset)})
        if fault is not None:
            return JSONResponse({"title": "Service Unavailable", "status": fault.status}, status_code=fault.status)
        if not await self._signed(request):
            return JSONResponse({"title": "Unauthorized", "type": "about:blank", "status": 401,
                                 "detail": "Unauthorized"}, status_code=401)
        return None

    async def _signed(self, request: Request) -> bool:
        given = parse_oauth_header(request.headers.get("authorization", ""))
        if given.get("oauth_consumer_key") != self.consumer_key or given.get("oauth_token") != self.access_token \
                or given.get("oauth_signature_method") != "HMAC-SHA1" or not given.get("oauth_nonce"):
            return False
        params = [(k, v) for k, v in given.items() if k != "oauth_signature" and k != "realm"]
        params += parse_qsl(request.url.query, keep_blank_values=True)
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params += parse_qsl(body.decode(), keep_blank_values=True)
        url = f"{request.url.scheme}://{request.url.netloc.lower()}{request.url.path}"
        expected = oauth1_signature(request.method, url, params, self.consumer_secret, self.token_secret)
        self.requests.append({"method": request.method, "path": request.url.path, "oauth": given,
                              "json": json.loads(body) if body and body[:1] == b"{" else None})
        return hmac.compare_digest(expected, given.get("oauth_signature", ""))

    # -- the API --------------------------------------------------------------------------------
    async def _me(self, request: Request) -> Response:
        refused = await self._refused(request, "users_me")
        return refused or JSONResponse({"data": {"id": self.user_id, "name": self.name, "username": self.username}})

    def _view(self, event: XEvent) -> dict[str, Any]:
        created = datetime.fromtimestamp(event.created_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return {"id": event.id, "event_type": "MessageCreate", "text": event.text, "sender_id": event.sender_id,
                "dm_conversation_id": event.conversation_id, "created_at": created}

    def _page(self, request: Request, events: list[XEvent]) -> Response:
        try:
            size = int(request.query_params.get("max_results", "100"))
        except ValueError:
            size = 0
        if not 1 <= size <= 100:
            return JSONResponse({"title": "Invalid Request", "detail": "max_results must be 1-100"}, status_code=400)
        cutoff = self.clock() - THIRTY_DAYS_S
        listed = sorted((e for e in events if not e.deleted and e.created_s >= cutoff), key=lambda e: -int(e.id))
        start = int(request.query_params.get("pagination_token") or 0)
        page = listed[start:start + size]
        meta: dict[str, Any] = {"result_count": len(page)}
        if start + size < len(listed):
            meta["next_token"] = str(start + size)
        if start:
            meta["previous_token"] = str(max(0, start - size))
        body: dict[str, Any] = {"meta": meta}
        if page:
            body["data"] = [self._view(e) for e in page]
        return JSONResponse(body)

    async def _all_events(self, request: Request) -> Response:
        refused = await self._refused(request, "dm_events")
        return refused or self._page(request, list(self.events.values()))

    async def _conversation_events(self, request: Request) -> Response:
        refused = await self._refused(request, "dm_events")
        wanted = request.path_params["conversation"]
        return refused or self._page(request, [e for e in self.events.values() if e.conversation_id == wanted])

    async def _send(self, request: Request) -> Response:
        refused = await self._refused(request, "send")
        if refused is not None:
            return refused
        return await self._create(request, self.conversation_with(request.path_params["participant"]))

    async def _send_to_conversation(self, request: Request) -> Response:
        refused = await self._refused(request, "send")
        return refused or await self._create(request, request.path_params["conversation"])

    async def _create(self, request: Request, conversation: str) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not (body.get("text") or body.get("attachments")):
            return JSONResponse({"title": "Invalid Request", "detail": "text or attachments is required"},
                                status_code=400)
        event = XEvent(str(next(self._ids)), conversation, self.user_id, body.get("text") or "", self.clock())
        self.events[event.id] = event
        return JSONResponse({"data": {"dm_conversation_id": conversation, "dm_event_id": event.id}}, status_code=201)

    async def _delete(self, request: Request) -> Response:
        refused = await self._refused(request, "delete")
        if refused is not None:
            return refused
        event = self.events.get(request.path_params["event_id"])
        if event is None or event.deleted or event.sender_id != self.user_id:
            return JSONResponse({"title": "Not Found Error", "detail": "no such event"}, status_code=404)
        event.deleted = True
        return JSONResponse({"data": {"deleted": True}})

    # -- Account Activity deliveries --------------------------------------------------------------
    def sign(self, payload: dict[str, Any], secret: str | None = None) -> XDelivery:
        body = json.dumps(payload, separators=(",", ":")).encode()
        digest = hmac.new((secret or self.consumer_secret).encode(), body, hashlib.sha256).digest()
        return XDelivery(body, {"content-type": "application/json",
                                "x-twitter-webhooks-signature": "sha256=" + base64.b64encode(digest).decode()}, payload)

    def crc(self, token: str = "1230983-1233") -> XDelivery:
        return XDelivery(b"", {}, {}, query=f"crc_token={quote(token)}")

    def crc_answer(self, token: str) -> str:
        digest = hmac.new(self.consumer_secret.encode(), token.encode(), hashlib.sha256).digest()
        return "sha256=" + base64.b64encode(digest).decode()

    def incoming(self, other: str, text: str, name: str | None = None) -> XDelivery:
        """Someone writes to the account: a new event, delivered as Account Activity posts it."""
        self.people.setdefault(other, name or f"User {other}")
        event = self.add_event(other, text)
        return self.sign(self.activity(event, recipient=self.user_id))

    def echo(self, event_id: str) -> XDelivery:
        """The account's own message (sent through the API) as Account Activity reports it."""
        event = self.events[event_id]
        other = next(p for p in event.conversation_id.split("-") if p != self.user_id)
        return self.sign(self.activity(event, recipient=other))

    def activity(self, event: XEvent, *, recipient: str) -> dict[str, Any]:
        users = {uid: {"id": uid, "name": self.people.get(uid, self.name if uid == self.user_id else uid),
                       "screen_name": f"user{uid}"} for uid in (event.sender_id, recipient)}
        return {"for_user_id": self.user_id, "direct_message_events": [{
            "type": "message_create", "id": event.id, "created_timestamp": str(int(event.created_s * 1000)),
            "message_create": {"target": {"recipient_id": recipient}, "sender_id": event.sender_id,
                               "message_data": {"text": event.text, "entities": {
                                   "hashtags": [], "symbols": [], "urls": [], "user_mentions": []}}}}],
            "users": users}


SIMULATOR = XSimulator
