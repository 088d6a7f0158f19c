"""The connector interface every platform implements, and the universal data it returns.

A connector owns transport: auth, endpoints, pagination, signatures, rate limits. Shape is
owned by the platform's mapping file (``mappings/<platform>.yaml``): a connector hands raw
platform dicts to ``self.mapping`` and returns the universal ``MessageData``/``ChatData``/
``UserData`` it gets back. Connectors never touch the store or the engine.
"""

from __future__ import annotations

import abc
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from syncd.models import Attachment, ChatKind, DeliveryState, Sender

if TYPE_CHECKING:
    from syncd.mapping import Mapping
    from syncd.providers.http import ProviderHttp


class Universal(BaseModel):
    """Base of the data a mapping produces (snake_case attributes, camelCase aliases)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class MessageData(Universal):
    """One message as the platform describes it. ``None`` means "not said", never "erase"."""

    external_chat_id: str
    external_message_id: str
    external_thread_id: str | None = None
    sender: Sender = Field(default_factory=Sender)
    text: str | None = None
    html: str | None = None
    subject: str | None = None
    attachments: list[Attachment] | None = None
    sent_at: datetime | None = None
    edited_at: datetime | None = None
    #: Set on a deletion (tombstone); a delete event may carry nothing but the ids and this.
    deleted_at: datetime | None = None
    delivery_state: DeliveryState | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    #: The platform flags this message as sent by the connected account itself (bot echo).
    from_self: bool = False


class ChatData(Universal):
    external_chat_id: str
    name: str | None = None
    #: ``None`` = not said (stored chats default to ``channel``).
    kind: ChatKind | None = None
    participants: list[str] = Field(default_factory=list)
    last_message_at: datetime | None = None


class UserData(Universal):
    external_user_id: str
    external_email: str | None = None
    display_name: str | None = None
    is_self: bool = False


@dataclass
class HistoryPage:
    """One page of a chat's history; ``next_cursor`` is ``None`` on the last page."""

    messages: list[MessageData]
    next_cursor: str | None = None


@dataclass
class OutgoingMessage:
    """What the app asked to send, edit or delete, with the context a platform needs.

    ``chat`` is the stored chat (name, kind, participants); ``reply_to`` is the latest stored
    message of the chat (email replies need its ``extra`` headers and subject).
    """

    chat: ChatData
    text: str | None = None
    html: str | None = None
    subject: str | None = None
    external_message_id: str | None = None
    external_thread_id: str | None = None
    app_message_id: str | None = None
    reply_to: MessageData | None = None

    @property
    def external_chat_id(self) -> str:
        return self.chat.external_chat_id

    def as_source(self) -> dict[str, Any]:
        """The dict that ``send``/``edit``/``delete`` mapping rules read from."""
        return {
            "externalChatId": self.chat.external_chat_id,
            "chat": self.chat.model_dump(by_alias=True),
            "text": self.text,
            "html": self.html,
            "subject": self.subject,
            "externalMessageId": self.external_message_id,
            "externalThreadId": self.external_thread_id,
            "appMessageId": self.app_message_id,
            "replyTo": self.reply_to.model_dump(by_alias=True) if self.reply_to else None,
        }


@dataclass
class SendResult:
    external_message_id: str
    sent_at: datetime | None = None
    external_thread_id: str | None = None
    #: For an edit: when the platform says the edit happened (None = not said).
    edited_at: datetime | None = None
    #: Metadata to keep on the stored message (mapped like ``MessageData.extra``).
    extra: dict[str, Any] = field(default_factory=dict)


