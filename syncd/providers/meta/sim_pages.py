"""Messenger and Instagram as simulators: one Page (or Instagram professional account), the
people who write to it, and their conversations, served with the Graph API's shapes on top of
``MetaGraphSimulator`` (token check, Meta's error envelope, throttling faults, signing).

Endpoints (an optional ``/v21.0`` prefix is accepted):

- ``GET /{account}`` (or ``/me``): ``{id, name}`` for a Page, ``{id, username}`` for Instagram;
- ``GET /{account}/conversations?platform=&user_id=&fields=participants,updated_time&limit=&after=``:
  newest ``updated_time`` first, cursor paging with ``paging.cursors.after`` and an absolute
  ``paging.next``;
- ``GET /{conversation}/messages?fields=&limit=&after=`` and ``GET /{conversation}?fields=messages{...}``:
  newest first; only the 20 most recent messages carry details (the rest are listed with
  ``id`` and ``created_time``), and ``GET /{message-id}`` of an older one errors (code 100,
  "deleted"), as Meta documents;
- ``POST /{account}/messages`` (or ``/me/messages``): the Send API, ``{recipient_id,
  message_id}``; outside the 24-hour window after the person's last message it answers code
  10 (subcode 2018278 on Messenger, 2534022 on Instagram) unless the ``HUMAN_AGENT`` tag is
  given and the last message is less than 7 days old. Every send queues its signed echo in
  ``echoes`` and awaits the optional ``on_echo`` hook before answering;
- ``GET /dialog/oauth`` (302 back with ``code`` and ``state``) and ``GET|POST
  /oauth/access_token`` (``code`` or ``fb_exchange_token`` → ``{access_token, token_type,
  expires_in}``), without an access token, so one simulator root serves both OAuth URLs. On
  Messenger the code exchange gives a *user* token: it reads ``GET /me/accounts`` (the Pages
  it administers, with their tokens; ``other_pages`` adds more) and ``GET /{page}`` (whose
  ``fields=access_token`` hands out the Page token) and is refused elsewhere with code 190
  "must be called with a Page Access Token", as Meta does. Instagram's ``/me/accounts`` lists
  the linked Page with its ``instagram_business_account``.

Deliveries (``MetaDelivery``: body bytes and signed headers) are built by ``user_message``,
``page_message`` (a person at the Page's inbox; an echo without ``app_id``), ``delivery``,
``read``, ``edit`` and ``unsend``; ``truth()`` lists what the platform holds. The text of the
"deleted" error and Instagram's ``read: {mid}`` receipt follow Meta's documentation, not
captured traffic.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from syncd.providers.meta.sim import GraphError, MetaDelivery, MetaGraphSimulator

DETAIL_WINDOW = 20
_VERSION = re.compile(r"^v\d+\.\d+$")
WINDOW_S = 24 * 3600
HUMAN_AGENT_WINDOW_S = 7 * 24 * 3600
MAX_TEXT = 2000


@dataclass
class Person:
    id: str
    name: str


@dataclass
class PageMessage:
    """One message of the truth, sent by a person or by the account."""

    mid: str
    user_id: str
    from_account: bool
    text: str | None
    created_ms: int
    attachments: list[dict[str, Any]] = field(default_factory=list)
    reply_to: str | None = None
    app_id: str | None = None
    tag: str | None = None
    num_edit: int = 0
    deleted: bool = False
    delivered: bool = False
    read: bool = False


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _encode(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode(value: str) -> str:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise GraphError(100, "(#100) Invalid cursor", type="OAuthException") from None


def parse_fields(spec: str | None) -> dict[str, str | None]:
    """``a,b.limit(5){c,d}`` -> ``{"a": None, "b": "c,d"}`` (modifiers such as ``limit`` kept in
    ``b``'s key are dropped; the sub-field list is kept for the nested edge)."""
    out: dict[str, str | None] = {}
    depth, start = 0, 0
    spec = spec or ""
    for i, ch in enumerate(spec + ","):
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth -= 1
        elif ch == "," and depth == 0:
            item = spec[start:i].strip()
            start = i + 1
            if not item:
                continue
            name, _, rest = item.partition("{")
            out[name.split(".")[0].strip()] = rest[:-1] if rest.endswith("}") else None
    return out


class PageMessagingSimulator(MetaGraphSimulator):
    """The shared truth and API; ``MessengerSimulator``/``InstagramSimulator`` set the details."""

    platform: ClassVar[str]
    #: error_subcode of the 24-hour window refusal.
    window_subcode: ClassVar[int]
    #: How a person (or the account) is described in participants, ``from`` and ``to``.
    name_key: ClassVar[str]
    #: Tokens from the OAuth code exchange are user tokens, good only for reading the account
    #: node (and its Page token) until traded — as on Messenger.
    user_tokens_limited: ClassVar[bool] = False
    throttle_code = 613

    def __init__(self, *, account_id: str, account_name: str, app_id: str = "1234567890123456",
                 oauth_clients: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.account_id = account_id
        self.account_name = account_name
        self.app_id = app_id
        #: OAuth client_id -> client_secret accepted by the token endpoint.
        self.oauth_clients = dict(oauth_clients or {app_id: self.app_secret})
        self.people: dict[str, Person] = {}
        #: mid -> message, in the order they happened.
        self.messages: dict[str, PageMessage] = {}
        #: user id -> conversation id.
        self.conversations: dict[str, str] = {}
        self.echoes: list[MetaDelivery] = []
        self.on_echo: Callable[[MetaDelivery], Awaitable[None]] | None = None
        self._codes: dict[str, tuple[str, str]] = {}
        #: Tokens the OAuth code exchange issued (user tokens).
        self.user_tokens: set[str] = set()
        self._page_token: str | None = None
        #: More Pages the connecting user administers (``GET /me/accounts`` records).
        self.other_pages: list[dict[str, Any]] = []
        self._seq = itertools.count(1)
        self._last_ms = 0
        self.route("GET", "{node}", self._node, endpoint="node")
        self.route("GET", "{node}/conversations", self._conversations, endpoint="conversations")
        self.route("GET", "{node}/messages", self._messages_edge, endpoint="messages")
        self.route("GET", "{node}/accounts", self._accounts, endpoint="accounts")
        self.route("POST", "{node}/messages", self._send, endpoint="send")

    # -- building the truth ---------------------------------------------------------------
    def _now_ms(self) -> int:
        self._last_ms = max(int(self.clock() * 1000), self._last_ms + 1)
        return self._last_ms

    def _new_mid(self) -> str:
        raise NotImplementedError

    def _new_conversation_id(self) -> str:
        raise NotImplementedError

    def trial_seed(self) -> str:
        """Two people who wrote to the account in the last hour (inside the 24-hour window)."""
        start = int((self.clock() - 3600) * 1000)
        for n, (user_id, name) in enumerate((("5001", "Ana Lima"), ("5002", "Ben Ode"))):
            self.add_person(user_id, name)
            for i in range(3):
                self.add_message(user_id, f"{name.split()[0]}'s message {i}", from_account=i == 1,
                                 at_ms=start + (n * 3 + i) * 1000)
        return f"{len(self.messages)} messages in {len(self.conversations)} conversations"

    def trial_chat(self) -> str | None:
        return next(iter(self.people), None)

    def trial_inbound(self, text: str) -> None:
        self.add_message(next(iter(self.people)), text)

    def trial_history(self, chats: int, messages: int) -> int:
        # The Conversations API details only a conversation's 20 most recent messages.
        messages = min(messages, DETAIL_WINDOW)
        start = int((self.clock() - 3600) * 1000) - chats * messages * 1000
        for c in range(chats):
            user_id = self.add_person(f"{880000 + c}", f"History Person {c}")
            for m in range(messages):
                self.add_message(user_id, f"history message {m} of conversation {c}",
                                 at_ms=start + (c * messages + m) * 1000)
        return chats * messages

    def trial_delivery(self, n: int) -> MetaDelivery:
        people = sorted(self.people) or [self.add_person("5001", "Ana Lima")]
        return self.user_message(people[n % len(people)], f"trial message {n}")

    def add_person(self, user_id: str, name: str) -> str:
        self.people[user_id] = Person(user_id, name)
        self.conversations.setdefault(user_id, self._new_conversation_id())
        return user_id

    def add_message(self, user_id: str, text: str | None, *, from_account: bool = False, at_ms: int | None = None,
                    attachments: list[dict[str, Any]] | None = None, reply_to: str | None = None,
                    app_id: str | None = None, tag: str | None = None) -> PageMessage:
        """Put a message in the conversation without any delivery (seeding history)."""
        if user_id not in self.people:
            self.add_person(user_id, user_id)
        message = PageMessage(self._new_mid(), user_id, from_account, text, self._now_ms() if at_ms is None else at_ms,
                              attachments=list(attachments or []), reply_to=reply_to, app_id=app_id, tag=tag)
        self.messages[message.mid] = message
        return message

    def truth(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """Every message (of one person), oldest first, unsent ones flagged ``deleted``."""
        return [
            {"mid": m.mid, "user_id": m.user_id, "from_account": m.from_account, "text": m.text,
             "created_ms": m.created_ms, "attachments": m.attachments, "reply_to": m.reply_to, "tag": m.tag,
             "num_edit": m.num_edit, "deleted": m.deleted, "delivered": m.delivered, "read": m.read}
            for m in sorted(self.messages.values(), key=lambda m: m.created_ms)
            if user_id is None or m.user_id == user_id
        ]

    def _thread(self, user_id: str) -> list[PageMessage]:
        """A conversation's live messages, newest first (what the Graph API lists)."""
        live = [m for m in self.messages.values() if m.user_id == user_id and not m.deleted]
        return sorted(live, key=lambda m: m.created_ms, reverse=True)

    def _last_inbound_ms(self, user_id: str) -> int | None:
        times = [m.created_ms for m in self.messages.values() if m.user_id == user_id and not m.from_account]
        return max(times) if times else None

    # -- rendering ------------------------------------------------------------------------
    def _party(self, user_id: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def _account(self) -> dict[str, Any]:
        return {self.name_key: self.account_name, "id": self.account_id}

    def _graph_attachment(self, a: dict[str, Any], n: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": a.get("id") or str(10**15 + n), "mime_type": a.get("mime_type"),
                               "name": a.get("name"), "size": a.get("size")}
        kind = a.get("type", "file")
        if kind == "image":
            out["image_data"] = {"url": a["url"], "preview_url": a["url"], "width": 640, "height": 480}
        elif kind == "video":
            out["video_data"] = {"url": a["url"], "preview_url": a["url"], "width": 640, "height": 480}
        else:
            out["file_url"] = a["url"]
        return out

    def _render(self, m: PageMessage, fields: dict[str, str | None], detailed: bool) -> dict[str, Any]:
        full: dict[str, Any] = {"id": m.mid, "created_time": _iso(m.created_ms)}
        if detailed:
            me, them = self._account(), self._party(m.user_id)
            full.update({"from": me if m.from_account else them,
                         "to": {"data": [them if m.from_account else me]},
                         "message": m.text or ""})
            if m.attachments:
                full["attachments"] = {"data": [self._graph_attachment(a, i) for i, a in enumerate(m.attachments)]}
        wanted = set(fields) | {"id"} if fields else {"id", "created_time"}
        if not detailed:
            wanted &= {"id", "created_time"}
        return {k: v for k, v in full.items() if k in wanted}

    def _page_of(self, request: Request, items: list[Any], default: int = 25, maximum: int = 100
                 ) -> tuple[list[Any], dict[str, Any], int]:
        """Cursor paging over ``items``: ``(page, paging, start index)``."""
        params = request.query_params
        try:
            limit = max(1, min(int(params.get("limit") or default), maximum))
        except ValueError:
            raise GraphError(100, "(#100) Param limit must be a number") from None
        try:
            start = int(_decode(params["after"]).partition(":")[2]) if params.get("after") else 0
        except ValueError:
            raise GraphError(100, "(#100) Invalid cursor") from None
        page = items[start:start + limit]
        paging: dict[str, Any] = {}
        if page:
            paging["cursors"] = {"before": _encode(f"pos:{start}"), "after": _encode(f"pos:{start + len(page)}")}
        if start + limit < len(items):
            query = {k: v for k, v in params.items() if k not in ("after", "before", "access_token")}
            query["after"] = paging["cursors"]["after"]
            paging["next"] = f"{str(request.url).split('?')[0]}?{urlencode(query)}"
        return page, paging, start

    # -- Graph API ------------------------------------------------------------------------
    def page_token(self) -> str:
        """The account's own token, as ``GET /{account}?fields=access_token`` hands it out."""
        if self._page_token is None:
            self._page_token = "EAAG-page-" + secrets.token_urlsafe(24)
            self.valid_tokens.add(self._page_token)
        return self._page_token

    def _authenticate(self, request: Request) -> None:
        super()._authenticate(request)
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("access_token")
        if not self.user_tokens_limited or token not in self.user_tokens:
            return
        segments = [s for s in request.url.path.split("/") if s and not _VERSION.match(s)]
        readable = (len(segments) == 1 and self._is_account(segments[0])) or segments == ["me", "accounts"]
        if request.method != "GET" or not readable:
            raise GraphError(190, "This method must be called with a Page Access Token", status=400)

    def _is_account(self, node: str) -> bool:
        return node in (self.account_id, "me")

    def _conversation_user(self, node: str) -> str | None:
        return next((u for u, c in self.conversations.items() if c == node), None)

    async def _node(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        node, fields = params["node"], parse_fields(request.query_params.get("fields"))
        if self._is_account(node):
            record = self._account()
            if "access_token" in fields:
                record["access_token"] = self.page_token()
            return {k: v for k, v in record.items() if not fields or k in fields or k == "id"}
        user = self._conversation_user(node)
        if user is not None:
            out: dict[str, Any] = {"id": node}
            if "messages" in fields:
                out["messages"] = self._messages_page(request, user, parse_fields(fields["messages"]), nested=True)
            return out
        message = self.messages.get(node)
        if message is None or message.deleted:
            raise self._missing(node)
        if self._thread(message.user_id).index(message) >= DETAIL_WINDOW:
            raise GraphError(100, "(#100) This message has been deleted or is older than the 20 most recent "
                             "messages of its conversation", type="OAuthException")
        return self._render(message, fields or {"id": None, "created_time": None}, detailed=True)

    def _managed_page(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _accounts(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """``GET /me/accounts``: the Pages the token's user administers, with their tokens."""
        if params["node"] != "me":
            raise self._missing(params["node"])
        fields = parse_fields(request.query_params.get("fields")) or {"name": None, "access_token": None}
        records = [{**self._managed_page(), "access_token": self.page_token(), "tasks": ["MESSAGING", "MANAGE"]},
                   *self.other_pages]
        page, paging, _ = self._page_of(request, records)
        return {"data": [{k: v for k, v in r.items() if k in fields or k == "id"} for r in page], "paging": paging}

    @staticmethod
    def _missing(node: str) -> GraphError:
        return GraphError(100, f"Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded "
                          "due to missing permissions, or does not support this operation.",
                          type="GraphMethodException", subcode=33)

    async def _conversations(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if not self._is_account(params["node"]):
            raise self._missing(params["node"])
        query = request.query_params
        if query.get("platform", self.platform) != self.platform:
            return {"data": []}
        fields = parse_fields(query.get("fields")) or {"updated_time": None}
        users = [u for u in self.conversations if self._thread(u)]
        if query.get("user_id"):
            users = [u for u in users if u == query["user_id"]]
        users.sort(key=lambda u: self._thread(u)[0].created_ms, reverse=True)
        page, paging, _ = self._page_of(request, users)
        data = []
        for user in page:
            record: dict[str, Any] = {"id": self.conversations[user]}
            if "participants" in fields:
                record["participants"] = {"data": [self._party(user), self._account()]}
            if "updated_time" in fields:
                record["updated_time"] = _iso(self._thread(user)[0].created_ms)
            if "messages" in fields:
                record["messages"] = self._messages_page(request, user, parse_fields(fields["messages"]), nested=True)
            data.append(record)
        return {"data": data, "paging": paging}

    def _messages_page(self, request: Request, user: str, fields: dict[str, str | None],
                       nested: bool = False) -> dict[str, Any]:
        thread = self._thread(user)
        paging: dict[str, Any]
        if nested:  # an edge inside another object: its first page, without the outer paging
            page, paging, start = thread[:25], {}, 0
        else:
            page, paging, start = self._page_of(request, thread)
        data = [self._render(m, fields, detailed=start + i < DETAIL_WINDOW) for i, m in enumerate(page)]
        return {"data": data, "paging": paging}

    async def _messages_edge(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        user = self._conversation_user(params["node"])
        if user is None:
            raise self._missing(params["node"])
        return self._messages_page(request, user, parse_fields(request.query_params.get("fields")))

    async def _send(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if not self._is_account(params["node"]):
            raise self._missing(params["node"])
        recipient = str((body.get("recipient") or {}).get("id") or "")
        if recipient not in self.people:
            raise GraphError(100, "(#100) No matching user found", subcode=2018001)
        self._check_messaging_type(body)
        text = (body.get("message") or {}).get("text")
        if not isinstance(text, str) or not text.strip():
            raise GraphError(100, "(#100) Param message must be non-empty")
        if len(text) > MAX_TEXT:
            raise GraphError(100, f"(#100) Length of param message[text] must be less than or equal to {MAX_TEXT}")
        tag = body.get("tag") if body.get("messaging_type") == "MESSAGE_TAG" else None
        last = self._last_inbound_ms(recipient)
        allowed_s = HUMAN_AGENT_WINDOW_S if tag == "HUMAN_AGENT" else WINDOW_S
        if last is None or self.clock() * 1000 - last > allowed_s * 1000:
            raise GraphError(10, "(#10) This message is sent outside of allowed window.", subcode=self.window_subcode)
        sent = self.add_message(recipient, text, from_account=True, app_id=self.app_id, tag=tag)
        echo = self._echo(sent)
        self.echoes.append(echo)
        if self.on_echo is not None:
            await self.on_echo(echo)
        return {"recipient_id": recipient, "message_id": sent.mid}

    def _check_messaging_type(self, body: dict[str, Any]) -> None:
        kind = body.get("messaging_type")
        if kind is not None and kind not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            raise GraphError(100, "(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
        if kind == "MESSAGE_TAG" and not body.get("tag"):
            raise GraphError(100, "(#100) Param tag is required when messaging_type is MESSAGE_TAG")

    # -- OAuth ----------------------------------------------------------------------------
    async def _dispatch(self, request: Request) -> Response:
        tail = [s for s in request.url.path.split("/") if s][-2:]
        if tail == ["dialog", "oauth"]:
            return self._oauth_dialog(request)
        if tail == ["oauth", "access_token"]:
            return await self._oauth_token(request)
        return await super()._dispatch(request)

    def _oauth_dialog(self, request: Request) -> Response:
        q = request.query_params
        client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
        if client_id not in self.oauth_clients or not redirect_uri:
            return JSONResponse({"error": {"message": "Invalid App ID", "type": "OAuthException", "code": 101}}, 400)
        code = "AQ" + secrets.token_urlsafe(24)
        self._codes[code] = (client_id, redirect_uri)
        query = {"code": code, **({"state": q["state"]} if q.get("state") else {})}
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode(query)}#_=_", status_code=302)

    async def _oauth_token(self, request: Request) -> Response:
        values = dict(request.query_params)
        if request.method == "POST":
            values.update(parse_qsl((await request.body()).decode("utf-8", "replace")))
        client_id = values.get("client_id", "")
        if self.oauth_clients.get(client_id) != values.get("client_secret"):
            return self._error(GraphError(1, "Error validating client secret.", status=400))
        if values.get("grant_type") == "fb_exchange_token":
            if values.get("fb_exchange_token") not in self.valid_tokens:
                return self._error(GraphError(190, "Invalid OAuth access token.", status=400))
            expires = 60 * 24 * 3600
        else:
            issued = self._codes.pop(values.get("code", ""), None)
            if issued is None or issued != (client_id, values.get("redirect_uri", "")):
                return self._error(GraphError(100, "Invalid verification code format.", subcode=36007))
            expires = 3600 * 2
        token = "EAAG" + secrets.token_urlsafe(32)
        self.valid_tokens.add(token)
        if values.get("grant_type") != "fb_exchange_token" or values.get("fb_exchange_token") in self.user_tokens:
            self.user_tokens.add(token)
        return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": expires})

    # -- webhook deliveries -----------------------------------------------------------------
    def _envelope(self, item: dict[str, Any]) -> MetaDelivery:
        now = self._now_ms()
        return self.sign({"object": self.webhook_object,
                          "entry": [{"id": self.account_id, "time": now, "messaging": [item]}]})

    def _pair(self, user_id: str, from_account: bool) -> dict[str, Any]:
        me, them = {"id": self.account_id}, {"id": user_id}
        return {"sender": me, "recipient": them} if from_account else {"sender": them, "recipient": me}

    def _webhook_message(self, m: PageMessage) -> dict[str, Any]:
        out: dict[str, Any] = {"mid": m.mid}
        if m.from_account:
            out = {"is_echo": True, **({"app_id": int(m.app_id)} if m.app_id else {}), **out}
        if m.text:
            out["text"] = m.text
        if m.attachments:
            out["attachments"] = [{"type": a.get("type", "file"), "payload": {"url": a["url"]}} for a in m.attachments]
        if m.reply_to:
            out["reply_to"] = {"mid": m.reply_to}
        return {**self._pair(m.user_id, m.from_account), "timestamp": m.created_ms, "message": out}

    def _echo(self, m: PageMessage) -> MetaDelivery:
        return self._envelope(self._webhook_message(m))

    def user_message(self, user_id: str, text: str | None = None, *, name: str | None = None,
                     attachments: list[dict[str, Any]] | None = None, reply_to: str | None = None,
                     at_ms: int | None = None) -> MetaDelivery:
        """A person writes to the account (opening the 24-hour window)."""
        if name is not None or user_id not in self.people:
            self.add_person(user_id, name or user_id)
        message = self.add_message(user_id, text, at_ms=at_ms, attachments=attachments, reply_to=reply_to)
        return self._envelope(self._webhook_message(message))

    def page_message(self, user_id: str, text: str) -> MetaDelivery:
        """Someone answers from the account's own inbox (not through the API): only an echo."""
        return self._echo(self.add_message(user_id, text, from_account=True))

    def last_mid(self, user_id: str) -> str:
        return self._thread(user_id)[0].mid

    def delivery(self, user_id: str, mids: list[str] | None = None, *, watermark_ms: int | None = None
                 ) -> MetaDelivery:
        """The person's device got the account's messages: named ``mids`` (marked delivered),
        or, without mids, everything up to ``watermark_ms``."""
        watermark = watermark_ms if watermark_ms is not None else self._now_ms()
        for m in self.messages.values():
            covered = m.mid in mids if mids else m.created_ms <= watermark
            if m.user_id == user_id and m.from_account and covered:
                m.delivered = True
        receipt: dict[str, Any] = {"watermark": watermark}
        if mids:
            receipt = {"mids": list(mids), **receipt}
        return self._envelope({**self._pair(user_id, False), "delivery": receipt})

    def read(self, user_id: str, *, watermark_ms: int | None = None, mid: str | None = None) -> MetaDelivery:
        raise NotImplementedError

    def _mark_read(self, user_id: str, upto_ms: int) -> None:
        for m in self.messages.values():
            if m.user_id == user_id and m.from_account and m.created_ms <= upto_ms:
                m.read = m.delivered = True

    def edit(self, mid: str, text: str) -> MetaDelivery:
        """The person edits their message (``message_edit``)."""
        m = self.messages[mid]
        m.text, m.num_edit = text, m.num_edit + 1
        return self._envelope({**self._pair(m.user_id, m.from_account), "timestamp": self._now_ms(),
                               "message_edit": {"mid": mid, "text": text, "num_edit": m.num_edit}})

    def unsend(self, mid: str) -> MetaDelivery:
        """The person unsends their message: ``message: {mid, is_deleted: true}``."""
        m = self.messages[mid]
        m.deleted = True
        return self._envelope({**self._pair(m.user_id, m.from_account), "timestamp": self._now_ms(),
                               "message": {"mid": mid, "is_deleted": True}})
