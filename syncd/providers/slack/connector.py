"""Slack: the Web API for chats, history and sending; the Events API for webhooks.

Transport quirks kept here (shape lives in ``mappings/slack.yaml``):

- errors come back as HTTP 200 with ``ok: false`` and a code; ``classify`` turns the code into
  the exception tree (auth codes → ``AuthError``, ``ratelimited`` → ``RateLimited``);
- ``ts`` is unique only per channel: ids are composed as ``{channel}:{ts}`` (threads as
  ``{channel}:{thread_ts}``), and decoded again before sending;
- history hides thread replies, so every thread parent on a page pulls its replies in with
  ``conversations.replies`` (all pages; the parent, repeated there, is not returned twice);
- only content messages are kept: plain, bot, ``/me``, file shares and thread broadcasts.
  Channel notices (``channel_join``, ``channel_topic``, pins, ...) are not conversation content
  and are skipped in history, polls and webhooks alike;
- webhooks are signed with ``v0=HMAC-SHA256(signingSecret, "v0:{ts}:{raw body}")``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from syncd.kit.connector import Connector, OAuthSpec, body_digest
from syncd.kit.errors import (
    AuthError,
    CursorExpired,
    PermanentError,
    RateLimited,
    RetryableError,
    SignatureError,
    TransientError,
)
from syncd.kit.http import (
    Pages,
    ProviderHttp,
    RetryPolicy,
    bearer,
    default_classify,
    parse_retry_after,
)
from syncd.universal import (
    Changes,
    ChatData,
    HistoryPage,
    MessageData,
    OutgoingMessage,
    PollResult,
    SendResult,
    UserData,
    WebhookAccepted,
    WebhookAnswer,
    WebhookRequest,
)

AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
#: Message subtypes that are conversation content; everything else is a channel notice.
CONTENT_SUBTYPES = frozenset({None, "bot_message", "me_message", "file_share", "thread_broadcast"})
#: Events whose ``channel`` object renames or creates a chat.
CHANNEL_EVENTS = frozenset({"channel_rename", "group_rename", "channel_created"})
CONVERSATION_TYPES = "public_channel,private_channel,mpim,im"
#: Bot scopes the connector uses: list and read every conversation kind, names, post/edit/delete.
BOT_SCOPES = (
    "channels:read", "channels:history", "groups:read", "groups:history", "im:read", "im:history",
    "mpim:read", "mpim:history", "users:read", "chat:write",
)


class SlackCredentials(BaseModel):
    """A bot token (``xoxb-...``) and the app's signing secret. Never printed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", hide_input_in_errors=True
    )

    bot_token: str = Field(repr=False, min_length=1)
    signing_secret: str = Field(repr=False, min_length=1)

    @field_validator("bot_token")
    @classmethod
    def _slack_token(cls, value: str) -> str:
        if not value.startswith("xox"):
            raise ValueError("a Slack token starts with 'xox' (a bot token is 'xoxb-...')")
        return value


def _files(raw: dict[str, Any]) -> list[dict[str, Any]] | None:
    files = raw.get("files")
    if not files:
        return None
    return [
        {"name": f.get("name") or f.get("title"), "mimeType": f.get("mimetype"), "size": f.get("size"),
         "url": f.get("url_private"), "externalId": f.get("id")}
        for f in files if isinstance(f, dict)
    ]


