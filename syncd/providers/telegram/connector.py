"""Telegram Bot API: updates by webhook (or ``getUpdates`` polling), sending, editing, deleting.

Transport quirks kept here (shape lives in ``mappings/telegram.yaml``):

- the bot token is part of every URL (``/bot{token}/{method}``): calls are labelled with the
  method name only, and error descriptions are scrubbed of the token, so it never reaches an
  exception or a log line;
- every answer is an envelope ``{"ok", "result" | "error_code", "description", "parameters"}``
  whose HTTP status is the error code; throttling is 429 with ``parameters.retry_after`` in
  the body (a ``Retry-After`` header is not guaranteed);
- ``message_id`` is unique only per chat: ids are composed as ``{chat.id}:{message_id}`` and
  decoded again before sending;
- bots have no history and cannot list their chats: chats appear as updates arrive;
- webhooks carry ``X-Telegram-Bot-Api-Secret-Token`` (the secret given to ``setWebhook``),
  compared in constant time; there is no HMAC;
- a webhook and ``getUpdates`` exclude each other (409 Conflict): with a public URL
  ``maintain`` registers the webhook and ``poll`` does nothing; without one ``maintain``
  deletes the webhook and ``poll`` reads ``getUpdates`` from the stored offset. Updates are
  confirmed by the *next* call's offset, and the engine stores the new offset only after the
  batch was ingested, so a failed ingest reads the same batch again.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import re
import secrets
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from syncd.kit.connector import Connector
from syncd.kit.errors import (
    AuthError,
    PermanentError,
    RateLimited,
    SignatureError,
    TransientError,
)
from syncd.kit.http import ProviderHttp, RetryPolicy, parse_retry_after
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
    WebhookRequest,
)

#: The update kinds syncd asks for (setWebhook and getUpdates ``allowed_updates``).
ALLOWED_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post")
#: Keys whose presence makes a Message conversation content (service messages such as
#: ``new_chat_members`` or ``pinned_message`` are not).
CONTENT_KEYS = ("text", "caption", "document", "photo", "audio", "video", "voice", "video_note",
                "animation", "sticker", "contact", "location", "venue", "poll", "dice")
#: File-carrying Message fields -> the MIME type to assume when Telegram gives none.
FILE_KEYS = {"document": None, "audio": None, "video": None, "voice": "audio/ogg",
             "video_note": "video/mp4", "animation": None, "sticker": None, "photo": "image/jpeg"}
SECRET_HEADER = "x-telegram-bot-api-secret-token"
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: ``{bot id}:{secret}`` as @BotFather issues it. The token sits in URLs (httpx logs them at
#: DEBUG); the log redactor masks it by value, as the engine registers every credential.
TOKEN_PATTERN = re.compile(r"[0-9]{5,}:[A-Za-z0-9_-]{30,}")
#: Telegram picks a random next update_id after a week without updates, possibly below a
#: stored offset (which would confirm, i.e. drop, it). Older offsets are not sent: every
#: update before them was confirmed by the polls in between.
OFFSET_MAX_AGE_S = 6 * 24 * 3600


class TelegramCredentials(BaseModel):
    """The bot token from @BotFather and the webhook secret token (generated when absent)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", hide_input_in_errors=True
    )

    bot_token: str = Field(repr=False)
    secret_token: str = Field(repr=False)

    @field_validator("bot_token")
    @classmethod
    def _bot_token(cls, value: str) -> str:
        if not TOKEN_PATTERN.fullmatch(value):
            raise ValueError("not a Telegram bot token: expected '<bot id>:<secret>' as @BotFather gives it")
        return value

    @field_validator("secret_token")
    @classmethod
    def _secret_token(cls, value: str) -> str:
        if not SECRET_PATTERN.fullmatch(value):
            raise ValueError("a Telegram secret token is 1-256 characters of A-Z, a-z, 0-9, '_' and '-'")
        return value


def full_name(person: dict[str, Any]) -> str | None:
    """``first_name last_name`` of a User or private Chat (either part may be missing)."""
    name = " ".join(p for p in (person.get("first_name"), person.get("last_name")) if p)
    return name or None


