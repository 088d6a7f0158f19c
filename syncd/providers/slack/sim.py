"""An in-memory Slack workspace that speaks the Web API and sends signed Events API deliveries.

Answers have Slack's real shapes (compare ``tests/fixtures/slack.json``): errors are HTTP 200
with ``ok: false`` (rate limits are HTTP 429 + ``Retry-After``), cursors are opaque base64,
history is newest first and hides thread replies, replies come from ``conversations.replies``
with the parent first on every page. Mount it anywhere: the method is the last path segment,
so ``<url>/api/conversations.history`` and ``<url>/conversations.history`` both work.

"Add to Slack" is served too: ``GET /oauth/v2/authorize`` (the consent page; it approves at
once, or refuses with ``oauth_deny``) redirects back with a code that ``oauth.v2.access``
exchanges, once, for a new bot token of this workspace.

Tests drive the workspace with ``post_user_message``/``edit_message``/``delete_message``; each
returns the ``SlackDelivery`` Slack would POST, and the test decides when (and how many times)
to ``deliver`` it. The bot's own posts queue their echo deliveries in ``echoes`` and call the
optional ``on_echo`` hook before the API answer returns.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

CHANNEL_TYPES = {"public_channel": "channel", "private_channel": "group", "im": "im", "mpim": "mpim"}
#: Slack's authorization codes are good for ten minutes.
OAUTH_CODE_TTL_S = 600


def ts_to_us(ts: str | float) -> int:
    """A Slack ``ts`` ("1512085950.000216") as integer microseconds, exact."""
    return int(Decimal(str(ts)) * 1_000_000)


def us_to_ts(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _flag(value: Any) -> bool:
    """A boolean argument as Slack reads it: ``true``/``1`` (a query string) or JSON true."""
    return value is True or str(value).lower() in ("true", "1")


def _cursor(prefix: str, value: Any) -> str:
    return base64.b64encode(f"{prefix}:{value}".encode()).decode()


def _uncursor(prefix: str, cursor: str) -> str:
    try:
        head, _, value = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise _ApiError("invalid_cursor") from None
    if head != prefix or not value:
        raise _ApiError("invalid_cursor")
    return value


class _ApiError(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class SlackDelivery:
    """One Events API POST exactly as Slack sends it: raw body bytes and headers."""

    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]

    @property
    def event_id(self) -> str | None:
        return self.payload.get("event_id")


class SlackSimulator(Trial):
    """The truth of one Slack workspace, served as an ASGI app (``httpx.ASGITransport(sim)``)."""

    def __init__(
        self,
        *,
        team_id: str = "T0SIMTEAM1",
        valid_tokens: Iterable[str] = ("xoxb-sim-bot-token",),
        signing_secret: str = "sim-signing-secret",
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",
    ):
        self.team_id = team_id
        self.valid_tokens = set(valid_tokens)
        #: Tokens answered with ``token_revoked`` (an uninstalled app).
        self.revoked_tokens: set[str] = set()
        self.signing_secret = signing_secret
        self.clock = clock
        self.faults = faults or Faults()
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.echoes: list[SlackDelivery] = []
        self.on_echo: Callable[[SlackDelivery], Awaitable[None]] | None = None
        #: Methods whose next_cursor repeats the cursor they were given (a buggy API).
        self.stuck_cursors: set[str] = set()
        #: Most messages a history or replies page holds, whatever ``limit`` asked (Slack may
        #: return fewer than asked): small pages for tests that cannot lower the client's limit.
        self.max_page: int | None = None
        #: Names -> ids of the workspace ``seed_workspace`` built.
        self.ids: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._last_us = 0
        self.bot_user_id = self.add_user("syncbot", "Sync Bot", is_bot=True)
        self.bot_id, self.app_id = "B0SIMBOT01", "A0SIMAPP01"
        #: The Slack app installed through OAuth: its credentials, the codes it handed out.
        self.client = (client_id, client_secret)
        self.oauth_codes: dict[str, dict[str, Any]] = {}
        #: Set to an error (``"access_denied"``) to have the consent page refuse.
        self.oauth_deny: str | None = None
        self.app = Starlette(routes=[
            Route("/oauth/v2/authorize", self._authorize, methods=["GET"]),
            Route("/{path:path}", self._dispatch, methods=["GET", "POST"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- a trial (``syncd sim slack``) ------------------------------------------------------
    trial_roots: ClassVar[dict[str, str]] = {"slack": "/api", "slack_oauth": ""}

    def trial_seed(self) -> str:
        self.seed_workspace()
        return f"{sum(len(m) for m in self.messages.values())} messages in {len(self.channels)} conversations"

    def trial_credentials(self) -> dict[str, Any]:
        return {"botToken": min(self.valid_tokens), "signingSecret": self.signing_secret}

    def trial_chat(self) -> str | None:
        return self.ids.get("general")

    def trial_inbound(self, text: str) -> None:
        self.add_message(self.ids["general"], text, self.ids["bob"])

    def trial_history(self, chats: int, messages: int) -> int:
        # Written straight into the channels: add_message re-sorts a channel on every message.
        people = [self.add_user(f"history{n}", f"History {n}", email=f"history{n}@example.com") for n in range(5)]
        start = int(self.clock()) - chats * messages - 86_400
        for c in range(chats):
            channel = self.add_channel(f"history-{c:04d}")
            base = (start + c * messages) * 1_000_000
            self.messages[channel] = [
                {"type": "message", "user": people[m % len(people)], "team": self.team_id,
                 "text": f"message {m} in channel {c}: the quarterly numbers are in the shared folder",
                 "ts": us_to_ts(base + m * 1_000_000 + 1)} for m in range(messages)]
        return chats * messages

    def trial_delivery(self, n: int) -> SlackDelivery:
        channel = self.ids["general"] if n % 2 else self.ids["secret"]
        return self.post_user_message(channel, f"trial message {n}", self.ids[("alice", "bob", "carol")[n % 3]])

    # -- building the workspace -----------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        return f"{prefix}0SIM{next(self._ids):05d}"

    def _now_ts(self) -> str:
        self._last_us = max(int(self.clock() * 1_000_000), self._last_us + 1)
        return us_to_ts(self._last_us)

    def add_user(self, name: str, real_name: str, *, email: str | None = None, is_bot: bool = False) -> str:
        uid = self._next_id("U")
        profile = {
            "real_name": real_name, "real_name_normalized": real_name, "display_name": name,
            "display_name_normalized": name, "status_text": "", "status_emoji": "", "team": self.team_id,
        }
        if email:
            profile["email"] = email
        self.users[uid] = {
            "id": uid, "team_id": self.team_id, "name": name, "deleted": False, "real_name": real_name,
            "tz": "Europe/London", "tz_offset": 0, "profile": profile, "is_admin": False, "is_owner": False,
            "is_bot": is_bot, "is_app_user": False, "updated": int(self.clock()),
        }
        return uid

    def _add_conversation(self, cid: str, kind: str, fields: dict[str, Any]) -> str:
        self.channels[cid] = {"id": cid, "created": int(self.clock()), "is_archived": False,
                              "context_team_id": self.team_id, "updated": int(self.clock() * 1000),
                              "_type": kind, **fields}
        self.messages[cid] = []
        return cid

    def add_channel(self, name: str, *, private: bool = False, topic: str = "") -> str:
        kind = "private_channel" if private else "public_channel"
        return self._add_conversation(self._next_id("G" if private else "C"), kind, {
            "name": name, "name_normalized": name, "is_channel": not private, "is_group": private,
            "is_im": False, "is_mpim": False, "is_private": private, "is_general": name == "general",
            "is_shared": False, "is_ext_shared": False, "is_org_shared": False, "is_member": True,
            "creator": self.bot_user_id, "shared_team_ids": [self.team_id], "previous_names": [],
            "topic": {"value": topic, "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        })

    def add_im(self, user: str) -> str:
        return self._add_conversation(self._next_id("D"), "im", {
            "is_im": True, "is_org_shared": False, "user": user, "is_user_deleted": False, "priority": 0,
        })

    def add_mpim(self, users: list[str]) -> str:
        members = [self.bot_user_id, *users]
        name = "mpdm-" + "--".join(self.users[u]["name"] for u in members) + "-1"
        return self._add_conversation(self._next_id("G"), "mpim", {
            "name": name, "name_normalized": name, "is_channel": False, "is_group": False, "is_im": False,
            "is_mpim": True, "is_private": True, "is_member": True, "creator": self.bot_user_id,
            "purpose": {"value": "Group messaging with: " + " ".join(f"@{self.users[u]['name']}" for u in members),
                        "creator": self.bot_user_id, "last_set": 0},
        })

    def add_message(self, channel: str, text: str, user: str, *, ts: str | None = None,
                    thread_ts: str | None = None) -> dict[str, Any]:
        """Put a message in the workspace without any delivery (seeding history)."""
        record: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts or self._now_ts(),
                                  "team": self.team_id}
        if user == self.bot_user_id:
            record.update(bot_id=self.bot_id, app_id=self.app_id, bot_profile=self._bot_profile())
        if thread_ts:
            # A reply to a reply joins the root's thread, as in the Slack clients.
            root = self._find(channel, self._find(channel, thread_ts).get("thread_ts") or thread_ts)
            record.update(thread_ts=root["ts"], parent_user_id=root["user"])
        # In ts order; most arrive last, and a re-sort of every message per insert was quadratic.
        bisect.insort(self.messages[channel], record, key=lambda m: ts_to_us(m["ts"]))
        return record

    def seed_workspace(self) -> dict[str, str]:
        """A small workspace: three people, every conversation kind, a thread. Returns ids."""
        ids = {
            "alice": self.add_user("alice", "Alice Archer", email="alice@example.com"),
            "bob": self.add_user("bob", "Bob Baker", email="bob@example.com"),
            "carol": self.add_user("carol", "Carol Cole", email="carol@example.com"),
        }
        ids["general"] = self.add_channel("general", topic="Company-wide")
        ids["secret"] = self.add_channel("secret-plans", private=True)
        ids["dm_alice"] = self.add_im(ids["alice"])
        ids["group"] = self.add_mpim([ids["bob"], ids["carol"]])
        base = int(self.clock()) - 3600
        general = [("alice", "Good morning"), ("bob", "Morning! Standup at 10?"), ("carol", "Works for me")]
        for i, (who, text) in enumerate(general):
            self.add_message(ids["general"], text, ids[who], ts=us_to_ts((base + i) * 1_000_000))
        parent = self.add_message(ids["general"], "Release plan thread", ids["alice"], ts=f"{base + 10}.000100")
        for i, (who, text) in enumerate([("bob", "Ship Friday"), ("carol", "QA Thursday")]):
            self.add_message(ids["general"], text, ids[who], ts=f"{base + 20 + i}.000100", thread_ts=parent["ts"])
        self.add_message(ids["secret"], "The cake is a lie", ids["bob"], ts=f"{base + 30}.000000")
        self.add_message(ids["dm_alice"], "Hi bot, can you sync?", ids["alice"], ts=f"{base + 40}.000000")
        self.add_message(ids["group"], "Lunch?", ids["carol"], ts=f"{base + 50}.000000")
        self.ids.update(ids)
        return ids

    # -- reading the truth ----------------------------------------------------------------
    def truth(self, channel: str) -> list[dict[str, Any]]:
        """Every message of ``channel`` oldest first, replies included, with a ``deleted`` flag."""
        return [
            {"ts": m["ts"], "text": m.get("text"), "user": m.get("user"), "bot_id": m.get("bot_id"),
             "thread_ts": m.get("thread_ts"), "edited_ts": (m.get("edited") or {}).get("ts"),
             "deleted": bool(m.get("_deleted"))}
            for m in self.messages[channel]
        ]

    def _find(self, channel: str, ts: str, *, live: bool = True) -> dict[str, Any]:
        for m in self.messages.get(channel, []):
            if m["ts"] == ts and not (live and m.get("_deleted")):
                return m
        raise _ApiError("message_not_found")

    def _replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages[channel]
                if m.get("thread_ts") == ts and m["ts"] != ts and not m.get("_deleted")]

    def _bot_profile(self) -> dict[str, Any]:
        return {"id": self.bot_id, "app_id": self.app_id, "name": "Sync Bot", "deleted": False,
                "team_id": self.team_id, "updated": 0}

    def _render(self, channel: str, m: dict[str, Any], *, metadata: bool = False) -> dict[str, Any]:
        """A message as the API shows it: thread summary on parents, tombstones for deleted ones."""
        out = self._public(m, metadata=metadata)
        replies = self._replies(channel, m["ts"]) if m.get("thread_ts", m["ts"]) == m["ts"] else []
        if replies:
            out.update(thread_ts=m["ts"], reply_count=len(replies), reply_users_count=len({r["user"] for r in replies}),
                       latest_reply=replies[-1]["ts"], reply_users=sorted({r["user"] for r in replies}),
                       is_locked=False, subscribed=False)
        if m.get("_deleted"):
            out = {"type": "message", "subtype": "tombstone", "text": "This message was deleted.", "hidden": True,
                   "user": "USLACKBOT", "ts": m["ts"], **{k: out[k] for k in ("thread_ts", "reply_count",
                                                                           "latest_reply") if k in out}}
        return out

    # -- HTTP -----------------------------------------------------------------------------
    async def _dispatch(self, request: Request) -> JSONResponse:
        method = request.path_params["path"].rstrip("/").rsplit("/", 1)[-1]
        handler = self._methods().get(method)
        fault = await self.faults.check(method)
        if fault is not None:
            if fault.kind == "rate_limit":
                return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=fault.status,
                                    headers={"Retry-After": str(fault.retry_after_s)})
            return JSONResponse({"ok": False, "error": "service_unavailable"}, status_code=fault.status)
        if handler is None and method != "oauth.v2.access":
            return JSONResponse({"ok": False, "error": "unknown_method"}, status_code=404)
        try:
            params = await self._params(request)
            if method == "oauth.v2.access":  # the app's client credentials, not a token
                data = self._oauth_access(request, params)
            else:
                self._authenticate(request, params)
                data = await handler(params)  # type: ignore[misc]
        except _ApiError as exc:
            return JSONResponse({"ok": False, "error": exc.code}, headers=self._headers())
        return JSONResponse({"ok": True, **data}, headers=self._headers())

    def _headers(self) -> dict[str, str]:
        return {"x-slack-req-id": hashlib.sha1(str(self.clock()).encode()).hexdigest()[:32]}

    @staticmethod
    async def _params(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            ctype = request.headers.get("content-type", "")
            if "json" in ctype:
                try:
                    body = json.loads(await request.body() or b"{}")
                except ValueError:
                    raise _ApiError("invalid_json") from None
                if not isinstance(body, dict):
                    raise _ApiError("invalid_json")
                params.update(body)
            elif "x-www-form-urlencoded" in ctype:
                # Parsed by hand: starlette's form parser needs python-multipart.
                params.update(parse_qsl((await request.body()).decode("utf-8", "replace")))
        return params

    def _authenticate(self, request: Request, params: dict[str, Any]) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else params.get("token")
        if not token:
            raise _ApiError("not_authed")
        if token in self.revoked_tokens:
            raise _ApiError("token_revoked")
        if token not in self.valid_tokens:
            raise _ApiError("invalid_auth")

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
        return {
            "auth.test": self._auth_test, "conversations.list": self._conversations_list,
            "conversations.history": self._history, "conversations.replies": self._replies_api,
            "users.info": self._users_info, "users.list": self._users_list, "chat.postMessage": self._post_message,
            "chat.update": self._update, "chat.delete": self._delete,
        }

    # -- OAuth ("Add to Slack") -----------------------------------------------------------
    async def _authorize(self, request: Request) -> Response:
        """The consent page: the installing user approves at once (or refuses, ``oauth_deny``)."""
        q = request.query_params
        if q.get("client_id") != self.client[0]:
            return HTMLResponse("<h1>Invalid client_id parameter</h1>", status_code=400)
        redirect_uri = q.get("redirect_uri")
        if not redirect_uri:
            return HTMLResponse("<h1>Missing redirect_uri</h1>", status_code=400)
        back: dict[str, str] = {}
        if self.oauth_deny:
            back["error"] = self.oauth_deny
        else:
            code = f"{self.team_id[1:]}.{next(self._ids)}.{secrets.token_hex(32)}"
            self.oauth_codes[code] = {"redirect_uri": redirect_uri, "scope": q.get("scope", ""),
                                      "expires": self.clock() + OAUTH_CODE_TTL_S}
            back["code"] = code
        if q.get("state") is not None:
            back["state"] = q["state"]
        return RedirectResponse(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(back)}", 302)

    def _oauth_access(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        """Exchange a code, once, for a new bot token (client credentials in the form or Basic)."""
        client_id, client_secret = params.get("client_id"), params.get("client_secret")
        scheme, _, basic = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(basic).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise _ApiError("invalid_client_id") from None
        if client_id != self.client[0]:
            raise _ApiError("invalid_client_id")
        if client_secret != self.client[1]:
            raise _ApiError("bad_client_secret")
        if params.get("grant_type", "authorization_code") != "authorization_code":
            raise _ApiError("invalid_grant_type")
        grant = self.oauth_codes.pop(str(params.get("code") or ""), None)
        if grant is None or grant["expires"] < self.clock():
            raise _ApiError("invalid_code")
        if params.get("redirect_uri") and params["redirect_uri"] != grant["redirect_uri"]:
            raise _ApiError("bad_redirect_uri")
        token = f"xoxb-{self.team_id[1:]}-{next(self._ids)}-{secrets.token_urlsafe(18)}"
        self.valid_tokens.add(token)
        installer = next((u for u, d in self.users.items() if not d["is_bot"]), self.bot_user_id)
        return {"access_token": token, "token_type": "bot", "scope": grant["scope"], "bot_user_id": self.bot_user_id,
                "app_id": self.app_id, "team": {"id": self.team_id, "name": "Sim Team"}, "enterprise": None,
                "authed_user": {"id": installer}, "is_enterprise_install": False}

    @staticmethod
    def _limit(params: dict[str, Any], default: int, maximum: int) -> int:
        try:
            return max(1, min(int(params.get("limit") or default), maximum))
        except (TypeError, ValueError):
            return default

    def _channel(self, params: dict[str, Any]) -> str:
        cid = str(params.get("channel") or "")
        if cid in self.channels:
            return cid
        by_name = [c["id"] for c in self.channels.values() if c.get("name") == cid.lstrip("#")]
        if by_name:
            return by_name[0]
        raise _ApiError("channel_not_found")

    def _next_cursor(self, method: str, params: dict[str, Any], fresh: str) -> str:
        if method in self.stuck_cursors and params.get("cursor"):
            return str(params["cursor"])
        return fresh

    # -- Web API methods ------------------------------------------------------------------
    async def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://sim-team.slack.com/", "team": "Sim Team", "user": "syncbot",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    async def _conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        types = {t.strip() for t in str(params.get("types") or "public_channel").split(",")}
        if not types <= set(CHANNEL_TYPES):
            raise _ApiError("invalid_types")
        archived_out = str(params.get("exclude_archived", "")).lower() in ("true", "1")
        matching = [c for c in self.channels.values()
                    if c["_type"] in types and not (archived_out and c["is_archived"])]
        start = 0
        if params.get("cursor"):
            after = _uncursor("team", str(params["cursor"]))
            found = next((i for i, c in enumerate(matching) if c["id"] == after), None)
            if found is None:
                raise _ApiError("invalid_cursor")
            start = found
        limit = self._limit(params, 100, 1000)
        page, rest = matching[start:start + limit], matching[start + limit:]
        fresh = _cursor("team", rest[0]["id"]) if rest else ""
        return {"channels": [{k: v for k, v in c.items() if not k.startswith("_")} for c in page],
                "response_metadata": {"next_cursor": self._next_cursor("conversations.list", params, fresh)}}

    @staticmethod
    def _window(params: dict[str, Any]) -> Callable[[int], bool]:
        inclusive = str(params.get("inclusive", "")).lower() in ("true", "1")
        try:
            oldest = ts_to_us(params["oldest"]) if params.get("oldest") not in (None, "") else None
            latest = ts_to_us(params["latest"]) if params.get("latest") not in (None, "") else None
        except InvalidOperation:
            raise _ApiError("invalid_ts_oldest") from None

        def inside(us: int) -> bool:
            if oldest is not None and (us < oldest or (us == oldest and not inclusive)):
                return False
            return latest is None or us < latest or (us == latest and inclusive)

        return inside

    def _page(self, method: str, params: dict[str, Any], items: list[dict[str, Any]], newest_first: bool,
              default_limit: int) -> tuple[list[dict[str, Any]], bool, str]:
        if params.get("cursor"):
            start_us = int(_uncursor("next_ts", str(params["cursor"])))
            sign = 1 if newest_first else -1
            items = [m for m in items if sign * ts_to_us(m["ts"]) <= sign * start_us]
        limit = min(self._limit(params, default_limit, 999), self.max_page or 999)
        page, rest = items[:limit], items[limit:]
        fresh = _cursor("next_ts", ts_to_us(rest[0]["ts"])) if rest else ""
        return page, bool(rest), self._next_cursor(method, params, fresh)

    async def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        inside = self._window(params)
        visible = [
            m for m in reversed(self.messages[channel])
            if inside(ts_to_us(m["ts"]))
            and (m.get("thread_ts", m["ts"]) == m["ts"] or m.get("subtype") == "thread_broadcast")
            and (not m.get("_deleted") or self._replies(channel, m["ts"]))
        ]
        page, has_more, cursor = self._page("conversations.history", params, visible, True, 100)
        meta = _flag(params.get("include_all_metadata"))
        return {"messages": [self._render(channel, m, metadata=meta) for m in page], "has_more": has_more, "pin_count": 0,
                "channel_actions_ts": None, "channel_actions_count": 0,
                "response_metadata": {"next_cursor": cursor}}

    async def _replies_api(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        try:
            parent = self._find(channel, str(params.get("ts") or ""), live=False)
        except _ApiError:
            raise _ApiError("thread_not_found") from None
        inside = self._window(params)
        replies = [r for r in self._replies(channel, parent["ts"]) if inside(ts_to_us(r["ts"]))]
        page, has_more, cursor = self._page("conversations.replies", params, replies, False, 1000)
        meta = _flag(params.get("include_all_metadata"))
        return {"messages": [self._render(channel, parent, metadata=meta),
                             *(self._public(r, metadata=meta) for r in page)],
                "has_more": has_more, "response_metadata": {"next_cursor": cursor}}

    async def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(params.get("user") or ""))
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user}

    async def _users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every user of the workspace, bots and deleted ones included, paged like Slack."""
        users = list(self.users.values())
        start = 0
        if params.get("cursor"):
            after = _uncursor("users", str(params["cursor"]))
            found = next((i for i, u in enumerate(users) if u["id"] == after), None)
            if found is None:
                raise _ApiError("invalid_cursor")
            start = found
        limit = self._limit(params, 100, 1000)
        page, rest = users[start:start + limit], users[start + limit:]
        fresh = _cursor("users", rest[0]["id"]) if rest else ""
        return {"members": page, "cache_ts": int(self.clock()),
                "response_metadata": {"next_cursor": self._next_cursor("users.list", params, fresh)}}

    async def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        if not params.get("text") and not params.get("blocks"):
            raise _ApiError("no_text")
        thread_ts = params.get("thread_ts") or None
        if thread_ts:
            parent = next((m for m in self.messages[channel] if m["ts"] == thread_ts and not m.get("_deleted")), None)
            if parent is None or parent.get("thread_ts", parent["ts"]) != parent["ts"]:
                raise _ApiError("invalid_thread_ts")
        metadata = self._metadata(params.get("metadata"))
        record = self.add_message(channel, str(params.get("text") or ""), self.bot_user_id, thread_ts=thread_ts)
        if metadata is not None:
            record["_metadata"] = metadata  # kept out of events; shown by history on request
        await self._echo(self._message_event(channel, record))
        return {"channel": channel, "ts": record["ts"], "message": self._public(record, metadata=True)}

    @staticmethod
    def _metadata(value: Any) -> dict[str, Any] | None:
        """chat.postMessage's ``metadata``: a JSON object (or its text, in a form body) of
        ``event_type`` and ``event_payload``."""
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _ApiError("invalid_metadata_format") from None
        if not isinstance(value, dict) or not isinstance(value.get("event_type"), str) \
                or not isinstance(value.get("event_payload"), dict):
            raise _ApiError("invalid_metadata_schema")
        return {"event_type": value["event_type"], "event_payload": value["event_payload"]}

    async def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        record = self._find(channel, str(params.get("ts") or ""))
        if record.get("user") != self.bot_user_id:
            raise _ApiError("cant_update_message")
        delivery = self.edit_message(channel, record["ts"], str(params.get("text") or ""))
        await self._echo(delivery)
        return {"channel": channel, "ts": record["ts"], "text": record["text"], "message": self._public(record)}

    async def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        record = self._find(channel, str(params.get("ts") or ""))
        if record.get("user") != self.bot_user_id:
            raise _ApiError("cant_delete_message")
        await self._echo(self.delete_message(channel, record["ts"]))
        return {"channel": channel, "ts": record["ts"]}

    async def _echo(self, delivery: SlackDelivery) -> None:
        self.echoes.append(delivery)
        if self.on_echo is not None:
            await self.on_echo(delivery)

    @staticmethod
    def _public(record: dict[str, Any], *, metadata: bool = False) -> dict[str, Any]:
        """A stored message as the API shows it; its metadata only where asked for
        (``include_all_metadata``) and in the answer to the post that attached it."""
        out = {k: v for k, v in record.items() if not k.startswith("_")}
        if metadata and record.get("_metadata") is not None:
            out["metadata"] = record["_metadata"]
        return out

    # -- Events API -----------------------------------------------------------------------
    def post_user_message(self, channel: str, text: str, user: str, thread_ts: str | None = None) -> SlackDelivery:
        """Someone posts in ``channel``; returns the ``message`` event delivery."""
        record = self.add_message(channel, text, user, thread_ts=thread_ts)
        return self._message_event(channel, record)

    def edit_message(self, channel: str, ts: str, text: str) -> SlackDelivery:
        """The author edits a message; returns the ``message_changed`` delivery."""
        record = self._find(channel, ts)
        previous = self._public(record)
        record.update(text=text, edited={"user": record["user"], "ts": self._now_ts()})
        event_ts = self._now_ts()
        return self._event_callback({
            "type": "message", "subtype": "message_changed", "message": self._public(record),
            "previous_message": previous, "channel": channel, "hidden": True, "ts": event_ts,
            "event_ts": event_ts, "channel_type": CHANNEL_TYPES[self.channels[channel]["_type"]],
        })

    def delete_message(self, channel: str, ts: str) -> SlackDelivery:
        """A message is deleted; returns the ``message_deleted`` delivery."""
        record = self._find(channel, ts)
        record["_deleted"] = True
        event_ts = self._now_ts()
        return self._event_callback({
            "type": "message", "subtype": "message_deleted", "hidden": True, "deleted_ts": ts,
            "channel": channel, "previous_message": self._public(record), "ts": event_ts,
            "event_ts": event_ts, "channel_type": CHANNEL_TYPES[self.channels[channel]["_type"]],
        })

    def url_verification(self, challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
                         ) -> SlackDelivery:
        return self._sign({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"})

    def retry(self, delivery: SlackDelivery, attempt: int = 1, reason: str = "http_timeout") -> SlackDelivery:
        """Slack's retry of an unacknowledged delivery: same body and event_id, fresh signature."""
        again = self._sign(delivery.payload, body=delivery.body)
        return replace(again, headers={**again.headers, "X-Slack-Retry-Num": str(attempt),
                                       "X-Slack-Retry-Reason": reason})

    def _message_event(self, channel: str, record: dict[str, Any]) -> SlackDelivery:
        event = {**self._public(record), "channel": channel, "event_ts": record["ts"],
                 "channel_type": CHANNEL_TYPES[self.channels[channel]["_type"]]}
        return self._event_callback(event)

    def _event_callback(self, event: dict[str, Any]) -> SlackDelivery:
        n = next(self._ids)
        return self._sign({
            "token": "XXYYZZ", "team_id": self.team_id, "context_team_id": self.team_id,
            "context_enterprise_id": None, "api_app_id": self.app_id, "event": event,
            "type": "event_callback", "event_id": f"Ev0SIM{n:06d}", "event_time": int(self.clock()),
            "authorizations": [{"enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        })

    def _sign(self, payload: dict[str, Any], body: bytes | None = None) -> SlackDelivery:
        body = body if body is not None else json.dumps(payload).encode()
        timestamp = str(int(self.clock()))
        digest = hmac.new(self.signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
        headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
                   "X-Slack-Signature": "v0=" + digest.hexdigest()}
        return SlackDelivery(payload, body, headers)

    @staticmethod
    async def deliver(http_client: httpx.AsyncClient, url: str, delivery: SlackDelivery) -> httpx.Response:
        """POST one delivery to ``url`` the way Slack does."""
        return await http_client.post(url, content=delivery.body, headers=delivery.headers)


SIMULATOR = SlackSimulator
