"""The universal model: what every platform is mapped onto, stored in MongoDB.

Documents are camelCase in MongoDB and in the API (``model_dump(by_alias=True)``);
Python attributes are snake_case. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, overload

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

ChatKind = Literal["channel", "dm", "group", "email_thread"]
Direction = Literal["inbound", "outbound"]
Origin = Literal["platform", "app"]
DeliveryState = Literal["pending", "sent", "delivered", "read", "failed"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """32 random hex digits: as unique as a UUID4's hex, at a fifth of its cost (every delivery
    and every stored message takes one)."""
    return os.urandom(16).hex()


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """MongoDB hands back naive datetimes (UTC); make every timestamp aware."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


#: A timestamp field of a stored document: MongoDB hands back naive UTC, the model keeps aware UTC.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]

#: The longest id syncd takes from a client: longer than any platform's (email thread ids
#: and Graph's composed chat ids stay well under it), short enough for an index key.
MAX_ID_LENGTH = 512


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


#: An id a client gives (a chat, a customer, an event, a message): bounded and NUL-free.
ClientId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_no_nul)]


def _aware(value: Any) -> Any:
    return as_utc(value) if isinstance(value, datetime) else value


class Doc(BaseModel):
    """Base of every stored document: camelCase aliases, aware UTC datetimes (``UtcDatetime``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def doc(self) -> dict[str, Any]:
        """The camelCase dict stored in MongoDB and served by the API."""
        return self.model_dump(by_alias=True, mode="python")


class Sender(Doc):
    external_user_id: str | None = None
    email: str | None = None
    name: str | None = None


class Attachment(Doc):
    name: str | None = None
    mime_type: str | None = None
    size: int | None = None
    url: str | None = None
    external_id: str | None = None


class Disconnect(Doc):
    """Undoing at the platform what an integration set up there (webhooks, subscriptions,
    watches) after it was deleted: retried in the background until it is done or given up."""

    state: Literal["pending", "done", "given_up"] = "pending"
    attempts: int = 0
    next_attempt_at: UtcDatetime | None = None
    last_error: str | None = None
    #: What syncd cannot undo and the user must remove by hand.
    left_at_platform: list[str] = Field(default_factory=list)
    #: What ``maintain`` had set up (the connector's state), kept for the retries: a purge
    #: removes the sync status it was read from.
    maintenance: Annotated[Any, AfterValidator(_aware)] = None
    finished_at: UtcDatetime | None = None


class Integration(Doc):
    id: str = Field(default_factory=new_id)
    customer_id: str
    platform: str
    name: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    status: Literal["active", "paused", "error", "deleted"] = "active"
    #: Why it is paused or in error (a pause's reason is the operator's own words).
    status_reason: str | None = None
    paused_at: UtcDatetime | None = None
    #: What a delete undid at the platform, or is still trying to (see ``Disconnect``).
    disconnect: Disconnect | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)
    #: What the user must paste at the platform (a generated secret among it): set only on the
    #: integration a create returns, never stored nor listed.
    setup: dict[str, Any] | None = Field(default=None, exclude=True)


class Chat(Doc):
    id: str = Field(default_factory=new_id)
    customer_id: str
    integration_id: str
    platform: str
    external_chat_id: str
    name: str | None = None
    kind: ChatKind = "channel"
    participants: list[str] = Field(default_factory=list)
    imported: bool = False
    last_message_at: UtcDatetime | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)


class Message(Doc):
    id: str = Field(default_factory=new_id)
    customer_id: str
    integration_id: str
    platform: str
    chat_id: str | None = None
    external_chat_id: str
    external_message_id: str | None = None
    external_thread_id: str | None = None
    sender: Sender = Field(default_factory=Sender)
    direction: Direction = "inbound"
    text: str | None = None
    html: str | None = None
    subject: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    sent_at: UtcDatetime | None = None
    edited_at: UtcDatetime | None = None
    deleted_at: UtcDatetime | None = None
    origin: Origin = "platform"
    app_message_id: str | None = None
    delivery_state: DeliveryState | None = None
    #: Platform metadata the mappings keep for later sends (e.g. the RFC Message-ID of an email).
    extra: dict[str, Any] = Field(default_factory=dict)
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)


class UserPlatform(Doc):
    id: str = Field(default_factory=new_id)
    customer_id: str
    platform: str
    integration_id: str | None = None
    external_user_id: str
    external_email: str | None = None
    display_name: str | None = None
    is_self: bool = False


class SyncCounts(Doc):
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    pages: int = 0


class FullSync(Doc):
    """One periodic full sync of an integration: every imported chat re-read from the start."""

    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    chats: int = 0
    chats_done: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0


class SyncStatus(Doc):
    id: str = Field(default_factory=new_id)
    integration_id: str
    chat_id: str | None = None
    external_chat_id: str | None = None
    phase: Literal["pending", "importing", "done", "error", "cancelled"] = "pending"
    cursor: str | None = None
    #: Whatever the connector's poll returned; a timestamp in it comes back aware, as every other.
    high_watermark: Annotated[Any, AfterValidator(_aware)] = None
    #: A full resync re-reads from the first page and marks what the platform no longer has.
    full: bool = False
    #: Read in the low-priority lane of the platform's rate budget (a periodic full sync).
    background: bool = False
    counts: SyncCounts = Field(default_factory=SyncCounts)
    #: What the connector's ``maintain`` returned last (subscription ids, expiries).
    maintenance: Annotated[Any, AfterValidator(_aware)] = None
    maintained_at: UtcDatetime | None = None
    #: Integration level: when the next periodic full sync is due, and the current or last one.
    next_full_sync_at: UtcDatetime | None = None
    full_sync: FullSync | None = None
    last_error: str | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    updated_at: UtcDatetime = Field(default_factory=utcnow)


class InboxItem(Doc):
    id: str = Field(default_factory=new_id)
    integration_id: str
    platform: str
    delivery_id: str
    received_at: UtcDatetime = Field(default_factory=utcnow)
    body: str
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    status: Literal["pending", "done", "failed"] = "pending"
    attempts: int = 0
    next_attempt_at: UtcDatetime = Field(default_factory=utcnow)
    lease_until: UtcDatetime | None = None
    error: str | None = None


class OutboxItem(Doc):
    id: str = Field(default_factory=new_id)
    customer_id: str
    idempotency_key: str
    type: str
    payload: dict[str, Any]
    integration_id: str | None = None
    status: Literal["queued", "sending", "sent", "dead"] = "queued"
    attempts: int = 0
    next_attempt_at: UtcDatetime = Field(default_factory=utcnow)
    lease_until: UtcDatetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)


class AppMessage(BaseModel):
    """The ``message`` of an app change event."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: ClientId | None = None
    text: str | None = None
    html: str | None = None
    subject: str | None = None
    external_message_id: ClientId | None = None
    external_thread_id: ClientId | None = None


class AppEvent(BaseModel):
    """A change event posted by the app to ``POST /events``: a message created, updated or deleted
    in the app, to be carried to the platform. ``id`` is the idempotency key."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: ClientId
    type: Literal["message.created", "message.updated", "message.deleted"]
    customer_id: ClientId
    platform: str = Field(min_length=1, max_length=64)
    chat_id: ClientId | None = None
    external_chat_id: ClientId | None = None
    message: AppMessage

    @model_validator(mode="after")
    def _complete(self) -> AppEvent:
        m = self.message
        if self.type == "message.created":
            if not (self.chat_id or self.external_chat_id):
                raise ValueError("message.created needs chatId or externalChatId")
            if not (m.text or m.html):
                raise ValueError("message.created needs message.text or message.html")
        elif not (m.id or m.external_message_id):
            raise ValueError(f"{self.type} needs message.id (the app's id) or message.externalMessageId")
        if self.type == "message.updated" and not (m.text or m.html):
            raise ValueError("message.updated needs message.text or message.html")
        return self