class SlackConnector(Connector):
    platform = "slack"
    Credentials = SlackCredentials
    #: Items per request; Slack recommends at most 200 (new non-Marketplace apps get 15).
    page_limit = 200
    #: "Add to Slack": the consent page is on slack.com, ``oauth.v2.access`` in the Web API.
    oauth = OAuthSpec(
        authorize_url="{slack_oauth}/oauth/v2/authorize",
        token_url="/oauth.v2.access",
        scopes=BOT_SCOPES,
        base_url_key="slack",
        scope_separator=",",
    )

    @classmethod
    def credentials_from_oauth(cls, token: dict[str, Any], *, client_id: str, client_secret: str) -> dict[str, Any]:
        """The bot token of ``oauth.v2.access``. The signing secret belongs to the Slack app,
        not the install: the connect flow adds it from the OAuth client configuration."""
        bot_token = token.get("access_token")
        if not isinstance(bot_token, str) or not bot_token.startswith("xoxb-"):
            raise ValueError("Slack answered without a bot token (xoxb-...); the app must request bot scopes")
        return {"botToken": bot_token}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._self_ids: set[str] | None = None
        self._user_names: dict[str, str] = {}

    # -- transport ------------------------------------------------------------------------
    @classmethod
    def make_http(
        cls,
        base_url: str,
        credentials: BaseModel,
        *,
        policy: RetryPolicy,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ProviderHttp:
        authenticate = bearer(credentials.bot_token)  # type: ignore[attr-defined]

        return ProviderHttp(
            base_url, classify=cls.classify, authenticate=authenticate, policy=policy,
            timeout_s=timeout_s, transport=transport,
        )

    @staticmethod
    def classify(response: httpx.Response) -> None:
        """Slack answers most errors with HTTP 200 and ``{"ok": false, "error": code}``."""
        status = response.status_code
        if status == 429:
            raise RateLimited("rate limited (429)", status=status,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
        if status >= 500:
            raise TransientError(f"server error ({status})", status=status)
        try:
            body = response.json()
        except ValueError:
            default_classify(response)
            raise PermanentError(f"answer is not JSON ({status})", status=status) from None
        if not isinstance(body, dict) or body.get("ok") is not False:
            default_classify(response)
            return
        code = str(body.get("error") or "unknown_error")
        message = f"slack error {code}"
        if code in AUTH_ERRORS:
            raise AuthError(message, status=status, code=code)
        if code == "ratelimited":
            raise RateLimited(message, status=status, code=code,
                              retry_after=parse_retry_after(response.headers.get("retry-after")))
        if code in TRANSIENT_ERRORS:
            raise TransientError(message, status=status, code=code)
        if code == "invalid_cursor":
            raise CursorExpired(message, status=status, code=code)
        raise PermanentError(message, status=status, code=code)

    async def _get(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request("GET", f"/{method}", label=method, params=params)
        return response.json()

    async def _post(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request("POST", f"/{method}", label=method, json=body)
        return response.json()

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        data = await self._get("auth.test", {})
        users = [self.mapping.user({"id": data["user_id"], "name": data.get("user")}, {"isSelf": True})]
        if data.get("bot_id"):
            # Messages the bot posts carry bot_id; legacy ones carry nothing else.
            users.append(self.mapping.user({"id": data["bot_id"], "name": data.get("user")}, {"isSelf": True}))
        self._self_ids = {u.external_user_id for u in users}
        return users

    async def _own_ids(self) -> set[str]:
        if self._self_ids is None:
            try:
                await self.identify()
            except (PermanentError, RetryableError):
                # Not fatal: the engine also decides direction from user_platforms; try again
                # on the next message.
                return set()
        return self._self_ids or set()

    async def _user_name(self, user_id: str) -> str:
        if user_id not in self._user_names:
            try:
                data = await self._get("users.info", {"user": user_id})
                name = self.mapping.user(data["user"]).display_name
            except PermanentError:
                name = None  # e.g. no users:read scope: the id is still a usable name
            self._user_names[user_id] = name or user_id
        return self._user_names[user_id]

    async def list_chats(self) -> list[ChatData]:
        chats: list[ChatData] = []
        pages = Pages("conversations.list")
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"types": CONVERSATION_TYPES, "limit": self.page_limit}
            if cursor:
                params["cursor"] = cursor
            data = await self._get("conversations.list", params)
            for raw in data.get("channels", []):
                ctx: dict[str, Any] = {}
                if raw.get("is_im") and raw.get("user"):
                    ctx = {"name": await self._user_name(raw["user"]), "participants": [raw["user"]]}
                chats.append(self.mapping.chat(raw, ctx))
            cursor = pages.advance((data.get("response_metadata") or {}).get("next_cursor"))
            if cursor is None:
                return chats

    # -- history --------------------------------------------------------------------------
    async def _map(self, raw: dict[str, Any], channel: str, **ctx: Any) -> MessageData:
        own = await self._own_ids()
        from_self = raw.get("user") in own or raw.get("bot_id") in own
        return self.mapping.message(raw, {"channel": channel, "fromSelf": from_self, "files": _files(raw), **ctx})

    async def _with_replies(
        self, raws: list[dict[str, Any]], channel: str, oldest: str | None = None
    ) -> list[MessageData]:
        """Map history messages, pulling in each thread's replies after its parent."""
        out: list[MessageData] = []
        seen: set[str] = set()
        for raw in raws:
            # A tombstone is a deleted thread parent still shown for its replies.
            tombstone = raw.get("subtype") == "tombstone"
            if raw.get("subtype") not in CONTENT_SUBTYPES and not tombstone:
                continue
            if not tombstone and raw["ts"] not in seen:
                seen.add(raw["ts"])
                out.append(await self._map(raw, channel))
            if oldest and float(raw.get("latest_reply") or 0) < float(oldest):
                continue  # a poll: nothing new in this thread
            if raw.get("reply_count") and raw.get("thread_ts") == raw["ts"]:
                for reply in await self._replies(channel, raw["ts"], oldest):
                    if reply["ts"] not in seen and reply.get("subtype") in CONTENT_SUBTYPES:
                        seen.add(reply["ts"])
                        out.append(await self._map(reply, channel))
        return out

    async def _replies(self, channel: str, thread_ts: str, oldest: str | None) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        pages = Pages("conversations.replies")
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"channel": channel, "ts": thread_ts, "limit": self.page_limit}
            if cursor:
                params["cursor"] = cursor
            if oldest:
                params["oldest"] = oldest
            data = await self._get("conversations.replies", params)
            # Slack repeats the parent at the top of every page.
            replies.extend(m for m in data.get("messages", []) if m.get("ts") != thread_ts)
            cursor = pages.advance((data.get("response_metadata") or {}).get("next_cursor"))
            if cursor is None:
                return replies

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        channel = chat.external_chat_id
        params: dict[str, Any] = {"channel": channel, "limit": self.page_limit}
        if cursor:
            params["cursor"] = cursor
        data = await self._get("conversations.history", params)
        next_cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
        if next_cursor is not None and next_cursor == cursor:
            raise PermanentError("conversations.history: pagination token repeated; stopping")
        return HistoryPage(await self._with_replies(data.get("messages", []), channel), next_cursor)

    # -- export ---------------------------------------------------------------------------
    def _decoded(self, message: OutgoingMessage) -> OutgoingMessage:
        """The message with our composed ids replaced by the bare Slack ``ts`` values."""
        def bare(value: str | None) -> str | None:
            # The app may hand back a bare ts it got elsewhere; ours are "channel:ts".
            return value.partition(":")[2] or value if value else None

        return dataclasses.replace(
            message,
            external_thread_id=bare(message.external_thread_id),
            external_message_id=bare(message.external_message_id),
        )

    def _result(self, data: dict[str, Any], channel: str) -> SendResult:
        raw = {**(data.get("message") or {}), "ts": data["ts"]}
        mapped = self.mapping.message(raw, {"channel": data.get("channel") or channel})
        return SendResult(mapped.external_message_id, mapped.sent_at, mapped.external_thread_id,
                          edited_at=mapped.edited_at)

    async def send(self, message: OutgoingMessage) -> SendResult:
        body = self.mapping.outgoing("send", self._decoded(message))
        return self._result(await self._post("chat.postMessage", body), message.external_chat_id)

    async def edit(self, message: OutgoingMessage) -> SendResult:
        if not message.external_message_id:
            raise PermanentError("cannot edit a message that has no Slack id yet")
        body = self.mapping.outgoing("edit", self._decoded(message))
        return self._result(await self._post("chat.update", body), message.external_chat_id)

    async def delete(self, message: OutgoingMessage) -> None:
        if not message.external_message_id:
            raise PermanentError("cannot delete a message that has no Slack id yet")
        body = self.mapping.outgoing("delete", self._decoded(message))
        try:
            await self._post("chat.delete", body)
        except PermanentError as exc:
            # A retried delete whose first attempt went through: already done.
            if exc.code != "message_not_found":
                raise

    # -- webhooks -------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature")
        if not timestamp or not signature:
            raise SignatureError("missing X-Slack-Request-Timestamp or X-Slack-Signature")
        try:
            sent = int(timestamp)
        except ValueError:
            raise SignatureError("X-Slack-Request-Timestamp is not a number") from None
        if abs(self.ctx.clock() - sent) > self.ctx.webhook_max_skew_s:
            raise SignatureError("X-Slack-Request-Timestamp is outside the replay window")
        secret = self.credentials.signing_secret.encode()  # type: ignore[attr-defined]
        signed = b"v0:" + timestamp.encode() + b":" + request.body
        expected = "v0=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
        # Hex is case-insensitive: an upper-case digest is the same signature.
        if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
            raise SignatureError("X-Slack-Signature does not match")
        try:
            payload = json.loads(request.body)
        except ValueError:
            return WebhookAccepted(None)  # slash commands and interactions: not messages
        if not isinstance(payload, dict):
            return WebhookAccepted(None)
        if payload.get("type") == "url_verification":
            return WebhookAccepted(None, WebhookAnswer(200, {"challenge": payload.get("challenge")}))
        if payload.get("type") == "event_callback":
            delivery = self.mapping.section("webhook", payload).get("deliveryId")
            return WebhookAccepted(str(delivery) if delivery else body_digest(request.body))
        return WebhookAccepted(None)  # app_rate_limited and other notices

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        payload = json.loads(request.body)
        event = payload.get("event") if payload.get("type") == "event_callback" else None
        if not isinstance(event, dict):
            return Changes()
        if event.get("type") in CHANNEL_EVENTS and isinstance(event.get("channel"), dict):
            return Changes(chats=[self.mapping.chat(event["channel"])])
        channel = event.get("channel")
        if event.get("type") != "message" or not channel:
            return Changes()
        subtype = event.get("subtype")
        if subtype == "message_deleted":
            return Changes(messages=[await self._tombstone(event, channel, event.get("deleted_ts"))])
        if subtype == "message_changed":
            inner = event.get("message") or {}
            if inner.get("subtype") == "tombstone":  # a thread parent deleted under its replies
                return Changes(messages=[await self._tombstone(event, channel, inner.get("ts"))])
            if inner.get("subtype") not in CONTENT_SUBTYPES:
                return Changes()
            return Changes(messages=[await self._map(inner, channel, editedTs=event.get("ts"))])
        if subtype not in CONTENT_SUBTYPES:
            return Changes()
        return Changes(messages=[await self._map(event, channel)])

    async def _tombstone(self, event: dict[str, Any], channel: str, ts: str | None) -> MessageData:
        previous = event.get("previous_message") or {}
        raw = {"ts": ts, "thread_ts": previous.get("thread_ts")}
        return self.mapping.message(raw, {"channel": channel, "deletedTs": event.get("ts")})

    # -- polling --------------------------------------------------------------------------
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        marks: dict[str, str] = dict(state or {})
        now = f"{self.ctx.clock():.6f}"
        # "*" is when the first mark was taken (before the import read history): a chat
        # with no mark of its own is read from there, so nothing posted during the import
        # is missed. No backfill before it: the import reads history.
        baseline = marks.setdefault("*", now)
        messages: list[MessageData] = []
        for chat in chats:
            channel = chat.external_chat_id
            mark = marks.get(channel, baseline)
            oldest = f"{max(0.0, float(mark) - lookback_s):.6f}"
            raws = await self._history_since(channel, oldest)
            found = await self._with_replies(raws, channel, oldest)
            messages.extend(found)
            newest = max((m.external_message_id.partition(":")[2] for m in found), key=float, default=mark)
            marks[channel] = max(mark, newest, key=float)
        return PollResult(Changes(messages=messages), marks)

    async def _history_since(self, channel: str, oldest: str) -> list[dict[str, Any]]:
        raws: list[dict[str, Any]] = []
        pages = Pages("conversations.history")
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"channel": channel, "limit": self.page_limit, "oldest": oldest}
            if cursor:
                params["cursor"] = cursor
            data = await self._get("conversations.history", params)
            raws.extend(data.get("messages", []))
            cursor = pages.advance((data.get("response_metadata") or {}).get("next_cursor"))
            if cursor is None:
                return raws


CONNECTOR = SlackConnector
