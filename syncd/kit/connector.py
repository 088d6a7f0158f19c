"""The connector interface every platform implements.

A connector owns transport: auth, endpoints, pagination, signatures, rate limits. Shape is
owned by the platform's manifest (``mappings/<platform>.yaml``): a connector hands raw
platform dicts to ``self.mapping`` and returns the universal data of ``syncd.universal``.
Connectors never touch the store or the engine.
"""

from __future__ import annotations

import abc
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from syncd.universal import (
    Changes,
    ChatData,
    HistoryPage,
    OutgoingMessage,
    PollResult,
    SendResult,
    UserData,
    WebhookAccepted,
    WebhookRequest,
)

if TYPE_CHECKING:
    import httpx

    from syncd.kit.http import ProviderHttp, RetryPolicy
    from syncd.mapping import Mapping

@dataclass
class ConnectorContext:
    """What the engine hands a connector: its HTTP client, mapping and a few settings."""

    http: ProviderHttp
    mapping: Mapping
    webhook_url: str
    #: False when no ``SYNCD_PUBLIC_URL`` is configured: platforms cannot reach our webhooks,
    #: so connectors that can should poll instead (a long-poll API).
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
    #: True where ``list_users`` can name the platform's users (the engine then keeps them in
    #: ``user_platforms`` and names the senders of messages that carry only an id).
    can_list_users: ClassVar[bool] = False

    #: Which ``SYNCD_<KEY>_BASE_URL`` / documented API root this connector talks to (several
    #: platforms share one, e.g. one vendor's Graph API).
    base_url_key: ClassVar[str | None] = None
    #: How often ``maintain`` must run (webhook subscriptions and watches expire); None = never.
    maintain_every_s: ClassVar[float | None] = None
    #: This platform's poll interval when it differs from ``SYNCD_POLL_INTERVAL_S`` (e.g. a
    #: long-poll fallback that is the only inbound channel).
    poll_every_s: ClassVar[float | None] = None
    #: Headers of a delivery that ``parse_webhook`` reads later (stored with it in the inbox).
    keep_headers: ClassVar[tuple[str, ...]] = ()
    #: Query parameters of a delivery that carry a secret: never stored.
    secret_query: ClassVar[tuple[str, ...]] = ()
    #: The OAuth connect flow of this platform, if it has one.
    oauth: ClassVar[OAuthSpec | None] = None
    #: How often every imported chat is re-read in full, by default (``settings.fullSyncEveryS``
    #: overrides it per integration, 0 turns it off): what increments cannot see, messages gone
    #: at the platform and edits no event announced, is found then. Ignored without history.
    full_sync_every_s: ClassVar[float | None] = 86400
    #: What a disconnect cannot undo at the platform because syncd did not set it up there
    #: (a webhook URL pasted into the platform's console): told to the user, who removes it.
    manual_teardown: ClassVar[str | None] = None
    #: Settings that are secrets (a webhook secret an operator chose): the engine keeps them
    #: with the encrypted credentials, where the connector reads them, and never answers them.
    secret_settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any], settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Fill in what syncd generates itself (a webhook secret token, a clientState) before
        the credentials are validated and stored. Must not do I/O."""
        return credentials, settings

    @classmethod
    def setup(cls, generated: dict[str, Any], webhook_url: str) -> dict[str, Any] | None:
        """What the user must paste at the platform of the credentials syncd ``generated``
        (``prepare_credentials``), shown once in the creation answer, the only place a
        generated secret is ever answered: e.g. a push endpoint URL that carries its token.
        ``None``: nothing to paste. Must not do I/O."""
        return None

    @classmethod
    def credentials_from_oauth(
        cls, token: dict[str, Any], *, client_id: str, client_secret: str
    ) -> dict[str, Any]:
        """The integration credentials made from the OAuth token endpoint's answer (only for
        platforms with ``oauth``). Must not do I/O."""
        raise NotImplementedError(f"{cls.platform} has no OAuth connect flow")

    @classmethod
    async def finish_oauth(cls, credentials: dict[str, Any], http: ProviderHttp) -> dict[str, Any]:
        """Complete what the token answer alone cannot give (e.g. a page id and page token
        come from ``/me/accounts``). ``http`` is a client on the platform's API root that
        carries no credentials. Default: unchanged."""
        return credentials

    if TYPE_CHECKING:
        # Every connector defines it (``ManifestConnector`` for the manifest platforms).
        @classmethod
        def make_http(cls, base_url: str, credentials: BaseModel, *, policy: RetryPolicy, timeout_s: float,
                      transport: httpx.AsyncBaseTransport | None = None) -> ProviderHttp: ...

    def __init__(self, credentials: BaseModel, settings: dict[str, Any], ctx: ConnectorContext):
        self.credentials = credentials
        self.settings = settings
        self.ctx = ctx

    @property
    def http(self) -> ProviderHttp:
        return self.ctx.http

    @property
    def mapping(self) -> Mapping:
        return self.ctx.mapping

    # -- identity and chats -------------------------------------------------------------
    @abc.abstractmethod
    async def identify(self) -> list[UserData]:
        """The connected account's own identities (``is_self=True``); checks the credentials."""

    @abc.abstractmethod
    async def list_chats(self) -> list[ChatData]:
        """Every chat the account can read, with real names, following all pages."""

    async def list_users(self) -> list[UserData]:
        """The platform's users the account can see, with names, following all pages (only
        where ``can_list_users``). Default: none."""
        return []

    @abc.abstractmethod
    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        """One page of ``chat``'s history from ``cursor`` (``None`` = the first page)."""

    # -- export ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def edit(self, message: OutgoingMessage) -> SendResult:
        from syncd.kit.errors import PermanentError

        raise PermanentError(f"{self.platform} does not support editing messages")

    async def delete(self, message: OutgoingMessage) -> None:
        from syncd.kit.errors import PermanentError

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

    async def unsubscribe(self, state: Any) -> None:
        """Undo at the platform what ``maintain`` set up (delete subscriptions, remove the
        webhook, stop the watch), on disconnect. ``state`` is what ``maintain`` returned last
        (``None`` if it never ran). Raises ``ProviderError`` when the platform could not be
        reached, so the engine retries; what is already gone is not an error. Default: nothing
        to undo."""
        return None

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
    #: How ``scopes`` are joined in the ``scope`` parameter (some platforms: ","; OAuth 2.0: " ").
    scope_separator: str = " "


def body_digest(body: bytes) -> str:
    """A stable delivery id for platforms whose deliveries carry none."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