class _OnFirstRead:
    """A field that may also be given as a function of no arguments: called on the first read,
    its answer kept. The HTTP endpoint passes the request URL this way, so deliveries to
    connectors that never read it do not pay for building it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> str:
        if obj is None:  # a dataclass asks the class for a default: there is none
            raise AttributeError(self.attr)
        value = obj.__dict__[self.attr]
        if callable(value):
            value = obj.__dict__[self.attr] = value()
        return value

    def __set__(self, obj: Any, value: str | Callable[[], str]) -> None:
        obj.__dict__[self.attr] = value


@dataclass
class WebhookRequest:
    """A webhook delivery exactly as received: raw bytes, lower-cased header names."""

    method: str
    url: _OnFirstRead = _OnFirstRead()  # a str, or a function that builds it when first read
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes


@dataclass
class WebhookAnswer:
    """What the HTTP endpoint answers the platform."""

    status_code: int = 200
    body: str | bytes | dict[str, Any] | None = None
    media_type: str = "application/json"


@dataclass
class WebhookAccepted:
    """A verified delivery. ``delivery_id`` ``None`` means nothing to store (a handshake)."""

    delivery_id: str | None
    answer: WebhookAnswer = field(default_factory=lambda: WebhookAnswer(200, {"ok": True}))


@dataclass
class Changes:
    """What a webhook delivery or a poll says changed at the platform.

    ``poll_requested`` asks the engine to run a poll now (e.g. a Gmail push only carries a
    historyId); ``resync_requested`` asks for a full resync (a missed-events notice, an expired
    history mark).
    """

    messages: list[MessageData] = field(default_factory=list)
    chats: list[ChatData] = field(default_factory=list)
    poll_requested: bool = False
    resync_requested: bool = False


@dataclass
class PollResult:
    changes: Changes
    #: The new high-water mark to store and hand back on the next poll (JSON-serialisable).
    state: Any = None


@dataclass
class ConnectorContext:
    """What the engine hands a connector: its HTTP client, mapping and a few settings."""

    http: "ProviderHttp"
    mapping: "Mapping"
    webhook_url: str
    #: False when no ``SYNCD_PUBLIC_URL`` is configured: platforms cannot reach our webhooks,
    #: so connectors that can should poll instead (Telegram's getUpdates).
    public_webhooks: bool = True
    webhook_max_skew_s: int = 300
    clock: Callable[[], float] = time.time
    #: Called with the full new credentials when a connector refreshes a token, so they are
    #: stored (encrypted) and survive a restart.
    on_credentials: Callable[[dict[str, Any]], Awaitable[None]] | None = None


class Connector(abc.ABC):
    """One platform. Subclasses set ``platform`` and ``Credentials`` and implement the methods.

    ``credentials`` are already validated against ``Credentials`` by the caller; ``settings``
    are the integration's settings (e.g. ``importChats``).
    """

    platform: ClassVar[str]
    #: pydantic model of the credentials this platform needs; validated on integration create.
    Credentials: ClassVar[type[BaseModel]]
    #: Capabilities shown in the README matrix and used to refuse impossible app events.
    can_edit: ClassVar[bool] = True
    can_delete: ClassVar[bool] = True
    has_history: ClassVar[bool] = True
    #: False where the platform has nothing to poll (webhooks are the only inbound channel).
    can_poll: ClassVar[bool] = True

    #: Which ``SYNCD_<KEY>_BASE_URL`` / documented API root this connector talks to (several
    #: platforms share one, e.g. ``meta`` for WhatsApp, Messenger and Instagram).
    base_url_key: ClassVar[str | None] = None
    #: How often ``maintain`` must run (webhook subscriptions and watches expire); None = never.
    maintain_every_s: ClassVar[float | None] = None
    #: This platform's poll interval when it differs from ``SYNCD_POLL_INTERVAL_S`` (e.g. a
    #: long-poll fallback that is the only inbound channel).
    poll_every_s: ClassVar[float | None] = None
    #: The OAuth connect flow of this platform, if it has one.
    oauth: ClassVar["OAuthSpec | None"] = None

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any], settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Fill in what syncd generates itself (a webhook secret token, a clientState) before
        the credentials are validated and stored. Must not do I/O."""
        return credentials, settings

    @classmethod
    def credentials_from_oauth(
        cls, token: dict[str, Any], *, client_id: str, client_secret: str
    ) -> dict[str, Any]:
        """The integration credentials made from the OAuth token endpoint's answer (only for
        platforms with ``oauth``). Must not do I/O."""
        raise NotImplementedError(f"{cls.platform} has no OAuth connect flow")

    @classmethod
    async def finish_oauth(cls, credentials: dict[str, Any], http: "ProviderHttp") -> dict[str, Any]:
        """Complete what the token answer alone cannot give (e.g. Meta's page id and page token
        come from ``/me/accounts``). ``http`` is a client on the platform's API root that
        carries no credentials. Default: unchanged."""
        return credentials

    def __init__(self, credentials: BaseModel, settings: dict[str, Any], ctx: ConnectorContext):
        self.credentials = credentials
        self.settings = settings
        self.ctx = ctx

    @property
    def http(self) -> "ProviderHttp":
        return self.ctx.http

    @property
    def mapping(self) -> "Mapping":
        return self.ctx.mapping

    # -- identity and chats -------------------------------------------------------------
    @abc.abstractmethod
    async def identify(self) -> list[UserData]:
        """The connected account's own identities (``is_self=True``); checks the credentials."""

    @abc.abstractmethod
    async def list_chats(self) -> list[ChatData]:
        """Every chat the account can read, with real names, following all pages."""

    @abc.abstractmethod
    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        """One page of ``chat``'s history from ``cursor`` (``None`` = the first page)."""

    # -- export ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def edit(self, message: OutgoingMessage) -> SendResult:
        from syncd.providers.errors import PermanentError

        raise PermanentError(f"{self.platform} does not support editing messages")

    async def delete(self, message: OutgoingMessage) -> None:
        from syncd.providers.errors import PermanentError

        raise PermanentError(f"{self.platform} does not support deleting messages")

    # -- webhooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        """Verify a delivery (raise ``SignatureError``) or answer a handshake. No I/O."""

    @abc.abstractmethod
    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        """Turn a stored, verified delivery into changes (runs later, in the inbox worker)."""

    # -- polling --------------------------------------------------------------------------
    @abc.abstractmethod
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        """Everything changed since ``state`` (``None`` = start from now), re-reading
        ``lookback_s`` seconds before the mark so recent edits are seen."""

    # -- staying connected ---------------------------------------------------------------
    async def maintain(self, state: Any) -> Any:
        """Create or renew what keeps webhooks flowing (a subscription, a watch, a registered
        webhook URL); called when the integration starts and every ``maintain_every_s``.
        ``state`` is what the previous call returned (``None`` the first time)."""
        return state

    async def close(self) -> None:
        await self.http.aclose()


@dataclass(frozen=True)
class OAuthSpec:
    """A platform's authorization-code flow; URLs are relative to ``base_url_key``'s root
    (so a simulator or proxy can serve them) unless absolute. A URL that starts with
    ``{key}`` hangs off that other root instead (``"{google_accounts}/o/oauth2/v2/auth"``): the
    consent page and the token endpoint often live on different hosts."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    #: Which ``SYNCD_<KEY>_BASE_URL`` root the two URLs hang off (e.g. ``google_oauth``).
    base_url_key: str
    #: Extra query parameters of the authorize URL (e.g. ``access_type=offline``).
    authorize_params: tuple[tuple[str, str], ...] = ()
    #: How ``scopes`` are joined in the ``scope`` parameter (Slack: ","; OAuth 2.0: " ").
    scope_separator: str = " "


def body_digest(body: bytes) -> str:
    """A stable delivery id for platforms whose deliveries carry none."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
