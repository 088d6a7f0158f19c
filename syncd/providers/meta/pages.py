"""Page messaging, as Facebook Messenger and Instagram Messaging share it: the same Graph API
conversations, the same Send API and the same ``messaging[]`` webhook items. Endpoints, auth,
paging, errors, signatures, the handshake and which deliveries and items count are data in
``mappings/messenger.yaml`` / ``instagram.yaml``; this module overrides the operations that
data cannot say, and the two platform modules add their OAuth connect flow.

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
- **Webhook items** are filed by what they are (message, echo, edit, unsend, receipt), and
  a new person's chat is named with one Graph lookup.
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

from datetime import datetime
from typing import Any

import structlog

from syncd.kit.classify import classifier
from syncd.kit.errors import PermanentError, ProviderError
from syncd.kit.http import Pages, ProviderHttp
from syncd.providers.meta import GraphConnector, with_usage_wait
from syncd.universal import (
    Changes,
    ChatData,
    HistoryPage,
    MessageData,
    OutgoingMessage,
    PollResult,
    SendResult,
    UserData,
    WebhookRequest,
)

log = structlog.get_logger(__name__)

#: Meta returns details for this many of a conversation's newest messages.
DETAIL_WINDOW = 20


class OutsideWindow(PermanentError):
    """The Send API refused a message outside the 24-hour window (the manifest's error rule
    with ``reason: outside_window``)."""


async def managed_pages(cls: type[GraphConnector], http: ProviderHttp, user_token: str,
                        fields: str) -> list[dict[str, Any]]:
    """The Pages a user token administers (``GET /me/accounts``), every page of them; for the
    connect flow, whose client carries no credentials of its own."""
    found: list[dict[str, Any]] = []
    pages = Pages("me/accounts")
    url: str | None = "/me/accounts"
    params: dict[str, Any] | None = {"fields": fields, "limit": 100}
    classify = with_usage_wait(classifier(cls.manifest.errors))
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


class PageMessagingConnector(GraphConnector):
    """The Messenger/Instagram connector; subclasses set the class constants below."""

    #: The credentials fields holding the token and naming the account (a connect flow may
    #: take the account from settings).
    token_field: str
    account_field: str

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: user id -> conversation id, learned from conversation listings.
        self._conversations: dict[str, str] = {}
        #: user id -> the chat, as last listed.
        self._chat_data: dict[str, ChatData] = {}
        #: users whose chat (and name) this process already handed to the engine.
        self._reported: set[str] = set()

    @property
    def account_id(self) -> str:
        return str(self.credentials.model_dump(by_alias=True).get(self.account_field) or "")

    def use_token(self, token: str) -> None:
        """Authenticate every further request with ``token`` (the auth reads it per request)."""
        auth = getattr(self.http, "auth", None)
        if auth is not None and hasattr(auth, "scope"):
            auth.scope.setdefault("credentials", {})[self.token_field] = token

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
        return super().prepare_credentials(credentials, settings)

    async def _get(self, path: str, params: dict[str, Any] | None = None, *, label: str) -> dict[str, Any]:
        response = await self.http.request("GET", path, label=label, params=params)
        return response.json()

    async def _messages(self, conversation: str, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page of a conversation's messages, newest first (the manifest's history request)."""
        scope = self.scope(conversation=conversation, after=after or None, **({"pageSize": limit} if limit else {}))
        _, data = await self.call("history", self.required("history"), scope)
        return data if isinstance(data, dict) else {}

    # -- mapping helpers ------------------------------------------------------------------
    def _graph_message(self, raw: dict[str, Any], user_id: str, **ctx: Any) -> MessageData:
        sender = str((raw.get("from") or {}).get("id") or "")
        return self.mapping.message(raw, {"userId": user_id, "fromSelf": sender == self.account_id,
                                          "attachments": _graph_attachments(raw), **ctx})

    def _event_message(self, source: dict[str, Any], ctx: dict[str, Any]) -> MessageData:
        """A webhook item through the mapping's ``event`` section."""
        return self.map_as("message", "event", source, ctx)

    def map_as(self, kind: str, section: str, record: dict[str, Any], ctx: dict[str, Any]) -> Any:
        """A conversation is the chat of its other participant (``None`` if it has none)."""
        if kind != "chat":
            return super().map_as(kind, section, record, ctx)
        people = (record.get("participants") or {}).get("data") or []
        user = next((p for p in people if isinstance(p, dict) and str(p.get("id")) != self.account_id), None)
        if user is None:
            return None
        user_id = str(user["id"])
        if record.get("id"):
            self._conversations[user_id] = str(record["id"])
        chat = super().map_as(kind, section, record, {**ctx, "user": user, "participants": [user_id]})
        self._chat_data[user_id] = chat
        return chat

    def _chat(self, conversation: dict[str, Any]) -> ChatData | None:
        return self.map_as("chat", "chat", conversation, {})

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        await self._ready()
        return await super().identify()

    async def list_chats(self) -> list[ChatData]:
        await self._ready()
        chats = [c for c in await super().list_chats() if c is not None]
        self._reported.update(c.external_chat_id for c in chats)
        return chats

    async def _conversation_of(self, user_id: str) -> str | None:
        if user_id not in self._conversations:
            await self.page("list_chats", self.required("list_chats"), "chat", self.scope(userId=user_id), None)
        return self._conversations.get(user_id)

    # -- history --------------------------------------------------------------------------
    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        """The cursor kept is ``{conversation}|{after}``: no URL (Graph's ``paging.next`` may
        carry the access token)."""
        await self._ready()
        user_id = chat.external_chat_id
        conversation: str | None
        if cursor:
            conversation, _, after = cursor.partition("|")
        else:
            conversation, after = await self._conversation_of(user_id), ""
        if not conversation:
            return HistoryPage([])  # nobody wrote yet: no conversation exists
        data = await self._messages(conversation, after)
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
            fields = self.required("history").params.get("fields")
            raw = await self._get(f"/{mid}", {"fields": fields}, label="GET message")
        except PermanentError as exc:
            log.info("message details refused; skipped", platform=self.platform, code=exc.code)
            return None
        return raw if "from" in raw else None

    # -- export ---------------------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> SendResult:
        """Outside the 24-hour window, with ``settings.humanAgentTag`` the message is sent once
        more with the ``HUMAN_AGENT`` tag (7 days), meant for integrations where people, not
        bots, write the app's messages."""
        await self._ready()
        if not (message.text or "").strip():
            raise PermanentError(f"{self.platform}: only text messages can be sent")
        try:
            try:
                return await super().send(message)
            except PermanentError as exc:
                if exc.reason != "outside_window" or not self.settings.get("humanAgentTag"):
                    raise
            body = {**self.mapping.outgoing("send", message), "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
            source = message.as_source()
            _, data = await self.call("send", self.required("send"), self.scope(message=source, chat=source["chat"]),
                                      body=body)
            return self._result("send", message, data)
        except PermanentError as exc:
            if exc.reason == "outside_window":
                raise OutsideWindow(str(exc), status=exc.status, code=exc.code) from None
            raise

    # -- webhooks -------------------------------------------------------------------------
    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        """The manifest's event records (this account's ``messaging[]`` items), each filed by
        what it is; receipts by watermark and chat names need the Graph API."""
        body = self.parse_body(request)
        scope = self.scope(body=body)
        items = [item for rule in self.manifest.webhook.events for item, _ in self.records(rule, body, scope)]
        if not items:
            return Changes()
        await self._ready()
        messages: list[MessageData] = []
        for item in items:
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
            data = await self._messages(conversation, limit=DETAIL_WINDOW)
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
        spec, pages, cursor = self.required("list_chats"), Pages("conversations"), None
        while True:
            found, cursor = await self.page("list_chats", spec, "chat", self.scope(), cursor)
            for chat in [c for c in found if c is not None]:
                updated = int(chat.last_message_at.timestamp() * 1000) if chat.last_message_at else None
                if updated is None or updated < since:
                    return PollResult(changes, {"updatedMs": newest})  # newest first: the rest is older
                changes.chats.append(chat)
                self._reported.add(chat.external_chat_id)
                conversation = self._conversations[chat.external_chat_id]
                changes.messages += await self._recent(conversation, chat.external_chat_id, since)
                newest = max(newest, updated)
            if pages.advance(cursor) is None:
                return PollResult(changes, {"updatedMs": newest})

    async def _recent(self, conversation: str, user_id: str, since_ms: int) -> list[MessageData]:
        data = await self._messages(conversation, limit=DETAIL_WINDOW)
        return [
            self._graph_message(raw, user_id) for raw in data.get("data") or []
            if "from" in raw and (_iso_ms(raw.get("created_time")) or 0) >= since_ms
        ]