def files(raw: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The message's files as attachment dicts. No URL is kept: Telegram's download URL
    carries the bot token (``/file/bot{token}/...``); ``externalId`` is the ``file_id``."""
    found = []
    for key, default_type in FILE_KEYS.items():
        item = raw.get(key)
        if key == "photo" and isinstance(item, list) and item:
            item = item[-1]  # the sizes are listed smallest first
        if isinstance(item, dict) and item.get("file_id"):
            found.append({"name": item.get("file_name"), "mimeType": item.get("mime_type") or default_type,
                          "size": item.get("file_size"), "externalId": item["file_id"]})
    return found or None


def bare_id(value: str | None) -> str | None:
    """A composed ``{chat}:{message_id}`` as the bare message_id (a bare one is kept)."""
    return value.rpartition(":")[2] or value if value else None


class TelegramConnector(Connector):
    platform = "telegram"
    Credentials = TelegramCredentials
    has_history = False
    #: setWebhook is idempotent; renewing hourly repairs a webhook someone else changed.
    maintain_every_s: ClassVar[float | None] = 3600
    #: Without a public URL getUpdates is the only inbound channel: short polls, often.
    poll_every_s: ClassVar[float | None] = 5
    #: Updates per getUpdates call (Telegram's maximum).
    page_limit = 100

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The token starts with the bot's own user id; getMe confirms it.
        self._self_id = self.credentials.bot_token.partition(":")[0]  # type: ignore[attr-defined]
        #: True once this connector made sure no webhook blocks getUpdates.
        self._polling_ready = False

    @classmethod
    def prepare_credentials(
        cls, credentials: dict[str, Any], settings: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if not (credentials.get("secretToken") or credentials.get("secret_token")):
            # token_urlsafe is base64url: already inside Telegram's alphabet; the filter
            # keeps that true whatever the encoding.
            token = "".join(c for c in secrets.token_urlsafe(32) if SECRET_PATTERN.fullmatch(c))
            credentials = {**credentials, "secretToken": token}
        return credentials, settings

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
        token = credentials.bot_token  # type: ignore[attr-defined]

        def classify(response: httpx.Response) -> None:
            cls.classify(response, token)

        return ProviderHttp(base_url, classify=classify, policy=policy, timeout_s=timeout_s, transport=transport)

    @staticmethod
    def classify(response: httpx.Response, token: str = "") -> None:
        """Telegram's envelope: HTTP status = ``error_code``; ``ok: false`` with a description."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if status < 400:
                raise PermanentError(f"answer is not a Telegram envelope ({status})", status=status)
            body = {}
        if status < 400 and body.get("ok") is not False:
            return
        code = body.get("error_code") if isinstance(body.get("error_code"), int) else status
        description = str(body.get("description") or "no description")[:300]
        if token:
            description = description.replace(token, "[redacted]")
        parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        message = f"telegram error {code}: {description}"
        if code == 429 or status == 429 or "retry_after" in parameters:
            retry_after = parameters.get("retry_after")
            if not isinstance(retry_after, (int, float)):
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RateLimited(message, status=status, code=str(code), retry_after=retry_after)
        if code == 401 or status == 401:
            raise AuthError(message, status=status, code=str(code))
        if status >= 500 or code >= 500:
            raise TransientError(message, status=status, code=str(code))
        if "migrate_to_chat_id" in parameters:
            # A group upgraded to a supergroup has a new id; the old one is dead for good.
            message += f" (the chat is now {parameters['migrate_to_chat_id']})"
        raise PermanentError(message, status=status, code=str(code))

    async def _call(self, method: str, body: dict[str, Any] | None = None) -> Any:
        """One Bot API method; returns the envelope's ``result``."""
        token = self.credentials.bot_token  # type: ignore[attr-defined]
        response = await self.http.request("POST", f"/bot{token}/{method}", label=method, json=body or {})
        return response.json().get("result")

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        me = await self._call("getMe")
        self._self_id = str(me["id"])
        return [self.mapping.user(me, {"isSelf": True, "fullName": full_name(me)})]

    async def list_chats(self) -> list[ChatData]:
        # The Bot API cannot list a bot's chats; they are stored as their updates arrive.
        return []

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        # Bots cannot read history: only updates sent to them (kept by Telegram for 24 h).
        return HistoryPage([], None)

    # -- updates ----------------------------------------------------------------------------
    def _chat(self, raw: dict[str, Any]) -> ChatData:
        private = raw.get("type") == "private"
        participants = [str(raw["id"])] if private else None
        return self.mapping.chat(raw, {"fullName": full_name(raw), "participants": participants})

    def _message(self, raw: dict[str, Any]) -> MessageData:
        sender = raw.get("from") or {}
        from_self = bool(sender.get("is_bot")) and str(sender.get("id")) == self._self_id
        return self.mapping.message(raw, {"fromSelf": from_self, "senderName": full_name(sender), "files": files(raw)})

    def _changes(self, updates: list[dict[str, Any]]) -> Changes:
        chats: dict[str, ChatData] = {}
        messages: list[MessageData] = []
        for update in updates:
            raw = next((update[k] for k in ALLOWED_UPDATES if isinstance(update.get(k), dict)), None)
            if raw is None or not isinstance(raw.get("chat"), dict):
                continue  # callback queries, inline queries, ...: not messages
            chat = self._chat(raw["chat"])
            chats[chat.external_chat_id] = chat  # a later update carries the newer title
            if any(raw.get(k) is not None for k in CONTENT_KEYS):
                messages.append(self._message(raw))
        return Changes(messages=messages, chats=list(chats.values()))

    # -- export ---------------------------------------------------------------------------
    def _decoded(self, message: OutgoingMessage) -> OutgoingMessage:
        return dataclasses.replace(message, external_message_id=bare_id(message.external_message_id),
                                   external_thread_id=bare_id(message.external_thread_id))

    def _result(self, raw: Any, chat_id: str) -> SendResult:
        if not isinstance(raw, dict) or "message_id" not in raw:
            raise PermanentError("telegram answered without the sent message")
        # A truncated answer may leave the chat out; it is the chat we sent to.
        mapped = self._message({"chat": {"id": chat_id}, **raw})
        return SendResult(mapped.external_message_id, mapped.sent_at, mapped.external_thread_id,
                          edited_at=mapped.edited_at)

    async def send(self, message: OutgoingMessage) -> SendResult:
        body = self.mapping.outgoing("send", self._decoded(message))
        if not body.get("text"):
            raise PermanentError("telegram needs message text (html-only messages are not sent)")
        return self._result(await self._call("sendMessage", body), message.external_chat_id)

    async def edit(self, message: OutgoingMessage) -> SendResult:
        if not message.external_message_id:
            raise PermanentError("cannot edit a message that has no Telegram id yet")
        body = self.mapping.outgoing("edit", self._decoded(message))
        if not body.get("text"):
            raise PermanentError("telegram needs message text to edit a message")
        try:
            raw = await self._call("editMessageText", body)
        except PermanentError as exc:
            # A retried edit whose first attempt went through: already done.
            if "message is not modified" not in str(exc):
                raise
            return SendResult(message.external_message_id)
        return self._result(raw, message.external_chat_id)

    async def delete(self, message: OutgoingMessage) -> None:
        if not message.external_message_id:
            raise PermanentError("cannot delete a message that has no Telegram id yet")
        body = self.mapping.outgoing("delete", self._decoded(message))
        try:
            await self._call("deleteMessage", body)
        except PermanentError as exc:
            # A retried delete whose first attempt went through: already done.
            if "message to delete not found" not in str(exc):
                raise

    # -- webhooks -------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        given = request.headers.get(SECRET_HEADER)
        if not given:
            raise SignatureError("missing X-Telegram-Bot-Api-Secret-Token")
        expected = self.credentials.secret_token  # type: ignore[attr-defined]
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureError("X-Telegram-Bot-Api-Secret-Token does not match")
        try:
            update = json.loads(request.body)
        except ValueError:
            return WebhookAccepted(None)  # answered 200: Telegram would resend it forever
        delivery = self.mapping.section("webhook", update).get("deliveryId") if isinstance(update, dict) else None
        return WebhookAccepted(delivery)  # None (nothing stored, 200) for a body that is no Update

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        update = json.loads(request.body)
        return self._changes([update] if isinstance(update, dict) else [])

    # -- polling and the webhook registration ---------------------------------------------
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        mark = dict(state or {"offset": None})
        if state is None or self.ctx.public_webhooks:
            # The first mark reads nothing, so the first poll imports the pending updates
            # (the only "history" a bot has). With a webhook, getUpdates would answer 409.
            return PollResult(Changes(), mark)
        if not self._polling_ready:
            await self._call("deleteWebhook", {"drop_pending_updates": False})
            self._polling_ready = True
        now = self.ctx.clock()
        params: dict[str, Any] = {"timeout": 0, "limit": self.page_limit, "allowed_updates": list(ALLOWED_UPDATES)}
        if mark.get("offset") is not None and now - float(mark.get("at") or now) < OFFSET_MAX_AGE_S:
            params["offset"] = mark["offset"]
        try:
            updates = await self._call("getUpdates", params) or []
        except PermanentError as exc:
            if exc.status == 409:
                self._polling_ready = False  # a webhook was set behind our back: delete it next time
            raise
        if updates:
            # One batch per poll: asking for the next batch would confirm this one before
            # the engine stored it.
            mark = {"offset": max(int(u["update_id"]) for u in updates) + 1, "at": now}
        return PollResult(self._changes(updates), mark)

    async def maintain(self, state: Any) -> Any:
        if not self.ctx.public_webhooks:
            await self._call("deleteWebhook", {"drop_pending_updates": False})
            self._polling_ready = True
            return {"mode": "polling"}
        await self._call("setWebhook", {
            "url": self.ctx.webhook_url,
            "secret_token": self.credentials.secret_token,  # type: ignore[attr-defined]
            "allowed_updates": list(ALLOWED_UPDATES),
        })
        self._polling_ready = False
        return {"mode": "webhook", "url": self.ctx.webhook_url}


CONNECTOR = TelegramConnector
