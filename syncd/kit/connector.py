"""The connector interface every platform implements.

A connector owns transport: auth, endpoints, pagination, signatures, rate limits. Shape is
owned by the platform's manifest (``mappings/<platform>.yaml``): a connector hands raw
platform dicts to ``self.mapping`` and returns the universal data of ``syncd.universal``.
Connectors never touch the store or the engine.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from syncd.kit import signatures
from syncd.kit.errors import SignatureError
from syncd.kit.manifest import RateLimit
from syncd.kit.manifest_webhook import Webhook
from syncd.universal import (
    Changes,
    ChatData,
    FollowUp,
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
    from syncd.kit.jwks import KeySets
    from syncd.mapping import Mapping

#: A refresh grant: new full credentials made from the given (stored) ones, with no side effect.
Refresh = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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
    #: The platforms' published signing keys (``oidc`` verifiers), shared by every connector.
    key_sets: KeySets | None = None
    #: Runs a token refresh once per integration across replicas (see ``Connector.refresh_grant``):
    #: ``refresh_once(refresh, usable)`` returns the new credentials, either made by ``refresh``
    #: from the stored ones and stored, or another replica's fresh grant that ``usable`` accepts.
    refresh_once: Callable[[Refresh, Callable[[dict[str, Any]], bool]], Awaitable[dict[str, Any]]] | None = None


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
    #: Where a delivery to the platform's shared webhook URL (``/webhooks/{platform}``) names the
    #: account (its integration's own user id, as ``identify`` found it); None: no shared URL.
    shared_webhook_account: ClassVar[str | None] = None
    #: The OAuth connect flow of this platform, if it has one.
    oauth: ClassVar[OAuthSpec | None] = None
    #: The credential a creation token stands in for, where the platform opens a connect link
    #: with one (``connect_with_token``); None: no such flow.
    token_connect_credential: ClassVar[str | None] = None
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
    #: True where the connector can hold a long-lived listener (``listen``): a connection on
    #: which the platform says at once that something changed, which wakes the integration's
    #: poll. While it is up, scheduled polls are only a safety net every ``listen_poll_every_s``.
    can_listen: ClassVar[bool] = False
    listen_poll_every_s: ClassVar[float] = 300.0
    #: The manifest's ``webhook`` section (``with_manifest_webhook``): verifiers declared as data,
    #: which a platform module runs with ``verify_declared``.
    webhook_spec: ClassVar[Webhook] = Webhook()
    #: The platform's documented request budget (the manifest's ``api.rateLimit``): the
    #: importer opens as many lanes as reaching it takes. None: a fixed few.
    rate_limit: ClassVar[RateLimit | None] = None

    @classmethod
    def with_manifest_webhook(cls, webhook: Webhook, rate_limit: RateLimit | None = None) -> type[Connector]:
        """This class with its manifest's webhook section and rate limit, for a module that is
        not a ``ManifestConnector`` (which gets the whole manifest by ``bind``)."""
        return type(cls.__name__, (cls,), {"webhook_spec": webhook, "rate_limit": rate_limit,
                                           "__module__": cls.__module__, "__qualname__": cls.__qualname__})

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

    async def refresh_grant(self, refresh: Refresh, usable: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """New credentials after a refused or expiring access token. ``refresh`` makes them from
        the credentials it is given (the refresh grant); ``usable`` says whether credentials
        another replica stored meanwhile carry a token worth trying (not the refused one).
        Where the engine coordinates (``ctx.refresh_once``) one replica refreshes at a time and
        the others take its grant (a rotated refresh token used twice may revoke both); else
        ``refresh`` runs here and its result is handed to ``ctx.on_credentials``. The caller
        adopts what is returned."""
        if self.ctx.refresh_once is not None:
            return await self.ctx.refresh_once(refresh, usable)
        new = await refresh(self.credentials.model_dump(by_alias=True, exclude_none=True))
        if self.ctx.on_credentials is not None:
            await self.ctx.on_credentials(new)
        return new

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

    async def reconcile_send(self, message: OutgoingMessage) -> SendResult | None:
        """Whether an earlier attempt to send ``message`` (whose answer was lost) reached the
        platform: its result, or ``None`` to send it again. Called before a send is retried.
        Default ``None``: the platform offers no way to find out (or makes retries idempotent
        itself, as a retry key does)."""
        return None

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

    def webhook_scope(self, request: WebhookRequest) -> dict[str, Any]:
        """What the declared verifiers' templates read about a delivery and this integration."""
        return {"credentials": self.credentials.model_dump(by_alias=True), "settings": self.settings,
                "webhookUrl": self.ctx.webhook_url, "header": request.headers, "query": request.query,
                "url": request.url}

    @functools.cached_property
    def prepares_webhook(self) -> bool:
        """Whether ``prepare_webhook`` may have I/O to do for a delivery (an ``oidc`` verifier's
        keys, or a platform's own preparation); the inbox skips the call when not."""
        return type(self).prepare_webhook is not Connector.prepare_webhook \
            or any(v.type == "oidc" for v in self.webhook_spec.verify)

    async def prepare_webhook(self, request: WebhookRequest) -> None:
        """The I/O that verifying ``request`` needs before ``accept_webhook``: the published
        signing keys its token names are fetched (once per their cache lifetime)."""
        if self.ctx.key_sets is None or not any(v.type == "oidc" for v in self.webhook_spec.verify):
            return
        for root, path, kid in signatures.signing_keys_needed(self.webhook_spec.verify, request,
                                                              self.webhook_scope(request)):
            await self.ctx.key_sets.ensure(root, path, kid)

    def verify_declared(self, request: WebhookRequest) -> None:
        """Run the manifest's verifiers on ``request``; ``SignatureError`` if it fails them, or
        if none is declared (a class not bound to its manifest verifies nothing, so accepts nothing)."""
        if not self.webhook_spec.verify:
            raise SignatureError(f"{self.platform} declares no webhook verification")
        signatures.verify_declared(self.webhook_spec.verify_mode, self.webhook_spec.verify, request,
                                   self.webhook_scope(request), now=self.ctx.clock(),
                                   max_skew_s=self.ctx.webhook_max_skew_s, keys=self.ctx.key_sets)

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

    async def listen(self, signals: Listening) -> None:
        """Hold the listener (only where ``can_listen``): call ``signals.up()`` once it is
        established and ``signals.changed()`` whenever the platform says something changed
        (the engine then polls at once; the listener reads no data itself). Runs until
        cancelled; returning or raising means it dropped, and the engine connects it again
        under backoff. ``ListenerUnavailable``: this account cannot have one, polls alone
        serve it."""
        raise ListenerUnavailable(f"{self.platform} has no listener")

    async def follow_up(self, follow_ups: list[FollowUp], *, stored: bool) -> None:
        """Tell the platform that a delivery's records are stored (``stored``), or that storing
        them failed for good. Raising makes the engine retry the delivery (its ingest is
        idempotent). Default: nothing to tell."""
        return None

    async def connect_with_token(self, connect: dict[str, Any]) -> TokenConnection:
        """Trade the creation token this connector was built with (as its
        ``token_connect_credential``) for a new connection's credentials; ``connect`` is what
        the request's templates read (``id``, ``customerId``). Raises ``ProviderError``s."""
        raise NotImplementedError(f"{self.platform} has no creation-token connect flow")

    async def close(self) -> None:
        await self.http.aclose()


class ListenerUnavailable(Exception):
    """The account cannot hold a listener (the server lacks the extension, a setting turns it
    off): the engine stops trying and polls at the usual interval."""


class Listening(abc.ABC):
    """What a listener tells the engine."""

    @abc.abstractmethod
    def up(self) -> None:
        """The listener is established (polls become a safety net; one runs now to catch up)."""

    @abc.abstractmethod
    def changed(self) -> None:
        """The platform signalled a change: poll now."""


@dataclass(frozen=True)
class TokenConnection:
    """What a creation token was traded for: the integration's credentials and settings, the
    platform account it belongs to and the connection's name, where the platform said them."""

    credentials: dict[str, Any]
    settings: dict[str, Any]
    account: str | None = None
    name: str | None = None


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
