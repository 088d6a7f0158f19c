"""An in-memory Telegram that speaks the Bot API and builds webhook deliveries as Telegram does.

Answers have Telegram's real shapes (compare ``tests/fixtures/telegram.json``): every answer
is the envelope ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N,
"description": "..."}`` with HTTP status N; throttling is 429 with ``parameters.retry_after``
in the body and no ``Retry-After`` header. Methods are served at ``.../bot{token}/{method}``
(any prefix, method names case-insensitive) and take their parameters as a query string,
a URL-encoded or multipart form, or JSON, like Telegram.

Bots see updates only. Tests make people act with ``user_message``/``edit_user_message``/
``channel_post``/``edit_channel_post``; each returns the ``TelegramDelivery`` Telegram would
POST to the registered webhook (with its ``X-Telegram-Bot-Api-Secret-Token``), and the test
decides when and how often to deliver it. While no webhook is set the update waits in the
bot's queue for ``getUpdates`` instead (offsets confirm and drop updates; updates older than
24 h are dropped); while one is set, ``getUpdates`` answers 409 (counted in ``conflicts``).
The bot's own messages never come back as updates, as on Telegram. ``timeout`` is accepted
but a poll answers at once (no long poll).
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

DEFAULT_TOKEN = "7000000001:AAHsimBotTokenForTestsOnly_0123456789"
PATH = re.compile(r"/bot([^/]+)/([A-Za-z]+)/?$")
SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Telegram keeps unconfirmed updates this long.
UPDATE_TTL_S = 24 * 3600
#: Bots may delete messages this long after they were sent.
DELETE_WINDOW_S = 48 * 3600
CONFLICT = ("Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first")
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message")


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


@dataclass(frozen=True)
class TelegramDelivery:
    """One webhook POST exactly as Telegram sends it: the Update as raw bytes, and headers."""

    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]

    @property
    def update_id(self) -> int:
        return self.payload["update_id"]


@dataclass
class SimBot:
    """One bot: its user, its webhook registration and its queue of unconfirmed updates."""

    token: str
    user: dict[str, Any]
    webhook: dict[str, Any] | None = None
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.user["id"]


class TelegramSimulator(Trial):
    """The truth of a small Telegram, served as an ASGI app (``httpx.ASGITransport(sim)``)."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "Sync Bot",
        bot_username: str = "sync_sim_bot",
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        first_update_id: int = 512_345_678,
        strict_webhook_urls: bool = False,
    ):
        self.clock = clock
        self.faults = faults or Faults()
        #: Refuse webhook URLs Telegram refuses (not HTTPS, or a port other than 443/80/88/8443).
        self.strict_webhook_urls = strict_webhook_urls
        self.bots: dict[str, SimBot] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.chats: dict[int, dict[str, Any]] = {}
        #: chat id -> message_id -> record (private keys start with "_").
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}
        self._last_ids: dict[int, int] = {}  # chat id -> the last message id handed out
        #: getUpdates calls answered 409 because a webhook was set.
        self.conflicts = 0
        #: Every API call as (method, parameters), for assertions.
        self.requests: list[tuple[str, dict[str, Any]]] = []
        #: Names -> ids of the world ``seed`` built.
        self.ids: dict[str, int] = {}
        self._update_ids = itertools.count(first_update_id)
        self._user_ids = itertools.count(700_000_001)
        self._group_ids = itertools.count(4_100_000_001)
        self._super_ids = itertools.count(2_233_445_566)
        self.bot = self.add_bot(token, bot_name, bot_username)
        self.app = Starlette(routes=[Route("/{path:path}", self._dispatch, methods=["GET", "POST"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- a trial (``syncd sim telegram``) ---------------------------------------------------
    trial_roots: ClassVar[dict[str, str]] = {"telegram": ""}

    def trial_seed(self) -> str:
        self.seed()
        return "4 chats the bot is in; Telegram keeps no history: messages are seen as they arrive"

    def trial_credentials(self) -> dict[str, Any]:
        return {"botToken": self.bot.token}

    def trial_chat(self) -> str | None:
        return str(self.ids["group"]) if "group" in self.ids else None

    def trial_delivery(self, n: int) -> TelegramDelivery:
        return self.user_message(self.ids["group"], self.ids[("alice", "bob")[n % 2]], f"trial message {n}")

    # -- building the world -----------------------------------------------------------------
    def add_bot(self, token: str, first_name: str, username: str) -> SimBot:
        bot_id = int(token.partition(":")[0])
        user = {"id": bot_id, "is_bot": True, "first_name": first_name, "username": username}
        self.users[bot_id] = user
        self.bots[token] = SimBot(token, user)
        return self.bots[token]

    def add_user(self, first_name: str, last_name: str | None = None, username: str | None = None) -> int:
        uid = next(self._user_ids)
        user: dict[str, Any] = {"id": uid, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        self.users[uid] = {**user, "language_code": "en"}
        return uid

    def _add_chat(self, chat: dict[str, Any]) -> int:
        self.chats[chat["id"]] = chat
        self.messages.setdefault(chat["id"], {})
        return chat["id"]

    def add_private_chat(self, user_id: int) -> int:
        """A private chat's id is the user's id."""
        user = self.users[user_id]
        fields: dict[str, Any] = {k: user[k] for k in ("first_name", "last_name", "username") if k in user}
        return self._add_chat({"id": user_id, **fields, "type": "private"})

    def add_group(self, title: str) -> int:
        return self._add_chat({"id": -next(self._group_ids), "title": title, "type": "group"})

    def add_supergroup(self, title: str, *, chat_id: int | None = None, username: str | None = None) -> int:
        """Supergroup ids are ``-100`` followed by the group's number (up to 52 bits in all)."""
        chat_id = chat_id if chat_id is not None else -int(f"100{next(self._super_ids)}")
        return self._add_chat({"id": chat_id, "title": title, **({"username": username} if username else {}),
                               "type": "supergroup"})

    def add_channel(self, title: str, *, chat_id: int | None = None, username: str | None = None) -> int:
        chat_id = chat_id if chat_id is not None else -int(f"100{next(self._super_ids)}")
        return self._add_chat({"id": chat_id, "title": title, **({"username": username} if username else {}),
                               "type": "channel"})

    def seed(self) -> dict[str, int]:
        """Two people, a private chat, a group, a supergroup and a channel. Returns ids."""
        ids = {
            "alice": self.add_user("Alice", "Archer", "alice_a"),
            "bob": self.add_user("Bob", username="bobby"),
        }
        ids["dm_alice"] = self.add_private_chat(ids["alice"])
        ids["group"] = self.add_group("Ops team")
        ids["supergroup"] = self.add_supergroup("Support", username="sim_support")
        ids["channel"] = self.add_channel("Announcements", username="sim_news")
        self.ids.update(ids)
        return ids

    # -- what people do (each returns the delivery Telegram would POST) ------------------------
    def user_message(self, chat_id: int, user_id: int, text: str, *, reply_to: int | None = None,
                     bot: SimBot | None = None, **fields: Any) -> TelegramDelivery:
        """A person writes in a chat (``fields`` adds Message fields, e.g. a ``document``)."""
        record = self._new_message(chat_id, {"from": self._public_user(user_id)}, text, reply_to, fields)
        return self._emit(bot or self.bot, "message", record)

    def edit_user_message(self, chat_id: int, message_id: int, text: str, *,
                          bot: SimBot | None = None) -> TelegramDelivery:
        record = self._edit(chat_id, message_id, text)
        return self._emit(bot or self.bot, "edited_message", record)

    def channel_post(self, chat_id: int, text: str, *, reply_to: int | None = None,
                     bot: SimBot | None = None) -> TelegramDelivery:
        """An administrator posts in a channel: the author is the channel itself."""
        record = self._new_message(chat_id, {"sender_chat": self._chat(chat_id)}, text, reply_to, {})
        return self._emit(bot or self.bot, "channel_post", record)

    def edit_channel_post(self, chat_id: int, message_id: int, text: str, *,
                          bot: SimBot | None = None) -> TelegramDelivery:
        record = self._edit(chat_id, message_id, text)
        return self._emit(bot or self.bot, "edited_channel_post", record)

    def message_update(self, chat_id: int, message_id: int, kind: str = "message", *,
                       bot: SimBot | None = None) -> TelegramDelivery:
        """A new update (new update_id) carrying a stored message as it is now, e.g. the
        bot's own message reaching it by another route."""
        return self._emit(bot or self.bot, kind, self._find(chat_id, message_id))

    def _new_message(self, chat_id: int, author: dict[str, Any], text: str | None, reply_to: int | None,
                     fields: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(chat_id)
        box = self.messages[chat["id"]]
        # Telegram never reuses a message id, even after the newest message was deleted.
        next_id = max(self._last_ids.get(chat["id"], 0), max(box, default=0)) + 1
        self._last_ids[chat["id"]] = next_id
        record: dict[str, Any] = {"message_id": next_id, **author, "chat": dict(chat),
                                  "date": int(self.clock())}
        if reply_to is not None:
            parent = {k: v for k, v in self._find(chat["id"], reply_to).items()
                      if k != "reply_to_message" and not k.startswith("_")}
            record["reply_to_message"] = parent
        if text is not None:
            record["text"] = text
        record.update(fields)
        box[record["message_id"]] = record
        return record

    def _edit(self, chat_id: int, message_id: int, text: str) -> dict[str, Any]:
        record = self._find(chat_id, message_id)
        record["text"] = text
        record["edit_date"] = max(int(self.clock()), record["date"] + 1)
        return record

    def _emit(self, bot: SimBot, kind: str, record: dict[str, Any]) -> TelegramDelivery:
        update = {"update_id": next(self._update_ids), kind: self._public(record)}
        if bot.webhook is None:
            bot.updates.append({**update, "_at": self.clock()})
        body = json.dumps(update).encode()
        headers = {"Content-Type": "application/json"}
        if bot.webhook and bot.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = bot.webhook["secret_token"]
        return TelegramDelivery(update, body, headers)

    @staticmethod
    async def deliver(http_client: httpx.AsyncClient, url: str, delivery: TelegramDelivery) -> httpx.Response:
        """POST one delivery to ``url`` the way Telegram does."""
        return await http_client.post(url, content=delivery.body, headers=delivery.headers)

    # -- truth ------------------------------------------------------------------------------
    def truth(self, chat_id: int) -> list[dict[str, Any]]:
        """The live messages of a chat, oldest first, as the Bot API would render them."""
        return [self._public(m) for _, m in sorted(self.messages[int(chat_id)].items())]

    def webhook_of(self, bot: SimBot | None = None) -> dict[str, Any] | None:
        """What ``setWebhook`` registered for the bot (``None`` when no webhook is set)."""
        return (bot or self.bot).webhook

    def pending(self, bot: SimBot | None = None) -> list[dict[str, Any]]:
        """The bot's unconfirmed updates."""
        return [self._public(u) for u in (bot or self.bot).updates]

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _public(record: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_")}

    def _public_user(self, user_id: int) -> dict[str, Any]:
        return dict(self.users[user_id])

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            found = next((c for c in self.chats.values() if c.get("username") == chat_id[1:]), None)
        else:
            try:
                found = self.chats.get(int(chat_id))
            except (TypeError, ValueError):
                found = None
        if found is None:
            raise _bad("chat not found")
        return found

    def _find(self, chat_id: int, message_id: Any) -> dict[str, Any]:
        try:
            return self.messages[int(chat_id)][int(message_id)]
        except (KeyError, TypeError, ValueError):
            raise _bad("message not found") from None

    # -- the Bot API --------------------------------------------------------------------------
    async def _dispatch(self, request: Request) -> JSONResponse:
        match = PATH.search(request.url.path)
        if match is None:
            return self._error(_ApiError(404, "Not Found"))
        token, name = match.groups()
        handler = self._methods().get(name.lower())
        bot = self.bots.get(token)
        if bot is None:
            return self._error(_ApiError(401, "Unauthorized"))
        if handler is None:
            return self._error(_ApiError(404, "Not Found"))
        method = handler.__name__.lstrip("_")
        try:
            params = await self._params(request)
        except ValueError:
            return self._error(_bad("can't parse request body"))
        self.requests.append((method, params))
        fault = await self.faults.check(method)
        if fault is not None:
            if fault.kind == "rate_limit":
                seconds = fault.retry_after_s or 1
                return self._error(_ApiError(429, f"Too Many Requests: retry after {seconds}",
                                             {"retry_after": seconds}))
            reason = "Bad Gateway" if fault.status == 502 else "Internal Server Error"
            return self._error(_ApiError(fault.status, reason))
        try:
            result = handler(bot, params)
        except _ApiError as exc:
            return self._error(exc)
        if isinstance(result, tuple):  # (result, description)
            return JSONResponse({"ok": True, "result": result[0], "description": result[1]})
        return JSONResponse({"ok": True, "result": result})

    def _methods(self) -> dict[str, Callable[[SimBot, dict[str, Any]], Any]]:
        handlers = (self._getMe, self._setWebhook, self._deleteWebhook, self._getWebhookInfo, self._getUpdates,
                    self._sendMessage, self._editMessageText, self._deleteMessage)
        return {h.__name__.lstrip("_").lower(): h for h in handlers}

    @staticmethod
    def _error(exc: _ApiError) -> JSONResponse:
        body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
        if exc.parameters:
            body["parameters"] = exc.parameters
        return JSONResponse(body, status_code=exc.code)

    @staticmethod
    async def _params(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        if request.method != "POST":
            return params
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        if "application/json" in ctype:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
            params.update(data)
        elif "multipart/form-data" in ctype:
            parsed = email.message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body,
                                              policy=email.policy.HTTP)
            for part in parsed.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name and isinstance(name, str):
                    params[name] = part.get_content()
        elif body:
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        return params

    @staticmethod
    def _int(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
        value = params.get(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad(f"field \"{name}\" must be of type Integer") from None

    @staticmethod
    def _json(params: dict[str, Any], name: str) -> Any:
        """A structured parameter: a JSON value, or a JSON-serialized string (forms, queries)."""
        value = params.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _bad(f"can't parse {name} JSON object") from None
        return value

    def _getMe(self, bot: SimBot, params: dict[str, Any]) -> dict[str, Any]:
        return {**bot.user, "can_join_groups": True, "can_read_all_group_messages": False,
                "supports_inline_queries": False, "can_connect_to_business": False, "has_main_web_app": False}

    def _setWebhook(self, bot: SimBot, params: dict[str, Any]) -> tuple[bool, str]:
        url = str(params.get("url") or "")
        if not url:
            return self._deleteWebhook(bot, params)
        secret = params.get("secret_token")
        if secret is not None and not SECRET.fullmatch(str(secret)):
            raise _bad("secret token contains unallowed characters")
        parts = urlsplit(url)
        if self.strict_webhook_urls and parts.scheme != "https":
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if self.strict_webhook_urls and (parts.port or 443) not in (443, 80, 88, 8443):
            raise _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        allowed = self._json(params, "allowed_updates")
        if str(params.get("drop_pending_updates")).lower() == "true":
            bot.updates.clear()
        bot.webhook = {"url": url, "secret_token": secret, "allowed_updates": allowed,
                       "max_connections": self._int(params, "max_connections", 40)}
        return True, "Webhook was set"

    def _deleteWebhook(self, bot: SimBot, params: dict[str, Any]) -> tuple[bool, str]:
        if str(params.get("drop_pending_updates")).lower() == "true":
            bot.updates.clear()
        if bot.webhook is None:
            return True, "Webhook is already deleted"
        bot.webhook = None
        return True, "Webhook was deleted"

    def _getWebhookInfo(self, bot: SimBot, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": len(bot.updates)}
        if bot.webhook:
            info.update(url=bot.webhook["url"], max_connections=bot.webhook["max_connections"])
            if bot.webhook["allowed_updates"] is not None:
                info["allowed_updates"] = bot.webhook["allowed_updates"]
        return info

    def _getUpdates(self, bot: SimBot, params: dict[str, Any]) -> list[dict[str, Any]]:
        if bot.webhook is not None:
            self.conflicts += 1
            raise _ApiError(409, CONFLICT)
        offset = self._int(params, "offset")
        limit = min(max(self._int(params, "limit", 100) or 100, 1), 100)
        if (self._int(params, "timeout", 0) or 0) < 0:
            raise _bad("timeout must be non-negative")
        now = self.clock()
        bot.updates = [u for u in bot.updates if now - u["_at"] < UPDATE_TTL_S]
        if offset is not None and offset < 0:
            bot.updates = bot.updates[offset:]  # -N: the last N updates; the rest are forgotten
        elif offset is not None:
            # Calling with an offset confirms every update below it: Telegram drops them.
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
        return [self._public(u) for u in bot.updates[:limit]]

    def _sendMessage(self, bot: SimBot, params: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        text = params.get("text")
        if not text or not str(text).strip():
            raise _bad("message text is empty")
        if len(str(text)) > 4096:
            raise _bad("message is too long")
        reply = self._json(params, "reply_parameters") or {}
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        reply_to = reply_to if reply_to is not None else self._int(params, "reply_to_message_id")
        if reply_to is not None and int(reply_to) not in self.messages[chat["id"]]:
            raise _bad("message to be replied not found")
        author = {"sender_chat": chat} if chat["type"] == "channel" else {"from": dict(bot.user)}
        record = self._new_message(chat["id"], author, str(text), int(reply_to) if reply_to is not None else None, {})
        record["_bot"] = bot.id
        return self._public(record)

    def _target(self, params: dict[str, Any], missing: str) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        message_id = self._int(params, "message_id")
        record = self.messages[chat["id"]].get(message_id or 0)
        if record is None:
            raise _bad(missing)
        return record

    def _editMessageText(self, bot: SimBot, params: dict[str, Any]) -> dict[str, Any]:
        record = self._target(params, "message to edit not found")
        if record.get("_bot") != bot.id:
            raise _bad("message can't be edited")
        text = params.get("text")
        if not text:
            raise _bad("message text is empty")
        if record.get("text") == text:
            raise _bad(NOT_MODIFIED)
        return self._public(self._edit(record["chat"]["id"], record["message_id"], str(text)))

    def _deleteMessage(self, bot: SimBot, params: dict[str, Any]) -> bool:
        record = self._target(params, "message to delete not found")
        chat = record["chat"]
        allowed = record.get("_bot") == bot.id or chat["type"] == "private"
        if not allowed or self.clock() - record["date"] > DELETE_WINDOW_S:
            raise _bad("message can't be deleted")
        # Deletions are never reported to bots: no update.
        del self.messages[chat["id"]][record["message_id"]]
        return True


SIMULATOR = TelegramSimulator
