"""Page messaging, as Facebook Messenger and Instagram Messaging share it: the same Graph API
conversations, the same Send API and the same ``messaging[]`` webhook items. The two platform
modules (``messenger.py``, ``instagram.py``) only name their credentials and a few constants.

Transport quirks kept here (shape lives in ``mappings/messenger.yaml`` / ``instagram.yaml``):

- **A chat is a person.** Webhooks name the user (PSID on Messenger, IGSID on Instagram) and
  never the Graph conversation id, so ``externalChatId`` is the user's id. The conversation of
  a user is found through its participants (``list_chats`` remembers them; otherwise
  ``GET /{account}/conversations?user_id=``).
- **History** is ``GET /{conversation}/messages`` newest first, paged with ``after``. Meta gives
  details (text, sender, attachments) for the 20 most recent messages of a conversation only;
  an older entry, asked for with ``GET /{message-id}``, errors as if deleted. That error skips
  the message instead of failing the page, and ends the chat's history: everything older is
  beyond the window too. The cursor kept in ``SyncStatus`` is ``{conversation}|{after}`` (no
  URL: Graph's ``paging.next`` may carry the access token).
- **Webhooks** are signed with the app secret (``meta.verify_signature``); the GET handshake
  checks the verify token. Deliveries of another ``object`` are acknowledged and dropped;
  entries of another account (one Meta app serves many Pages) are ignored.
- **Echoes** (``is_echo``) are the account's own messages: ``fromSelf``, in the chat of the
  other party. Their ``mid`` is the ``message_id`` the Send API answered, so the echo of an app
  message merges into it.
- **Receipts**: ``delivery.mids`` and Instagram's ``read.mid`` name messages, each gets its
  state. A watermark without mids only says "everything up to this time": the connector reads
  the conversation's recent messages once and gives the state to the account's own messages
  created at or before the watermark (second precision; at most the 20 with details).
- **Sending** outside the 24-hour window fails with code 10 (subcode 2018278 on Messenger,
  2534022 on Instagram). With ``settings.humanAgentTag`` the message is resent once with the
  ``HUMAN_AGENT`` tag (7 days): meant for integrations where people, not bots, write the app
  messages, which is what Meta allows the tag for.
- **Polling** (every 5 minutes, a safety net): there is no "messages since" API. A poll lists
  conversations by ``updated_time`` (newest first) down to the mark minus the look-back, and
  reads the 20 newest messages of each one that changed. Edits, unsends and receipts are
  webhook-only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from syncd.kit.connector import Connector, body_digest
from syncd.kit.errors import PermanentError, ProviderError
from syncd.kit.http import Pages, ProviderHttp, RetryPolicy
from syncd.mapping import MappingError
from syncd.providers.meta import classify, handshake, parse_body, verify_signature
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

log = structlog.get_logger(__name__)

MESSAGE_FIELDS = "id,created_time,from,to,message,attachments"
CONVERSATION_FIELDS = "participants,updated_time"
#: Meta returns details for this many of a conversation's newest messages.
DETAIL_WINDOW = 20
#: Graph error code 10 with these subcodes: the 24-hour messaging window is closed.
OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2534022})
_VERSION = re.compile(r"^v\d+\.\d+$")


class OutsideWindow(PermanentError):
    """The Send API refused a message outside the 24-hour window (code 10)."""


class Bearer:
    """The ``authenticate`` hook: the current token, swapped in place (Messenger trades the
    user token of an OAuth connect for the Page's token on first use)."""

    def __init__(self, token: str):
        self.token = token

    async def __call__(self, request: httpx.Request) -> None:
        # A header, not ?access_token=: URLs end up in proxies' logs.
        request.headers["Authorization"] = f"Bearer {self.token}"


class PageCredentials(BaseModel):
    """Fields both platforms share; subclasses add the token and the account id. Never printed."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", hide_input_in_errors=True
    )

    app_secret: str = Field(min_length=1, repr=False)
    verify_token: str = Field(min_length=1, repr=False)

    @field_validator("*", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # A numeric id posted as a JSON number stays exact as text (Python ints are exact).
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def token(self) -> str:
        raise NotImplementedError

    @property
    def account_id(self) -> str:
        raise NotImplementedError


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def classify_send(response: httpx.Response) -> None:
    """``classify``, plus the 24-hour window refusal as its own exception."""
    error = _error_of(response)
    if error.get("code") == 10 and error.get("error_subcode") in OUTSIDE_WINDOW_SUBCODES:
        raise OutsideWindow(f"outside the 24-hour messaging window ({error['error_subcode']})",
                            status=response.status_code, code="10")
    classify(response)


async def managed_pages(http: ProviderHttp, user_token: str, fields: str) -> list[dict[str, Any]]:
    """The Pages a user token administers (``GET /me/accounts``), every page of them; for the
    connect flow, whose client carries no credentials of its own."""
    found: list[dict[str, Any]] = []
    pages = Pages("me/accounts")
    url: str | None = "/me/accounts"
    params: dict[str, Any] | None = {"fields": fields, "limit": 100}
    while url is not None:
        response = await http.request("GET", url, label="GET me/accounts", classify=classify, params=params,
                                      headers={"Authorization": f"Bearer {user_token}"})
        data = response.json()
        found += [p for p in data.get("data") or [] if isinstance(p, dict)]
        following = pages.advance((data.get("paging") or {}).get("next"))
        # Only Meta's own paging URL on the same root is followed, never another host.
        url = following if following and following.startswith(http.base_url + "/") else None
        params = None
    return found


def _iso_ms(value: Any) -> int | None:
    """Graph's ``2024-05-01T10:00:00+0000`` in epoch milliseconds."""
    try:
        return int(datetime.fromisoformat(str(value)).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def _graph_attachments(raw: dict[str, Any]) -> list[dict[str, Any]] | None:
    items = (raw.get("attachments") or {}).get("data") if isinstance(raw.get("attachments"), dict) else None
    if not items:
        return None
    out = []
    for a in items:
        if not isinstance(a, dict):
            continue
        url = (a.get("image_data") or {}).get("url") or (a.get("video_data") or {}).get("url") or a.get("file_url")
        out.append({"name": a.get("name"), "mimeType": a.get("mime_type"), "size": a.get("size"),
                    "url": url, "externalId": a.get("id")})
    return out


def _webhook_attachments(message: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, list[str] | None]:
    """Webhook attachments carry a type and a URL only: as attachment dicts, and their types."""
    items = [a for a in message.get("attachments") or [] if isinstance(a, dict)]
    if not items:
        return None, None
    return ([{"url": (a.get("payload") or {}).get("url")} for a in items],
            [str(a.get("type")) for a in items if a.get("type")])


class PageMessagingConnector(Connector):
    """The Messenger/Instagram connector; subclasses set the class constants below."""

    base_url_key: ClassVar[str | None] = "meta"
    manual_teardown: ClassVar[str | None] = "the Callback URL under Webhooks in the Meta app dashboard"
    #: Pages cannot edit or unsend their messages through the API.
    can_edit: ClassVar[bool] = False
    can_delete: ClassVar[bool] = False
    #: ``platform=`` of the conversations endpoint.
    graph_platform: ClassVar[str]
    #: ``object`` of this platform's webhook deliveries.
    webhook_object: ClassVar[str]
    #: ``fields=`` of the account itself for ``identify``.
    account_fields: ClassVar[str]
    page_size: ClassVar[int] = 25
    #: Webhooks carry everything (and Meta redelivers for days); the poll is a safety net and
    #: the Conversations API allows about 2 calls/s per Page, so it runs every 5 minutes.
    poll_every_s: ClassVar[float | None] = 300.0
    #: The credentials field naming the account, which a connect flow takes from settings.
    account_field: ClassVar[str]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: user id -> conversation id, learned from conversation listings.
        self._conversations: dict[str, str] = {}
        #: user id -> the chat, as last listed.
        self._chat_data: dict[str, ChatData] = {}
        #: users whose chat (and name) this process already handed to the engine.
        self._reported: set[str] = set()
        auth = self.http.authenticate
        if not isinstance(auth, Bearer):  # an http built elsewhere (tests): adopt it
            auth = Bearer(self.credentials.token)  # type: ignore[attr-defined]
            self.http.authenticate = auth
        self.auth = auth

    @property
    def account_id(self) -> str:
        return self.credentials.account_id  # type: ignore[attr-defined]

    async def _ready(self) -> None:
        """Called before the work that needs the account's own token (Messenger: the swap of
        an OAuth user token for the Page token)."""

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any], settings: dict[str, Any]
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The account id may come with the settings: Meta's token endpoint does not say which
        Page or Instagram account a connect flow is for, the customer does."""
        if not credentials.get(cls.account_field) and settings.get(cls.account_field):
            credentials = {**credentials, cls.account_field: str(settings[cls.account_field])}
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
        bearer = Bearer(credentials.token)  # type: ignore[attr-defined]
        return ProviderHttp(base_url, classify=classify, authenticate=bearer, policy=policy, timeout_s=timeout_s,
                            transport=transport)

    async def _get(self, path: str, params: dict[str, Any] | None = None, *, label: str) -> dict[str, Any]:
        response = await self.http.request("GET", path, label=label, params=params)
        return response.json()

    def _rebased(self, url: str) -> str:
        """``paging.next`` on our own API root: the bearer token must never go to a host the
        operator did not configure, and a proxy or simulator root must keep being used."""
        base = self.http.base_url
        if url.startswith(base + "/"):
            return url
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        if segments and _VERSION.match(segments[0]):
            segments = segments[1:]
        return f"{base}/{'/'.join(segments)}" + (f"?{parts.query}" if parts.query else "")

    # -- mapping helpers ------------------------------------------------------------------
    def _graph_message(self, raw: dict[str, Any], user_id: str, **ctx: Any) -> MessageData:
        sender = str((raw.get("from") or {}).get("id") or "")
        return self.mapping.message(raw, {"userId": user_id, "fromSelf": sender == self.account_id,
                                          "attachments": _graph_attachments(raw), **ctx})

    def _event_message(self, source: dict[str, Any], ctx: dict[str, Any]) -> MessageData:
        """A webhook item through the mapping's ``event`` section."""
        data = self.mapping.section("event", source, ctx)
        try:
            return MessageData.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise MappingError(self.mapping.file, f"event.{where}", first["msg"]) from None

    def _chat(self, conversation: dict[str, Any]) -> ChatData | None:
        """A conversation as the chat of its other participant (``None`` if it has none)."""
        people = (conversation.get("participants") or {}).get("data") or []
        user = next((p for p in people if isinstance(p, dict) and str(p.get("id")) != self.account_id), None)
        if user is None:
            return None
        user_id = str(user["id"])
        if conversation.get("id"):
            self._conversations[user_id] = str(conversation["id"])
        chat = self.mapping.chat(conversation, {"user": user, "participants": [user_id]})
        self._chat_data[user_id] = chat
        return chat

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        await self._ready()
        data = await self._get(f"/{self.account_id}", {"fields": self.account_fields}, label="GET account")
        return [self.mapping.user(data, {"isSelf": True})]

    async def _conversation_page(self, url: str | None, **params: Any) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the account's conversations, newest first, and the next page's URL."""
        if url is None:
            data = await self._get(f"/{self.account_id}/conversations", {
                "platform": self.graph_platform, "fields": CONVERSATION_FIELDS, "limit": self.page_size, **params,
            }, label="GET conversations")
        else:
            data = await self._get(self._rebased(url), label="GET conversations (next page)")
        paging = data.get("paging") or {}
        return [c for c in data.get("data") or [] if isinstance(c, dict)], paging.get("next") or None

    async def list_chats(self) -> list[ChatData]:
        await self._ready()
        chats: list[ChatData] = []
        pages = Pages("conversations")
        url: str | None = None
        while True:
            conversations, following = await self._conversation_page(url)
            chats += [c for c in map(self._chat, conversations) if c is not None]
            url = pages.advance(following)
            if url is None:
                self._reported.update(c.external_chat_id for c in chats)
                return chats

    async def _conversation_of(self, user_id: str) -> str | None:
        if user_id not in self._conversations:
            conversations, _ = await self._conversation_page(None, user_id=user_id)
            for conversation in conversations:
                self._chat(conversation)
        return self._conversations.get(user_id)

    # -- history --------------------------------------------------------------------------
    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        await self._ready()
        user_id = chat.external_chat_id
        if cursor:
            conversation, _, after = cursor.partition("|")
        else:
            conversation, after = await self._conversation_of(user_id), ""
        if not conversation:
            return HistoryPage([])  # nobody wrote yet: no conversation exists
        params: dict[str, Any] = {"fields": MESSAGE_FIELDS, "limit": self.page_size}
        if after:
            params["after"] = after
        data = await self._get(f"/{conversation}/messages", params, label="GET conversation messages")
        messages: list[MessageData] = []
        beyond = False
        for raw in data.get("data") or []:
            if "from" not in raw:  # listed without details: ask once, Meta may refuse
                raw = await self._details(str(raw.get("id")))
                if raw is None:
                    beyond = True  # older ones are beyond the detail window as well
                    break
            messages.append(self._graph_message(raw, user_id))
        paging = data.get("paging") or {}
        following = (paging.get("cursors") or {}).get("after")
        if beyond or not paging.get("next") or not following:
            return HistoryPage(messages)
        next_cursor = f"{conversation}|{following}"
        if next_cursor == cursor:
            raise PermanentError("conversation messages: pagination token repeated; stopping")
        return HistoryPage(messages, next_cursor)

    async def _details(self, mid: str) -> dict[str, Any] | None:
        """One message with details; ``None`` when Meta refuses it (older than the 20 newest)."""
        try:
            raw = await self._get(f"/{mid}", {"fields": MESSAGE_FIELDS}, label="GET message")
        except PermanentError as exc:
            log.info("message details refused; skipped", platform=self.platform, code=exc.code)
            return None
        return raw if "from" in raw else None

    # -- export ---------------------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> SendResult:
        await self._ready()
        body = self.mapping.outgoing("send", message)
        if not (body.get("message") or {}).get("text"):
            raise PermanentError(f"{self.platform}: only text messages can be sent")
        try:
            data = await self._post_message(body)
        except OutsideWindow:
            if not self.settings.get("humanAgentTag"):
                raise
            data = await self._post_message({**body, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"})
        mid = data.get("message_id")
        if not mid:
            raise PermanentError(f"{self.platform}: the Send API answered without a message_id")
        return SendResult(external_message_id=str(mid))

    async def _post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request("POST", f"/{self.account_id}/messages", label="POST messages",
                                           classify=classify_send, json=body)
        return response.json()

    # -- webhooks -------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        answered = handshake(request, self.credentials.verify_token)  # type: ignore[attr-defined]
        if answered is not None:
            return answered
        verify_signature(self.credentials.app_secret, request)  # type: ignore[attr-defined]
        if parse_body(request).get("object") != self.webhook_object:
            return WebhookAccepted(None)  # another product's events: acknowledged, not ours
        # Meta's deliveries carry no id; a redelivery repeats the same bytes.
        return WebhookAccepted(body_digest(request.body))

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        body = parse_body(request)
        if body.get("object") != self.webhook_object:
            return Changes()
        await self._ready()
        messages: list[MessageData] = []
        for entry in body.get("entry") or []:
            if not isinstance(entry, dict) or str(entry.get("id")) != self.account_id:
                continue
            for item in entry.get("messaging") or []:
                if isinstance(item, dict):
                    messages += await self._item(item)
        users = {m.external_chat_id for m in messages} - self._reported
        return Changes(messages=messages, chats=await self._chats_of(sorted(users)))

    async def _item(self, item: dict[str, Any]) -> list[MessageData]:
        sender = str((item.get("sender") or {}).get("id") or "")
        recipient = str((item.get("recipient") or {}).get("id") or "")
        user = recipient if sender == self.account_id else sender
        if not user:
            return []
        ctx: dict[str, Any] = {"userId": user, "fromSelf": sender == self.account_id}
        if isinstance(item.get("message"), dict):
            message = item["message"]
            if message.get("is_deleted"):
                return [self._event_message({"unsend": item}, ctx)]
            echo = bool(message.get("is_echo"))
            ctx["attachments"], ctx["attachmentTypes"] = _webhook_attachments(message)
            ctx["fromSelf"] = echo or ctx["fromSelf"]
            if echo:
                ctx["echoSender"] = self.account_id  # the account sent it, whatever the item says
            return [self._event_message({"message": item}, ctx)]
        if isinstance(item.get("message_edit"), dict):
            return [self._event_message({"edit": item}, ctx)]
        for kind, state in (("delivery", "delivered"), ("read", "read")):
            receipt = item.get(kind)
            if not isinstance(receipt, dict):
                continue
            mids = [str(m) for m in receipt.get("mids") or []] + ([str(receipt["mid"])] if receipt.get("mid") else [])
            if mids:
                # Receipts are about the account's own messages: outbound, even one syncd never saw.
                return [self._event_message({"receipt": item}, {**ctx, "mid": mid, "fromSelf": True}) for mid in mids]
            if isinstance(receipt.get("watermark"), int):
                return await self._up_to(user, receipt["watermark"], state)
        return []  # postbacks, reactions, referrals, opt-ins: not messages

    async def _up_to(self, user_id: str, watermark_ms: int, state: str) -> list[MessageData]:
        """The account's own recent messages at or before ``watermark_ms``, with ``state``."""
        try:
            conversation = await self._conversation_of(user_id)
            if conversation is None:
                return []
            data = await self._get(f"/{conversation}/messages", {"fields": MESSAGE_FIELDS, "limit": DETAIL_WINDOW},
                                   label="GET conversation messages")
        except PermanentError as exc:
            # A receipt is worth one look, not a failed delivery.
            log.info("receipt watermark not applied", platform=self.platform, code=exc.code)
            return []
        out = []
        for raw in data.get("data") or []:
            created = _iso_ms(raw.get("created_time"))
            own = str((raw.get("from") or {}).get("id")) == self.account_id
            if own and created is not None and created <= watermark_ms:
                out.append(self._graph_message(raw, user_id, deliveryState=state))
        return out

    async def _chats_of(self, users: list[str]) -> list[ChatData]:
        """Named chats for users this process has not described yet. Best effort, once per
        user: a failed lookup leaves the chat unnamed until the next import, and never keeps
        the messages from being stored."""
        chats = []
        for user in users:
            self._reported.add(user)
            try:
                await self._conversation_of(user)
            except ProviderError as exc:
                log.info("chat name lookup failed", platform=self.platform, error=type(exc).__name__)
                continue
            if user in self._chat_data:
                chats.append(self._chat_data[user])
        return chats

    # -- polling --------------------------------------------------------------------------
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        now_ms = int(self.ctx.clock() * 1000)
        mark = (state or {}).get("updatedMs")
        if mark is None:
            return PollResult(Changes(), {"updatedMs": now_ms})  # the import reads what came before
        await self._ready()
        since = int(mark - lookback_s * 1000)
        newest = int(mark)
        changes = Changes()
        pages = Pages("conversations")
        url: str | None = None
        while True:
            conversations, following = await self._conversation_page(url)
            for conversation in conversations:
                updated = _iso_ms(conversation.get("updated_time"))
                if updated is None or updated < since:
                    return PollResult(changes, {"updatedMs": newest})  # newest first: the rest is older
                chat = self._chat(conversation)
                if chat is None:
                    continue
                changes.chats.append(chat)
                self._reported.add(chat.external_chat_id)
                changes.messages += await self._recent(str(conversation["id"]), chat.external_chat_id, since)
                newest = max(newest, updated)
            url = pages.advance(following)
            if url is None:
                return PollResult(changes, {"updatedMs": newest})

    async def _recent(self, conversation: str, user_id: str, since_ms: int) -> list[MessageData]:
        data = await self._get(f"/{conversation}/messages", {"fields": MESSAGE_FIELDS, "limit": DETAIL_WINDOW},
                               label="GET conversation messages")
        return [
            self._graph_message(raw, user_id) for raw in data.get("data") or []
            if "from" in raw and (_iso_ms(raw.get("created_time")) or 0) >= since_ms
        ]
