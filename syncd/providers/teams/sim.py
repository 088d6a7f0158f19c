"""A Microsoft Graph simulator for Teams: users, 1:1/group/meeting chats, teams and channels,
chat messages with html bodies, edits and soft deletes, change-notification subscriptions, and
the Microsoft identity platform's authorize and token endpoints.

Answers have Graph's real shapes (compare ``tests/fixtures/teams.json``): collections are
``{"@odata.context", "value", "@odata.nextLink"}`` with absolute nextLinks carrying an opaque
``$skiptoken``; ``$top`` above 50 is a 400; errors are ``{"error": {code, message, innerError}}``;
429s carry ``Retry-After``; bearer tokens expire. Graph routes answer both under ``/v1.0`` and
at the root, so the simulator works behind ``https://graph.microsoft.com/v1.0`` or a bare URL.

Changes made through the API or the test helpers (``post``, ``edit``, ``soft_delete``) queue
the notifications Graph would POST to every subscription that covers them in ``outbox``
(``take_deliveries()``); ``validation``, ``lifecycle`` and ``notification`` build deliveries
on demand. When ``validator`` is set, creating a subscription first runs the validation
handshake through it, as Graph does, and fails unless the endpoint echoes the token.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, cast
from urllib.parse import parse_qsl, quote_plus, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from syncd.sim.base import Fault, Faults, Trial

MAX_TOP = 50
#: chatMessage subscriptions without resource data live at most an hour.
MAX_SUBSCRIPTION_S = 60 * 60
TOKEN_LIFETIME_S = 3599
CHANGE_TYPES = {"created", "updated", "deleted"}
#: How long ``trial_webhook`` waits for syncd's subscription.
TRIAL_SUBSCRIPTION_WAIT_S = 30
_FILTER = re.compile(r"^(lastModifiedDateTime|createdDateTime) (gt|ge|lt|le) (\S+)$")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: Any) -> float | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def stamp(value: Any) -> float:
    """``parse_iso`` of a time known to parse: one the simulator wrote, or one checked already."""
    return cast(float, parse_iso(value))


class GraphError(Exception):
    """Rendered as Graph's ``{"error": {code, message, innerError}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> JSONResponse:
        inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                 "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
        return JSONResponse({"error": {"code": self.code, "message": self.message, "innerError": inner}},
                            self.status, headers=self.headers)


class OAuthError(Exception):
    """Rendered as the identity platform's ``{"error", "error_description", "error_codes"}``."""

    def __init__(self, status: int, error: str, description: str, code: int):
        super().__init__(description)
        self.status, self.error, self.description, self.code = status, error, description, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "error_description": f"AADSTS{self.code}: {self.description}",
                             "error_codes": [self.code], "trace_id": str(uuid.uuid4()),
                             "correlation_id": str(uuid.uuid4())}, self.status)


@dataclass(frozen=True)
class TeamsDelivery:
    """One POST exactly as Graph sends it to a notification URL: ``url`` with its query
    (a validation carries ``?validationToken=``), raw ``body`` and ``headers``."""

    url: str
    body: bytes
    headers: dict[str, str]
    query: str = ""
    payload: dict[str, Any] | None = None

    def target(self, base: str = "") -> str:
        """The URL path (with the query) relative to ``base``, for an in-process client."""
        path = self.url[len(base):] if base and self.url.startswith(base) else self.url
        return f"{path}?{self.query}" if self.query else path


