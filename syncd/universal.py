"""The universal data a platform hands the engine, and what the engine hands a platform.

These are the types of the platform seam: a connector returns ``MessageData``/``ChatData``/
``UserData`` (built by the platform's manifest mappings) inside ``HistoryPage``, ``Changes`` and
``PollResult``; it receives ``OutgoingMessage`` and the raw ``WebhookRequest``. They sit with the
models at the bottom of the dependency order, so the mapping engine, the kit, the store and the
platforms all import them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from syncd.models import Attachment, ChatKind, DeliveryState, Sender


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
    #: When syncd first registered this send: where a send whose answer was lost is looked for.
    registered_at: datetime | None = None

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
    if TYPE_CHECKING:  # the descriptor gives no default (see ``_OnFirstRead.__get__``)
        url: str
    else:
        url: _OnFirstRead = _OnFirstRead()  # a str, or a function that builds it when first read
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    #: Received at the platform's shared webhook URL (verified with the platform-level secret).
    shared: bool = False
    #: The query exactly as received (what ``url`` carries after its ``?``), where the endpoint
    #: has it without building the URL; ``None``: read from ``url``.
    raw_query: str | None = None

    if TYPE_CHECKING:
        def __init__(self, method: str, url: str | Callable[[], str], headers: dict[str, str],
                     query: dict[str, str], body: bytes, shared: bool = False,
                     raw_query: str | None = None) -> None: ...


@dataclass
class WebhookAnswer:
    """What the HTTP endpoint answers the platform."""

    status_code: int = 200
    body: str | bytes | dict[str, Any] | None = None
    media_type: str = "application/json"
    #: Headers the platform expects on the answer (a proof that the receiver holds the secret).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class WebhookAccepted:
    """A verified delivery. ``delivery_id`` ``None`` means nothing to store (a handshake)."""

    delivery_id: str | None
    answer: WebhookAnswer = field(default_factory=lambda: WebhookAnswer(200, {"ok": True}))


@dataclass
class FollowUp:
    """What the platform must be told once a delivery's records are stored, or once storing
    them failed for good (a reply confirmed, or handed back to its sender). ``stored`` and
    ``failed`` name what the connector does (the engine does not read them); ``ctx`` is the
    record they concern."""

    stored: str | None = None
    failed: str | None = None
    ctx: dict[str, Any] = field(default_factory=dict)


@dataclass
class Changes:
    """What a webhook delivery or a poll says changed at the platform.

    ``poll_requested`` asks the engine to run a poll now (e.g. a push that only carries a
    historyId); ``resync_requested`` asks for a full resync (a missed-events notice, an expired
    history mark).
    """

    messages: list[MessageData] = field(default_factory=list)
    chats: list[ChatData] = field(default_factory=list)
    poll_requested: bool = False
    resync_requested: bool = False
    #: Handed back to ``Connector.follow_up`` after the ingest (webhooks only).
    follow_ups: list[FollowUp] = field(default_factory=list)


@dataclass
class PollResult:
    changes: Changes
    #: The new high-water mark to store and hand back on the next poll (JSON-serialisable).
    state: Any = None