@dataclass
class Box:
    """The messages of one chat or channel; channel replies hang off their root's id."""

    external_id: str
    channel: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class TeamsSimulator(Trial):
    """The truth of one Microsoft 365 tenant, served as an ASGI app (``httpx.ASGITransport(sim)``)."""

    def __init__(self, *, tenant_id: str = "84bd8158-6d4d-4958-8b9f-9d6445542f95", token: str = "sim-graph-token",
                 refresh_token: str = "sim-graph-refresh", client_id: str = "sim-teams-client",
                 client_secret: str = "sim-teams-secret", clock: Callable[[], float] = time.time,
                 faults: Faults | None = None, require_https: bool = False):
        self.tenant_id = tenant_id
        self.client = (client_id, client_secret)
        self.clock = clock
        self.faults = faults or Faults()
        #: Graph refuses notification URLs that are not https; tests on http hosts turn it off.
        self.require_https = require_https
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}  # access token -> {user, expires}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user id
        #: A refresh revokes the refresh token it used (stricter than Azure AD, to prove rotation).
        self.revoke_used_refresh_tokens = False
        self.codes: dict[str, dict[str, Any]] = {}
        self.chats: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}  # chat or team id -> user ids
        self.teams: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, dict[str, Any]]] = {}  # team id -> channel id -> channel
        self.boxes: dict[str, Box] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.outbox: list[TeamsDelivery] = []
        self.validator: Callable[[TeamsDelivery], Awaitable[tuple[int, str, str]]] | None = None
        self._ids = itertools.count(1)
        self._last_ms = 0
        self.me = self.add_user("Sync Agent", "agent@contoso.example")
        self.tokens[token] = {"user": self.me, "expires": self.clock() + TOKEN_LIFETIME_S}
        self.refresh_tokens[refresh_token] = self.me
        self.app = Starlette(routes=[Mount("/v1.0", routes=self._graph_routes()), *self._graph_routes(),
                                     Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
                                     Route("/{tenant}/oauth2/v2.0/authorize", self._authorize, methods=["GET"])],
                             exception_handlers={GraphError: lambda r, e: e.response(),
                                                 OAuthError: lambda r, e: e.response()})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- a trial (``syncd sim teams``) ------------------------------------------------------
    trial_roots: ClassVar[dict[str, str]] = {"teams": "/v1.0", "microsoft_login": ""}

    def trial_seed(self) -> str:
        self._trial_ids = self.seed()
        return f"{sum(len(b.messages) for b in self.boxes.values())} messages in {len(self.boxes)} chats and channels"

    def trial_credentials(self) -> dict[str, Any]:
        return {"tenantId": self.tenant_id, "clientId": self.client[0], "clientSecret": self.client[1],
                "refreshToken": next(iter(self.refresh_tokens))}

    def trial_chat(self) -> str | None:
        return getattr(self, "_trial_ids", {}).get("group")

    def trial_inbound(self, text: str) -> None:
        ids = self._trial_ids
        self.post(ids["group"], ids["alex"], text, content_type="text", notify=False)

    def trial_webhook(self, created: dict[str, Any]) -> str:
        """Graph posts to a subscription's notificationUrl, and only once syncd has made one
        (``maintain`` runs beside the import): waits for the one covering the trial chat."""
        box = self._box(self._trial_ids["group"])
        deadline = time.monotonic() + TRIAL_SUBSCRIPTION_WAIT_S
        while (sub := self._covering(box)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscription covers the trial chat within {TRIAL_SUBSCRIPTION_WAIT_S} s")
            time.sleep(0.02)  # the simulator serves syncd from its own thread meanwhile
        return str(sub["notificationUrl"])

    def trial_delivery(self, n: int) -> TeamsDelivery:
        """A colleague's message in the trial group chat and Graph's notification of it (no
        resource data: syncd fetches the message), with the subscription's clientState. Before
        syncd subscribed Graph would send nothing; that notification carries no clientState."""
        ids = self._trial_ids
        message = self.post(ids["group"], ids[("alex", "lee")[n % 2]], f"<p>trial message {n}</p>", notify=False)
        box = self._box(ids["group"])
        sub = self._covering(box)
        if sub is None:
            resource = self.resource_of(box, message)
            return self._delivery("", [{"changeType": "created", "resource": resource, "tenantId": self.tenant_id}])
        return self.notification(ids["group"], message["id"], subscription_id=sub["id"])

    def _covering(self, box: Box) -> dict[str, Any] | None:
        return next((s for s in self._live().values() if "created" in s["changeType"].split(",")
                     and self._covers(s, box)), None)

    def trial_history(self, chats: int, messages: int) -> int:
        people = [self.add_user(f"History Person{n}", f"history{n}@contoso.example") for n in range(3)]
        for c in range(chats):
            chat = self.add_chat(people[:2], topic=f"History {c}", chat_type="group")
            for m in range(messages):
                self.post(chat, people[m % 2], f"<p>history message {m} of chat {c}</p>", notify=False)
        return chats * messages

    # -- building the tenant (tests, demo) ---------------------------------------------------
    def _now_ms(self) -> int:
        self._last_ms = max(int(self.clock() * 1000), self._last_ms + 1)
        return self._last_ms

    def add_user(self, name: str, mail: str) -> str:
        uid = str(uuid.UUID(int=next(self._ids) + 0x8EA0E38B_EFB3_4757_924A_5F94061C0000))
        self.users[uid] = {"id": uid, "displayName": name, "mail": mail, "userPrincipalName": mail,
                           "givenName": name.split()[0], "surname": name.split()[-1], "jobTitle": None}
        return uid

    def add_chat(self, members: list[str], *, topic: str | None = None, chat_type: str | None = None) -> str:
        """A chat of the signed-in user and ``members``; 1:1 ids look like Graph's."""
        everyone = [self.me, *[m for m in members if m != self.me]]
        kind = chat_type or ("oneOnOne" if len(everyone) == 2 else "group")
        cid = (f"19:{everyone[0]}_{everyone[1]}@unq.gbl.spaces" if kind == "oneOnOne"
               else f"19:{'meeting_' if kind == 'meeting' else ''}{uuid.uuid4().hex}@thread.v2")
        now = iso(self._now_ms())
        self.chats[cid] = {"id": cid, "topic": topic, "createdDateTime": now, "lastUpdatedDateTime": now,
                           "chatType": kind, "webUrl": f"https://teams.microsoft.com/l/chat/{cid}/0",
                           "tenantId": self.tenant_id, "onlineMeetingInfo": None}
        self.members[cid] = everyone
        self.boxes[cid] = Box(cid, False)
        return cid

    def add_team(self, name: str, members: list[str] | None = None) -> str:
        tid = str(uuid.uuid4())
        self.teams[tid] = {"id": tid, "displayName": name, "description": f"{name} team", "isArchived": False,
                           "tenantId": self.tenant_id}
        self.members[tid] = [self.me, *(members or [])]
        self.channels[tid] = {}
        return tid

    def add_channel(self, team_id: str, name: str) -> str:
        """Returns the channel's externalChatId, ``teams/{teamId}/channels/{channelId}``."""
        cid = f"19:{uuid.uuid4().hex}@thread.tacv2"
        self.channels[team_id][cid] = {
            "id": cid, "createdDateTime": iso(self._now_ms()), "displayName": name, "description": None,
            "email": "", "membershipType": "standard", "tenantId": self.tenant_id,
            "webUrl": f"https://teams.microsoft.com/l/channel/{quote_plus(cid)}/{quote_plus(name)}?groupId={team_id}",
        }
        external = f"teams/{team_id}/channels/{cid}"
        self.boxes[external] = Box(external, True)
        return external

    def post(self, chat: str, user: str | None, content: str, *, content_type: str = "html",
             reply_to: str | None = None, subject: str | None = None, message_type: str = "message",
             attachments: list[dict[str, Any]] | None = None, notify: bool = True) -> dict[str, Any]:
        """A message in ``chat`` (an externalChatId) from ``user``; ``reply_to`` a channel root id."""
        box = self._box(chat)
        ms = self._now_ms()
        sender = None if user is None else {"application": None, "device": None, "user": {
            "@odata.type": "#microsoft.graph.teamworkUserIdentity", "id": user,
            "displayName": self.users[user]["displayName"], "userIdentityType": "aadUser", "tenantId": self.tenant_id}}
        team, channel = (chat.split("/")[1], chat.split("/")[3]) if box.channel else (None, None)
        message: dict[str, Any] = {
            "id": str(ms), "replyToId": reply_to, "etag": str(ms), "messageType": message_type,
            "createdDateTime": iso(ms), "lastModifiedDateTime": iso(ms), "lastEditedDateTime": None,
            "deletedDateTime": None, "subject": subject, "summary": None, "chatId": None if box.channel else chat,
            "importance": "normal", "locale": "en-us",
            "webUrl": f"https://teams.microsoft.com/l/message/{channel}/{ms}?groupId={team}" if box.channel else None,
            "channelIdentity": {"teamId": team, "channelId": channel} if box.channel else None,
            "policyViolation": None, "eventDetail": None, "from": sender,
            "body": {"contentType": content_type, "content": content},
            "attachments": attachments or [], "mentions": [], "reactions": [], "messageHistory": [],
        }
        if reply_to is not None:
            if not box.channel or reply_to not in box.replies:
                raise GraphError(404, "NotFound", "The message to reply to was not found.")
            box.replies[reply_to].append(message)
        else:
            box.messages.append(message)
            if box.channel:
                box.replies[message["id"]] = []
        if notify:
            self._notify(box, message, "created")
        return copy.deepcopy(message)

    def edit(self, chat: str, message_id: str, content: str, *, notify: bool = True) -> dict[str, Any]:
        message = self._find(self._box(chat), message_id)
        ms = self._now_ms()
        message["body"]["content"] = content
        message.update(lastEditedDateTime=iso(ms), lastModifiedDateTime=iso(ms), etag=str(ms))
        if notify:
            self._notify(self._box(chat), message, "updated")
        return copy.deepcopy(message)

    def soft_delete(self, chat: str, message_id: str, *, notify: bool = True) -> dict[str, Any]:
        message = self._find(self._box(chat), message_id)
        ms = self._now_ms()
        message.update(deletedDateTime=iso(ms), lastModifiedDateTime=iso(ms), etag=str(ms))
        message["body"] = {"contentType": message["body"]["contentType"], "content": ""}
        if notify:
            self._notify(self._box(chat), message, "deleted")
        return copy.deepcopy(message)

    def hard_delete(self, chat: str, message_id: str) -> None:
        """Gone for good (a retention policy): GET answers 404."""
        box = self._box(chat)
        for messages in [box.messages, *box.replies.values()]:
            messages[:] = [m for m in messages if m["id"] != message_id]

    def expire_token(self, token: str) -> None:
        self.tokens[token]["expires"] = 0

    def seed(self) -> dict[str, str]:
        """A small tenant: three colleagues, every chat kind, a channel with a thread. Returns ids."""
        ids = {"megan": self.add_user("Megan Bowen", "megan@contoso.example"),
               "alex": self.add_user("Alex Wilber", "alex@contoso.example"),
               "lee": self.add_user("Lee Gu", "lee@contoso.example")}
        ids["dm"] = self.add_chat([ids["megan"]])
        ids["group"] = self.add_chat([ids["alex"], ids["lee"]], topic="Project Falcon")
        ids["untitled"] = self.add_chat([ids["alex"], ids["megan"]])
        ids["team"] = self.add_team("Contoso", [ids["megan"], ids["alex"]])
        ids["general"] = self.add_channel(ids["team"], "General")
        self.post(ids["dm"], ids["megan"], "Hello world", content_type="text")
        self.post(ids["dm"], self.me, "<p>Hi <b>Megan</b> &amp; welcome</p>")
        self.post(ids["group"], ids["alex"], "<div>Kick-off at <i>10</i></div>")
        self.post(ids["group"], None, "<systemEventMessage/>", message_type="systemEventMessage")
        self.post(ids["untitled"], ids["megan"], "Lunch?", content_type="text")
        root = self.post(ids["general"], ids["alex"], "<p>Release plan</p>", subject="Q3 release")
        self.post(ids["general"], ids["megan"], "Ship Friday", content_type="text", reply_to=root["id"])
        self.post(ids["general"], ids["lee"], "QA Thursday", content_type="text", reply_to=root["id"])
        ids["root"] = root["id"]
        return ids

    # -- reading the truth --------------------------------------------------------------------
    def truth(self, chat: str) -> list[dict[str, Any]]:
        """Every message of ``chat`` oldest first, each channel root followed by its replies."""
        box = self._box(chat)
        out = []
        for message in box.messages:
            out.append(copy.deepcopy(message))
            out += copy.deepcopy(box.replies.get(message["id"], []))
        return out

    def _box(self, chat: str) -> Box:
        if chat not in self.boxes:
            raise GraphError(404, "NotFound", "Resource not found.")
        return self.boxes[chat]

    @staticmethod
    def _find(box: Box, message_id: str, root: str | None = None) -> dict[str, Any]:
        pool = box.replies.get(root or "", []) if root else [*box.messages, *itertools.chain(*box.replies.values())]
        for message in pool:
            if message["id"] == message_id:
                return message
        raise GraphError(404, "NotFound", "Resource not found for the segment 'messages'.")

    # -- notifications ----------------------------------------------------------------------------
    def _live(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        for sid in [s for s, sub in self.subscriptions.items() if stamp(sub["expirationDateTime"]) <= now]:
            del self.subscriptions[sid]
        return self.subscriptions

    def _covers(self, sub: dict[str, Any], box: Box) -> bool:
        resource = sub["resource"].strip("/")
        if box.channel:
            return resource in ("teams/getAllMessages", f"{box.external_id}/messages")
        if resource in ("chats/getAllMessages", f"chats/{box.external_id}/messages"):
            return True
        user = re.fullmatch(r"(?:users/([^/]+)|me)/chats/getAllMessages", resource)
        return user is not None and (user.group(1) or sub["creatorId"]) in self.members.get(box.external_id, [])

    @staticmethod
    def resource_of(box: Box, message: dict[str, Any]) -> str:
        if not box.channel:
            return f"chats('{box.external_id}')/messages('{message['id']}')"
        _, team, _, channel = box.external_id.split("/")
        base = f"teams('{team}')/channels('{channel}')/messages"
        root = message.get("replyToId")
        return f"{base}('{root}')/replies('{message['id']}')" if root else f"{base}('{message['id']}')"

    def _delivery(self, url: str, items: list[dict[str, Any]]) -> TeamsDelivery:
        payload = {"value": items}
        return TeamsDelivery(url, json.dumps(payload).encode(),
                             {"content-type": "application/json; charset=utf-8"}, "", payload)

    def _notify(self, box: Box, message: dict[str, Any], change_type: str) -> None:
        for sub in list(self._live().values()):
            if change_type in sub["changeType"].split(",") and self._covers(sub, box):
                self.outbox.append(self.notification(box.external_id, message["id"], change_type,
                                                     subscription_id=sub["id"]))

    def take_deliveries(self) -> list[TeamsDelivery]:
        """The notifications queued since the last call, in order."""
        taken, self.outbox = self.outbox, []
        return taken

    def notification(self, chat: str, message_id: str, change_type: str = "created", *,
                     subscription_id: str | None = None, client_state: str | None = None) -> TeamsDelivery:
        """The notification Graph sends about one message, for a subscription covering it."""
        box = self._box(chat)
        sub = self.subscriptions.get(subscription_id or "") or next(
            (s for s in self._live().values() if self._covers(s, box)), None)
        if sub is None:
            raise LookupError(f"no subscription covers {chat}")
        try:
            message = self._find(box, message_id)
        except GraphError:
            message = {"id": message_id}
        resource = self.resource_of(box, message)
        item = {"subscriptionId": sub["id"], "changeType": change_type,
                "clientState": sub["_clientState"] if client_state is None else client_state,
                "subscriptionExpirationDateTime": sub["expirationDateTime"], "resource": resource,
                "resourceData": {"id": message_id, "@odata.type": "#Microsoft.Graph.chatMessage",
                                 "@odata.id": resource},
                "tenantId": self.tenant_id}
        return self._delivery(sub["notificationUrl"], [item])

    def lifecycle(self, subscription_id: str, event: str) -> TeamsDelivery:
        """A lifecycle notification; ``subscriptionRemoved`` also removes the subscription."""
        sub = self.subscriptions[subscription_id]
        if event == "subscriptionRemoved":
            del self.subscriptions[subscription_id]
        item = {"subscriptionId": subscription_id, "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "tenantId": self.tenant_id, "clientState": sub["_clientState"], "lifecycleEvent": event}
        return self._delivery(sub.get("lifecycleNotificationUrl") or sub["notificationUrl"], [item])

    @staticmethod
    def validation(url: str, token: str | None = None) -> TeamsDelivery:
        """The reachability check Graph POSTs on subscription create: an empty text/plain body."""
        token = token or ("Validation: Testing client application reachability for subscription "
                          f"Request-Id: {uuid.uuid4()}")
        return TeamsDelivery(url, b"", {"content-type": "text/plain; charset=utf-8"},
                             "validationToken=" + quote_plus(token), {"validationToken": token})

    # -- request plumbing -----------------------------------------------------------------------
    async def _enter(self, request: Request, endpoint: str) -> str:
        """Faults, then bearer auth; the caller's user id."""
        fault = await self.faults.check(endpoint)
        if fault is not None:
            raise self._fault_error(fault)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if grant is None:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if grant["expires"] <= self.clock():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        return grant["user"]

    @staticmethod
    def _fault_error(fault: Fault) -> GraphError:
        if fault.kind == "rate_limit":  # the observed 429 body: UnknownError and no message
            return GraphError(fault.status, "UnknownError", "", {"retry-after": str(fault.retry_after_s)})
        return GraphError(fault.status, "serviceNotAvailable", "The service is temporarily unavailable.")

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
        return body

    @staticmethod
    def _collection(request: Request, items: list[Any], context: str, default_top: int = 20) -> JSONResponse:
        """One page behind an opaque ``$skiptoken``; the nextLink is the request URL, absolute."""
        raw_top = request.query_params.get("$top")
        try:
            top = int(raw_top) if raw_top is not None else default_top
        except ValueError:
            top = 0
        if not 1 <= top <= MAX_TOP:
            raise GraphError(400, "BadRequest",
                             f"Invalid page size specified: '{raw_top}'. Must be between 1 and 50 inclusive.")
        token = request.query_params.get("$skiptoken")
        try:
            start = int(base64.b64decode(token).decode().split("|")[1]) if token else 0
        except (ValueError, IndexError, UnicodeDecodeError):
            raise GraphError(400, "BadRequest", "The $skiptoken is invalid.") from None
        body: dict[str, Any] = {"@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{context}",
                                "@odata.count": len(items), "value": items[start:start + top]}
        if start + top < len(items):
            skip = base64.b64encode(f"{uuid.uuid4().hex[:8]}|{start + top}|{len(items)}".encode()).decode()
            query = {**dict(request.query_params), "$top": str(top), "$skiptoken": skip}
            body["@odata.nextLink"] = str(request.url.replace(query=urlencode(query, safe="$")))
        return JSONResponse(body)

    def _member_of(self, user: str, container: str) -> None:
        if user not in self.members.get(container, []):
            raise GraphError(403, "Forbidden", "Forbidden")

    def _address(self, request: Request, user: str) -> Box:
        p = request.path_params
        if "chat_id" in p:
            if p["chat_id"] not in self.chats:
                raise GraphError(404, "NotFound", "Resource not found.")
            self._member_of(user, p["chat_id"])
            return self.boxes[p["chat_id"]]
        team, channel = p["team_id"], p["channel_id"]
        if channel not in self.channels.get(team, {}):
            raise GraphError(404, "NotFound", "Resource not found.")
        self._member_of(user, team)
        return self.boxes[f"teams/{team}/channels/{channel}"]

    @staticmethod
    def _ordered(request: Request, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``$orderby`` (lastModifiedDateTime or createdDateTime, descending only) and ``$filter``
        as Graph documents them for chat messages: lastModifiedDateTime takes ``gt``/``lt``,
        createdDateTime ``lt``, and a filter on another property than the order is ignored."""
        order = request.query_params.get("$orderby", "lastModifiedDateTime desc")
        prop, _, direction = order.partition(" ")
        if prop not in ("lastModifiedDateTime", "createdDateTime") or direction != "desc":
            raise GraphError(400, "BadRequest",
                             "$orderby only supports lastModifiedDateTime and createdDateTime, descending.")
        rows = sorted(messages, key=lambda m: m[prop], reverse=True)
        condition = request.query_params.get("$filter")
        allowed = {"lastModifiedDateTime": ("gt", "lt"), "createdDateTime": ("lt",)}
        for clause in condition.split(" and ") if condition else []:
            match = _FILTER.match(clause.strip())
            if not match or match[2] not in allowed.get(match[1], ()) or parse_iso(match[3]) is None:
                raise GraphError(400, "BadRequest", f"Invalid $filter clause: '{clause.strip()}'.")
            if match[1] != prop:
                continue  # Graph ignores a filter that does not match the order
            bound, newer = stamp(match[3]), match[2] == "gt"
            rows = [m for m in rows if (stamp(m[prop]) > bound) == newer and stamp(m[prop]) != bound]
        return rows

    # -- routes -------------------------------------------------------------------------------------
    def _graph_routes(self) -> list[Route]:
        chat, channel = "/chats/{chat_id}", "/teams/{team_id}/channels/{channel_id}"
        routes = [
            Route("/me", self._me, methods=["GET"]),
            Route("/me/chats", self._chats_list, methods=["GET"]),
            Route(chat, self._chat_get, methods=["GET"]),
            Route("/me/joinedTeams", self._joined_teams, methods=["GET"]),
            Route("/teams/{team_id}", self._team_get, methods=["GET"]),
            Route("/teams/{team_id}/channels", self._channels_list, methods=["GET"]),
            Route(channel, self._channel_get, methods=["GET"]),
            Route(f"{channel}/messages/delta", self._delta, methods=["GET"]),
            Route("/subscriptions", self._subscriptions_list, methods=["GET"]),
            Route("/subscriptions", self._subscription_create, methods=["POST"]),
            Route("/subscriptions/{sub_id}", self._subscription_item, methods=["GET", "PATCH", "DELETE"]),
        ]
        for base in (chat, channel):
            routes += [
                Route(f"{base}/messages", self._messages_list, methods=["GET"]),
                Route(f"{base}/messages", self._message_send, methods=["POST"]),
                Route(f"{base}/messages/{{message_id}}", self._message_item, methods=["GET", "PATCH"]),
                Route(f"{base}/messages/{{message_id}}/softDelete", self._message_soft_delete, methods=["POST"]),
            ]
        routes += [
            Route(f"{channel}/messages/{{root_id}}/replies", self._messages_list, methods=["GET"]),
            Route(f"{channel}/messages/{{root_id}}/replies", self._message_send, methods=["POST"]),
            Route(f"{channel}/messages/{{root_id}}/replies/{{message_id}}", self._message_item, methods=["GET", "PATCH"]),
            Route(f"{channel}/messages/{{root_id}}/replies/{{message_id}}/softDelete", self._message_soft_delete,
                  methods=["POST"]),
        ]
        return routes

    async def _me(self, request: Request) -> Response:
        user = await self._enter(request, "me")
        return JSONResponse({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
                             **self.users[user]})

    def _chat_view(self, request: Request, cid: str) -> dict[str, Any]:
        view = dict(self.chats[cid])
        expand = {e.strip() for e in request.query_params.get("$expand", "").split(",") if e.strip()}
        if "members" in expand:
            view["members"] = [{
                "@odata.type": "#microsoft.graph.aadUserConversationMember",
                "id": base64.b64encode(f"{cid}##{uid}".encode()).decode(), "roles": ["owner"],
                "displayName": self.users[uid]["displayName"], "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
                "userId": uid, "email": self.users[uid]["mail"], "tenantId": self.tenant_id,
            } for uid in self.members[cid]]
        if "lastMessagePreview" in expand:
            live = [m for m in self.boxes[cid].messages if not m["deletedDateTime"]]
            last = live[-1] if live else None
            view["lastMessagePreview"] = None if last is None else {
                "id": last["id"], "createdDateTime": last["createdDateTime"], "isDeleted": False,
                "messageType": last["messageType"], "eventDetail": None, "body": dict(last["body"]), "from": last["from"]}
        return view

    async def _chats_list(self, request: Request) -> Response:
        user = await self._enter(request, "chats.list")
        mine = sorted((c for c in self.chats if user in self.members[c]),
                      key=lambda c: self.chats[c]["lastUpdatedDateTime"], reverse=True)
        return self._collection(request, [self._chat_view(request, c) for c in mine], "chats")

    async def _chat_get(self, request: Request) -> Response:
        user = await self._enter(request, "chats.get")
        box = self._address(request, user)
        return JSONResponse(self._chat_view(request, box.external_id))

    async def _joined_teams(self, request: Request) -> Response:
        user = await self._enter(request, "joinedTeams")
        teams = [t for tid, t in self.teams.items() if user in self.members[tid]]
        return self._collection(request, teams, "teams", default_top=MAX_TOP)

    async def _team_get(self, request: Request) -> Response:
        user = await self._enter(request, "teams.get")
        team = self.teams.get(request.path_params["team_id"])
        if team is None:
            raise GraphError(404, "NotFound", "No team found with Group Id")
        self._member_of(user, team["id"])
        return JSONResponse(team)

    async def _channels_list(self, request: Request) -> Response:
        user = await self._enter(request, "channels.list")
        tid = request.path_params["team_id"]
        if tid not in self.teams:
            raise GraphError(404, "NotFound", "No team found with Group Id")
        self._member_of(user, tid)
        return self._collection(request, list(self.channels[tid].values()), "teams/channels", default_top=MAX_TOP)

    async def _channel_get(self, request: Request) -> Response:
        user = await self._enter(request, "channels.get")
        box = self._address(request, user)
        return JSONResponse(self.channels[request.path_params["team_id"]][box.external_id.split("/")[3]])

    async def _messages_list(self, request: Request) -> Response:
        root = request.path_params.get("root_id")
        user = await self._enter(request, "replies.list" if root else "messages.list")
        box = self._address(request, user)
        if root is not None:
            self._find(box, root)
            return self._collection(request, self._ordered(request, box.replies[root]), "chatMessages")
        return self._collection(request, self._ordered(request, box.messages), "chatMessages")

    async def _delta(self, request: Request) -> Response:
        """Root posts changed since a ``$filter`` time or a ``$deltatoken``; the last page gives
        the deltaLink."""
        user = await self._enter(request, "messages.delta")
        box = self._address(request, user)
        since = -1.0
        condition, token = request.query_params.get("$filter"), request.query_params.get("$deltatoken")
        if condition:
            match = _FILTER.match(condition.strip())
            if not match or match[1] != "lastModifiedDateTime" or match[2] != "gt" or parse_iso(match[3]) is None:
                raise GraphError(400, "BadRequest", "delta only supports $filter=lastModifiedDateTime gt {time}.")
            since = parse_iso(match[3]) or since
        elif token:
            since = int(token) / 1000
        rows = sorted((m for m in box.messages if stamp(m["lastModifiedDateTime"]) > since),
                      key=lambda m: m["lastModifiedDateTime"])
        response = self._collection(request, rows, "Collection(chatMessage)", default_top=MAX_TOP)
        body = json.loads(bytes(response.body))
        if "@odata.nextLink" not in body:
            query = urlencode({"$deltatoken": str(self._last_ms)}, safe="$")
            body["@odata.deltaLink"] = str(request.url.replace(query=query))
        return JSONResponse(body)

    async def _message_send(self, request: Request) -> Response:
        root = request.path_params.get("root_id")
        user = await self._enter(request, "replies.send" if root else "messages.send")
        box = self._address(request, user)
        body = await self._json(request)
        content = (body.get("body") or {}).get("content") if isinstance(body.get("body"), dict) else None
        content_type = str((body.get("body") or {}).get("contentType") or "text").lower()
        if not isinstance(content, str) or not content or content_type not in ("text", "html"):
            raise GraphError(400, "BadRequest", "Missing or invalid 'body' of the chat message.")
        if root is not None:
            self._find(box, root)
        sent = self.post(box.external_id, user, content, content_type=content_type, reply_to=root,
                         subject=body.get("subject"))
        return JSONResponse({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#chatMessage", **sent}, 201)

    async def _message_item(self, request: Request) -> Response:
        patch = request.method == "PATCH"
        user = await self._enter(request, "messages.update" if patch else "messages.get")
        box = self._address(request, user)
        message = self._find(box, request.path_params["message_id"], request.path_params.get("root_id"))
        if not patch:
            return JSONResponse(copy.deepcopy(message))
        body = await self._json(request)
        content = (body.get("body") or {}).get("content") if isinstance(body.get("body"), dict) else None
        if not isinstance(content, str) or not content:
            raise GraphError(400, "BadRequest", "Missing or invalid 'body' of the chat message.")
        if (message.get("from") or {}).get("user", {}).get("id") != user:
            raise GraphError(403, "Forbidden", "A user can update only their own messages.")
        message["body"]["contentType"] = str(body["body"].get("contentType") or message["body"]["contentType"])
        self.edit(box.external_id, message["id"], content)
        return Response(status_code=204)

    async def _message_soft_delete(self, request: Request) -> Response:
        user = await self._enter(request, "messages.softDelete")
        box = self._address(request, user)
        message = self._find(box, request.path_params["message_id"], request.path_params.get("root_id"))
        if (message.get("from") or {}).get("user", {}).get("id") != user:
            raise GraphError(403, "Forbidden", "A user can delete only their own messages.")
        if not message["deletedDateTime"]:
            self.soft_delete(box.external_id, message["id"])
        return Response(status_code=204)

    # -- subscriptions ------------------------------------------------------------------------------
    def _sub_view(self, sub: dict[str, Any], *, with_state: bool) -> dict[str, Any]:
        view = {k: v for k, v in sub.items() if not k.startswith("_")}
        view["clientState"] = sub["_clientState"] if with_state else None
        return view

    def _check_expiry(self, value: Any) -> str:
        when = parse_iso(value)
        if when is None:
            raise GraphError(400, "BadRequest", "Invalid expirationDateTime.")
        if when <= self.clock() or when > self.clock() + MAX_SUBSCRIPTION_S:
            raise GraphError(400, "ExtensionError", "Operation: Create; Exception: [Status Code: BadRequest; "
                             "Reason: Subscription expiration can only be 60 minutes in the future.]")
        return iso(int(when * 1000))

    def _check_resource(self, resource: str, user: str) -> None:
        path = resource.strip("/")
        if path in ("chats/getAllMessages", "teams/getAllMessages", "me/chats/getAllMessages",
                    f"users/{user}/chats/getAllMessages"):
            return
        match = re.fullmatch(r"chats/([^/]+)/messages|teams/([^/]+)/channels/([^/]+)/messages", path)
        if match and match[1] in self.chats:
            return self._member_of(user, match[1])
        if match and match[3] in self.channels.get(match[2] or "", {}):
            return self._member_of(user, match[2])
        raise GraphError(400, "InvalidRequest", f"Resource '{resource}' is not supported or was not found.")

    async def _validate(self, url: str) -> None:
        if self.validator is None:
            return
        delivery = self.validation(url)
        status, content_type, body = await self.validator(delivery)
        assert delivery.payload is not None  # a validation request carries its token
        if status != 200 or not content_type.startswith("text/plain") or body != delivery.payload["validationToken"]:
            raise GraphError(400, "ValidationError", "Subscription validation request failed. Notification endpoint "
                             "must respond with 200 OK to validation request.")

    async def _subscription_create(self, request: Request) -> Response:
        user = await self._enter(request, "subscriptions.create")
        body = await self._json(request)
        changes = str(body.get("changeType") or "").split(",")
        url, lifecycle = str(body.get("notificationUrl") or ""), body.get("lifecycleNotificationUrl")
        if not changes or not set(changes) <= CHANGE_TYPES:
            raise GraphError(400, "InvalidRequest", "changeType must be created, updated and/or deleted.")
        for target in filter(None, (url, lifecycle)):
            if not target.startswith("https://" if self.require_https else ("https://", "http://")):
                raise GraphError(400, "InvalidRequest", "The notification URL must use https.")
        if not url:
            raise GraphError(400, "InvalidRequest", "notificationUrl is required.")
        if len(str(body.get("clientState") or "")) > 128:
            raise GraphError(400, "InvalidRequest", "clientState must be at most 128 characters.")
        self._check_resource(str(body.get("resource") or ""), user)
        expires = self._check_expiry(body.get("expirationDateTime"))
        for target in dict.fromkeys(filter(None, (url, lifecycle))):
            await self._validate(str(target))
        sid = str(uuid.uuid4())
        self.subscriptions[sid] = {
            "id": sid, "resource": body["resource"], "applicationId": self.client[0], "changeType": ",".join(changes),
            "notificationUrl": url, "notificationQueryOptions": None, "lifecycleNotificationUrl": lifecycle,
            "expirationDateTime": expires, "creatorId": user, "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2", "encryptionCertificate": None, "encryptionCertificateId": None,
            "notificationUrlAppId": None, "_clientState": body.get("clientState"),
        }
        return JSONResponse({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
                             **self._sub_view(self.subscriptions[sid], with_state=True)}, 201)

    async def _subscriptions_list(self, request: Request) -> Response:
        user = await self._enter(request, "subscriptions.list")
        mine = [self._sub_view(s, with_state=False) for s in self._live().values() if s["creatorId"] == user]
        return self._collection(request, mine, "subscriptions", default_top=MAX_TOP)

    async def _subscription_item(self, request: Request) -> Response:
        endpoint = {"GET": "subscriptions.get", "PATCH": "subscriptions.update", "DELETE": "subscriptions.delete"}
        user = await self._enter(request, endpoint[request.method])
        sub = self._live().get(request.path_params["sub_id"])
        if sub is None or sub["creatorId"] != user:
            raise GraphError(404, "ResourceNotFound", "The object was not found.")
        if request.method == "DELETE":
            del self.subscriptions[sub["id"]]
            return Response(status_code=204)
        if request.method == "PATCH":
            sub["expirationDateTime"] = self._check_expiry((await self._json(request)).get("expirationDateTime"))
        return JSONResponse(self._sub_view(sub, with_state=True))

    # -- identity platform ------------------------------------------------------------------------
    def _issue(self, user: str, scope: str) -> dict[str, Any]:
        access, refresh = f"eyJ0eXAiOiJKV1Qi.sim-{uuid.uuid4().hex}", f"0.AR8A-sim-{uuid.uuid4().hex}"
        self.tokens[access] = {"user": user, "expires": self.clock() + TOKEN_LIFETIME_S}
        self.refresh_tokens[refresh] = user
        claims = {"tid": self.tenant_id, "oid": user, "preferred_username": self.users[user]["mail"],
                  "aud": self.client[0], "iss": f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"}
        id_token = ".".join(base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=")
                            for p in ({"typ": "JWT", "alg": "RS256"}, claims)) + ".c2lt"
        return {"token_type": "Bearer", "scope": scope, "expires_in": TOKEN_LIFETIME_S,
                "ext_expires_in": TOKEN_LIFETIME_S, "access_token": access, "refresh_token": refresh,
                "id_token": id_token}

    def _tenant(self, request: Request) -> None:
        if request.path_params["tenant"] not in (self.tenant_id, "common", "organizations"):
            raise OAuthError(400, "invalid_request", f"Tenant '{request.path_params['tenant']}' not found.", 90002)

    async def _token(self, request: Request) -> Response:
        fault = await self.faults.check("token")
        if fault is not None:
            raise self._fault_error(fault)
        self._tenant(request)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if (form.get("client_id"), form.get("client_secret")) != self.client:
            raise OAuthError(401, "invalid_client", "Invalid client secret provided.", 7000215)
        scope = form.get("scope") or "https://graph.microsoft.com/.default"
        grant = form.get("grant_type")
        if grant == "refresh_token":
            user = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user is None:
                raise OAuthError(400, "invalid_grant", "The refresh token has expired or is invalid.", 70000)
            if self.revoke_used_refresh_tokens:
                del self.refresh_tokens[form["refresh_token"]]
            return JSONResponse(self._issue(user, scope))
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if code is None or code["redirect_uri"] != form.get("redirect_uri"):
                raise OAuthError(400, "invalid_grant", "The provided authorization code is invalid.", 70000)
            return JSONResponse(self._issue(code["user"], code["scope"] or scope))
        raise OAuthError(400, "unsupported_grant_type", "The provided grant type is not supported.", 70003)

    async def _authorize(self, request: Request) -> Response:
        """The consent screen, already answered "yes" by the signed-in user: 302 back with a code."""
        await self.faults.check("authorize")
        self._tenant(request)
        q = request.query_params
        if q.get("client_id") != self.client[0] or not q.get("redirect_uri") or q.get("response_type", "code") != "code":
            raise OAuthError(400, "invalid_request", "The request is missing client_id, redirect_uri or response_type.",
                             900144)
        code = f"0.AR8A-code-{uuid.uuid4().hex}"
        self.codes[code] = {"user": self.me, "redirect_uri": q["redirect_uri"], "scope": q.get("scope")}
        query = urlencode({"code": code, **({"state": q["state"]} if q.get("state") else {})})
        separator = "&" if "?" in q["redirect_uri"] else "?"
        return RedirectResponse(f"{q['redirect_uri']}{separator}{query}", status_code=302)


SIMULATOR = TeamsSimulator
