"""Microsoft Teams through Microsoft Graph: the account's 1:1, group and meeting chats, and the
channels of the teams it has joined.

Transport quirks kept here (shape lives in ``mappings/teams.yaml``):

- ids: a chat keeps Graph's id (``19:...@thread.v2``, ``19:..._...@unq.gbl.spaces``); a channel
  is ``teams/{teamId}/channels/{channelId}``, Graph's own path (no Graph id contains ``/``). A
  chatMessage id is unique only inside its chat or channel, so ``externalMessageId`` is
  ``{externalChatId}:{messageId}`` and threads are ``{externalChatId}:{rootMessageId}``. Chat ids
  contain colons and message ids never do, so a composed id is split on its LAST colon.
- paging: ``@odata.nextLink`` is an opaque absolute URL, requested verbatim; it is followed only
  on the Graph root's own origin, since the request carries our bearer token. ``$top`` <= 50.
- auth: a bearer token refreshed at Microsoft's token endpoint before it expires and once on a
  401; Microsoft rotates refresh tokens, so the new ones are handed to ``ctx.on_credentials``.
- inbound: change-notification subscriptions kept alive by ``maintain`` (chatMessage
  subscriptions live at most 60 minutes); the ``validationToken`` handshake; ``clientState``
  checked in constant time on every notification of a batch; lifecycle events (reauthorize,
  removed, missed); each changed message is fetched by its ``resource``.
- bodies: an html body also gets a plain ``text``; system event messages are not conversation
  content and are skipped; Graph's occasionally malformed timestamps (the docs' own sample has
  ``2021-03-1706:47:05.123Z``) are repaired or dropped instead of failing a whole page.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any, AsyncIterator, Awaitable, ClassVar, Iterable
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from syncd.config import DEFAULT_BASE_URLS
from syncd.providers.base import (
    Changes,
    ChatData,
    Connector,
    ConnectorContext,
    HistoryPage,
    MessageData,
    OAuthSpec,
    OutgoingMessage,
    PollResult,
    SendResult,
    UserData,
    WebhookAccepted,
    WebhookAnswer,
    WebhookRequest,
    body_digest,
)
from syncd.providers.errors import (
    AuthError,
    CursorExpired,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
    SignatureError,
    TransientError,
)
from syncd.providers.http import (
    Pages,
    ProviderHttp,
    RetryPolicy,
    default_classify,
    gather_bounded,
    parse_retry_after,
)

PAGE_SIZE = 50  # Graph's maximum $top for chats and messages
#: Graph refuses chatMessage subscriptions that live longer than 60 minutes; the margin absorbs
#: clock skew between us and Graph.
SUBSCRIPTION_LIFETIME_S = 58 * 60
RENEW_BEFORE_S = 20 * 60
TOKEN_MARGIN_S = 5 * 60
CHANGE_TYPES = "created,updated,deleted"
#: Parallel message fetches; Teams allows about 4 requests per second per chat or channel.
CONCURRENCY = 4
#: openid brings an id_token, whose ``tid`` says the account's tenant.
SCOPES = ("openid", "offline_access", "User.Read", "Chat.ReadWrite", "ChannelMessage.Send", "ChannelMessage.Read.All",
          "ChannelMessage.ReadWrite", "Team.ReadBasic.All", "Channel.ReadBasic.All")
#: A refresh asks for what was consented, whatever the list was then.
REFRESH_SCOPE = "https://graph.microsoft.com/.default offline_access"
THROTTLING_CODES = frozenset({"TooManyRequests", "activityLimitReached", "throttledRequest"})


class TeamsCredentials(BaseModel):
    """A delegated OAuth grant (``tenantId``, ``clientId``, ``clientSecret``, ``refreshToken``)
    or a bare ``accessToken``; ``clientState`` is the secret Graph echoes in notifications."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              hide_input_in_errors=True)

    tenant_id: str = Field(default="common", min_length=1, pattern=r"^[A-Za-z0-9.-]+$")
    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    access_token: str | None = Field(default=None, repr=False)
    #: When ``access_token`` expires (epoch seconds); kept so a restart refreshes in time.
    expires_at: float | None = None
    #: Graph limits clientState to 128 characters.
    client_state: str | None = Field(default=None, repr=False, min_length=16, max_length=128)

    @model_validator(mode="after")
    def _usable(self) -> "TeamsCredentials":
        if not self.access_token and not (self.client_id and self.client_secret and self.refresh_token):
            raise ValueError("give accessToken, or tenantId, clientId, clientSecret and refreshToken")
        return self

    @property
    def can_refresh(self) -> bool:
        return bool(self.client_id and self.client_secret and self.refresh_token)


def login_root() -> str:
    """Microsoft's identity platform, unless ``SYNCD_MICROSOFT_LOGIN_BASE_URL`` points elsewhere
    (a simulator, a national cloud)."""
    return (os.environ.get("SYNCD_MICROSOFT_LOGIN_BASE_URL") or DEFAULT_BASE_URLS["microsoft_login"]).rstrip("/")


class GraphBearer:
    """The ``authenticate`` hook: the current access token, swapped in place on refresh."""

    def __init__(self, token: str | None, expires_at: float | None):
        self.token = token
        self.expires_at = expires_at
        self.lock = asyncio.Lock()

    async def __call__(self, request: httpx.Request) -> None:
        # The token endpoint takes the refresh grant instead of a bearer token.
        if self.token and not request.url.path.endswith("/oauth2/v2.0/token"):
            request.headers["authorization"] = f"Bearer {self.token}"


def graph_error(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from Graph's ``{"error": {code, message}}`` or OAuth's ``{"error": code}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, error
    if isinstance(error, dict):
        code = str(error["code"]) if error.get("code") else None
        return code, str(error.get("message") or code or response.reason_phrase)[:300]
    return None, response.reason_phrase or "error"


def classify(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    code, message = graph_error(response)
    label = f"{status} {code}" if code else str(status)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    # Graph's 429 bodies vary (even "UnknownError" with no message): the status decides; a
    # 503 carrying Retry-After is throttling too.
    if status == 429 or code in THROTTLING_CODES or (status == 503 and retry_after is not None):
        raise RateLimited(f"throttled ({label})", status=status, code=code, retry_after=retry_after)
    if status == 401:
        raise AuthError(f"credentials rejected ({label})", status=status, code=code)
    if status >= 500 or status == 408:
        raise TransientError(f"server error ({label}): {message}", status=status, code=code)
    if status == 410:
        raise CursorExpired(f"paging or sync state expired ({label})", status=status, code=code)
    raise PermanentError(f"request failed ({label}): {message}", status=status, code=code)


def _classify_token(response: httpx.Response) -> None:
    if response.status_code in (400, 401):
        code, _ = graph_error(response)
        raise AuthError(f"token refresh rejected ({code or response.status_code})", status=401, code=code)
    default_classify(response)


# -- ids ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Where:
    """Where a chat's messages live in Graph."""

    external_chat_id: str
    path: str
    channel: bool


def locate(external_chat_id: str) -> Where:
    parts = external_chat_id.split("/")
    if len(parts) == 4 and parts[0] == "teams" and parts[2] == "channels" and parts[1] and parts[3]:
        return Where(external_chat_id, f"/teams/{_q(parts[1])}/channels/{_q(parts[3])}", True)
    if not external_chat_id or "/" in external_chat_id:
        raise PermanentError(f"not a Teams chat id: {external_chat_id!r}")
    return Where(external_chat_id, f"/chats/{_q(external_chat_id)}", False)


def channel_id(team_id: str, channel: str) -> str:
    return f"teams/{team_id}/channels/{channel}"


def compose(external_chat_id: str, message_id: str) -> str:
    return f"{external_chat_id}:{message_id}"


def split_message_id(value: str) -> tuple[str | None, str]:
    """``(externalChatId, messageId)`` of a composed id, split on the last colon; a bare Graph
    message id (no colon) gives ``(None, id)``."""
    chat, sep, message_id = value.rpartition(":")
    return (chat, message_id) if sep and chat else (None, value)


def _q(value: str) -> str:
    return quote(value, safe=":@.-_~")


_ODATA_KEY = re.compile(r"(\w+)\('([^']*)'\)")


def parse_resource(resource: str) -> tuple[str, str, str | None] | None:
    """A notification's ``resource`` -> ``(externalChatId, messageId, rootId)``; both Graph's
    forms, ``chats('x')/messages('y')`` and ``chats/x/messages/y``, channel replies included."""
    parts = [p for p in _ODATA_KEY.sub(r"\1/\2", resource).split("/") if p]
    if len(parts) > 2 and parts[0] == "users":
        parts = parts[2:]
    if len(parts) == 4 and (parts[0], parts[2]) == ("chats", "messages"):
        return parts[1], parts[3], None
    if len(parts) >= 6 and (parts[0], parts[2], parts[4]) == ("teams", "channels", "messages"):
        chat = channel_id(parts[1], parts[3])
        if len(parts) == 6:
            return chat, parts[5], None
        if len(parts) == 8 and parts[6] == "replies":
            return chat, parts[7], parts[5]
    return None


# -- timestamps and bodies --------------------------------------------------------------------------
_LOOSE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ]?(\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:?\d{2})?$")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def repair_time(value: str) -> str | None:
    """``value`` if ISO 8601, else its repair (a missing ``T``), else None."""
    if parse_time(value) is not None:
        return value
    match = _LOOSE_TIME.match(value.strip())
    fixed = f"{match[1]}T{match[2]}{match[3] or 'Z'}" if match else None
    return fixed if parse_time(fixed) is not None else None


def modified_at(raw: dict[str, Any]) -> datetime | None:
    return parse_time(repair_time(raw.get("lastModifiedDateTime") or ""))


def _repair(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.endswith("DateTime") and isinstance(value, str):
            out[key] = repair_time(value)
        elif isinstance(value, dict):
            out[key] = _repair(value)
        else:
            out[key] = value
    return out


def iso(when: float | datetime) -> str:
    """Graph's timestamp form: UTC, milliseconds, ``Z``."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, tz=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _PlainText(HTMLParser):
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("img", "emoji"):  # Teams emoji are <emoji alt="😄">; images may have alt text
            self.parts.append(dict(attrs).get("alt") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str | None:
    """The readable text of a Teams html body (tags dropped, entities decoded, one line per block)."""
    parser = _PlainText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line) or None


def _attachments(raw: dict[str, Any]) -> list[dict[str, Any]] | None:
    # A messageReference is a quoted message, not a file.
    items = [a for a in raw.get("attachments") or []
             if isinstance(a, dict) and a.get("contentType") != "messageReference"]
    return [{"name": a.get("name"), "mimeType": a.get("contentType"), "url": a.get("contentUrl"),
             "externalId": a.get("id")} for a in items] or None


def _jwt_claims(token: Any) -> dict[str, Any]:
    """The payload of a JWT, unverified (only read for the tenant id of our own token)."""
    try:
        payload = str(token).split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class TeamsConnector(Connector):
    platform: ClassVar[str] = "teams"
    Credentials: ClassVar[type[BaseModel]] = TeamsCredentials
    base_url_key: ClassVar[str | None] = "teams"
    maintain_every_s: ClassVar[float | None] = 15 * 60
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="/common/oauth2/v2.0/authorize", token_url="/common/oauth2/v2.0/token",
        scopes=SCOPES, base_url_key="microsoft_login", authorize_params=(("response_mode", "query"),),
    )

    def __init__(self, credentials: BaseModel, settings: dict[str, Any], ctx: ConnectorContext):
        super().__init__(credentials, settings, ctx)
        self.page_size = PAGE_SIZE
        auth = self.http.authenticate
        if not isinstance(auth, GraphBearer):  # an http built elsewhere (tests): adopt it
            auth = GraphBearer(credentials.access_token, credentials.expires_at)  # type: ignore[attr-defined]
            self.http.authenticate = auth
        self.auth = auth
        self.login_root = login_root()
        self._me: dict[str, Any] | None = None
        #: Chats whose name this process has already sent along with a notification.
        self._described: set[str] = set()

    @classmethod
    def make_http(cls, base_url: str, credentials: BaseModel, *, policy: RetryPolicy, timeout_s: float,
                  transport: httpx.AsyncBaseTransport | None = None) -> ProviderHttp:
        auth = GraphBearer(credentials.access_token, credentials.expires_at)  # type: ignore[attr-defined]
        return ProviderHttp(base_url or DEFAULT_BASE_URLS["teams"], classify=classify, authenticate=auth,
                            policy=policy, timeout_s=timeout_s, transport=transport)

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any],
                            settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        # An operator's own clientState in settings is used as given; a generated one goes into
        # the credentials, which are encrypted at rest and never returned by the API.
        if not credentials.get("clientState") and not settings.get("clientState"):
            credentials = {**credentials, "clientState": secrets.token_urlsafe(32)}
        return credentials, settings

    @classmethod
    def credentials_from_oauth(cls, token: dict[str, Any], *, client_id: str, client_secret: str) -> dict[str, Any]:
        claims = _jwt_claims(token.get("id_token")) or _jwt_claims(token.get("access_token"))
        credentials: dict[str, Any] = {
            "tenantId": str(claims.get("tid") or "common"), "clientId": client_id, "clientSecret": client_secret,
            "refreshToken": token.get("refresh_token"), "accessToken": token.get("access_token"),
            "clientState": secrets.token_urlsafe(32),
        }
        if token.get("expires_in"):
            credentials["expiresAt"] = int(time.time() + float(token["expires_in"]))
        return {k: v for k, v in credentials.items() if v is not None}

    # -- transport ------------------------------------------------------------------------
    def _client_state(self) -> str | None:
        return self.settings.get("clientState") or self.credentials.client_state  # type: ignore[attr-defined]

    def _expiring(self) -> bool:
        if not self.credentials.can_refresh:  # type: ignore[attr-defined]
            return False
        expires = self.auth.expires_at
        return not self.auth.token or (expires is not None and expires - self.ctx.clock() < TOKEN_MARGIN_S)

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One Graph call: the token refreshed first when it is about to expire, and once on a 401."""
        try:
            if self._expiring():
                await self._refresh(self.auth.token)
            used = self.auth.token
            try:
                response = await self.http.request(method, path, **kwargs)
            except AuthError as exc:
                if exc.status != 401 or not self.credentials.can_refresh:  # type: ignore[attr-defined]
                    raise
                await self._refresh(used)
                response = await self.http.request(method, path, **kwargs)
        except ProviderError as exc:
            self._scrub(exc)
            raise
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise PermanentError(f"{method}: the answer is not JSON", status=response.status_code) from None

    async def _refresh(self, used: str | None) -> None:
        async with self.auth.lock:
            if self.auth.token != used and not self._expiring():
                return  # a concurrent call refreshed it already
            c: TeamsCredentials = self.credentials  # type: ignore[assignment]
            response = await self.http.request(
                "POST", f"{self.login_root}/{_q(c.tenant_id)}/oauth2/v2.0/token", label="POST oauth2/v2.0/token",
                classify=_classify_token,
                data={"grant_type": "refresh_token", "client_id": c.client_id, "client_secret": c.client_secret,
                      "refresh_token": c.refresh_token, "scope": REFRESH_SCOPE},
            )
            try:
                token = response.json()
            except ValueError:
                token = {}
            if not isinstance(token, dict) or not token.get("access_token"):
                raise AuthError("token refresh answered without an access token", status=401)
            expires_at = int(self.ctx.clock() + float(token.get("expires_in") or 3600))
            update: dict[str, Any] = {"access_token": token["access_token"], "expires_at": expires_at}
            if token.get("refresh_token"):  # Microsoft rotates them: the old one may stop working
                update["refresh_token"] = token["refresh_token"]
            self.credentials = c.model_copy(update=update)
            self.auth.token, self.auth.expires_at = token["access_token"], expires_at
            if self.ctx.on_credentials is not None:
                await self.ctx.on_credentials(self.credentials.model_dump(by_alias=True, exclude_none=True))

    def _scrub(self, exc: ProviderError) -> None:
        c: TeamsCredentials = self.credentials  # type: ignore[assignment]
        text = str(exc.args[0]) if exc.args else ""
        for secret in (self.auth.token, c.access_token, c.refresh_token, c.client_secret, self._client_state()):
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        exc.args = (text,)

    def _follow(self, link: str) -> str:
        """A nextLink, verbatim, if it stays on the Graph root's origin (it gets our token)."""
        target, root = httpx.URL(link), httpx.URL(self.http.base_url)
        if not target.is_absolute_url:
            return str(root.join(link))
        if (target.scheme, target.host, target.port) != (root.scheme, root.host, root.port):
            raise PermanentError("an @odata.nextLink points outside the Graph root; not followed")
        return link

    async def _pages(self, path: str, params: dict[str, Any] | None, name: str) -> AsyncIterator[dict[str, Any]]:
        """Every page of a Graph collection, following ``@odata.nextLink``."""
        pages, url, query = Pages(name), path, params
        while True:
            page = await self._call("GET", url, params=query)
            yield page
            link = pages.advance(page.get("@odata.nextLink"))
            if link is None:
                return
            url, query = self._follow(link), None

    async def _each(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        return await gather_bounded(calls, CONCURRENCY)

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        self._me = await self._call("GET", "/me", params={"$select": "id,displayName,mail,userPrincipalName"})
        return [self.mapping.user(self._me, {"isSelf": True})]

    async def _my_id(self) -> str | None:
        if self._me is None:
            try:
                await self.identify()
            except (PermanentError, RetryableError):
                return None  # direction is also decided from user_platforms
        return (self._me or {}).get("id")

    def _chat(self, raw: dict[str, Any], me: str | None) -> ChatData:
        members = [m for m in raw.get("members") or [] if isinstance(m, dict)]
        names = [m["displayName"] for m in members if m.get("userId") != me and m.get("displayName")]
        ctx = {"externalChatId": raw.get("id"), "participants": [m["userId"] for m in members if m.get("userId")],
               "name": ", ".join(names) or None}
        return self.mapping.chat(_repair({**raw, "topic": raw.get("topic") or None}), ctx)

    def _channel_chat(self, team: dict[str, Any], channel: dict[str, Any]) -> ChatData:
        name = " / ".join(n for n in (team.get("displayName"), channel.get("displayName")) if n)
        ctx = {"externalChatId": channel_id(team["id"], channel["id"]), "name": name or None}
        return self.mapping.chat(_repair(channel), ctx)

    async def list_chats(self) -> list[ChatData]:
        me = await self._my_id()
        chats = [self._chat(raw, me) for raw in await self._all_chats()]
        return chats + await self._channels()

    async def _all_chats(self) -> list[dict[str, Any]]:
        raws: list[dict[str, Any]] = []
        params = {"$top": self.page_size, "$expand": "members,lastMessagePreview"}
        async for page in self._pages("/me/chats", params, "GET /me/chats"):
            raws += [r for r in page.get("value") or [] if isinstance(r, dict) and r.get("id")]
        return raws

    async def _teams(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(team, channel) of every channel of the joined teams; none without the Teams scopes."""
        found: list[tuple[dict[str, Any], dict[str, Any]]] = []
        try:
            async for page in self._pages("/me/joinedTeams", None, "GET /me/joinedTeams"):
                for team in page.get("value") or []:
                    async for channels in self._pages(f"/teams/{_q(team['id'])}/channels", None, "GET channels"):
                        found += [(team, c) for c in channels.get("value") or [] if c.get("id")]
        except PermanentError as exc:
            if exc.status != 403:
                raise
        return found

    async def _channels(self) -> list[ChatData]:
        return [self._channel_chat(team, channel) for team, channel in await self._teams()]

    # -- messages -------------------------------------------------------------------------
    def _map(self, raw: dict[str, Any], where: Where) -> MessageData | None:
        """One chatMessage; ``None`` for system events (joins, renames, calls)."""
        if raw.get("messageType", "message") != "message" or not raw.get("id"):
            return None
        raw = _repair(raw)
        body = raw.get("body") or {}
        content = body.get("content") if isinstance(body.get("content"), str) else None
        is_html = str(body.get("contentType", "")).lower() == "html"
        sender = ((raw.get("from") or {}).get("user") or {}).get("id")
        me = (self._me or {}).get("id")
        ctx = {
            "chat": where.external_chat_id,
            "html": content if is_html and content else None,
            "text": (html_to_text(content) if is_html else content) if content else None,
            # In a channel every root post opens a thread; chats have no threads.
            "threadRoot": raw.get("replyToId") or (raw["id"] if where.channel else None),
            "attachments": _attachments(raw),
            "fromSelf": bool(me and sender == me),
        }
        return self.mapping.message(raw, ctx)

    def _tombstone(self, where: Where, message_id: str, root: str | None) -> MessageData:
        ctx = {"chat": where.external_chat_id, "goneAt": iso(self.ctx.clock()), "threadRoot": root}
        return self.mapping.message({"id": message_id}, ctx)

    def _mapped(self, raws: Iterable[dict[str, Any]], where: Where) -> list[MessageData]:
        return [m for m in (self._map(r, where) for r in raws) if m is not None]

    async def _replies(self, where: Where, root: str, since: datetime | None = None) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        path = f"{where.path}/messages/{_q(root)}/replies"
        async for page in self._pages(path, {"$top": self.page_size}, "GET replies"):
            replies += [r for r in page.get("value") or [] if since is None or (modified_at(r) or since) > since]
        return replies

    async def _with_replies(self, where: Where, roots: list[dict[str, Any]],
                            since: datetime | None = None) -> list[dict[str, Any]]:
        if not where.channel:
            return roots
        threads = await self._each(self._replies(where, r["id"], since) for r in roots if r.get("id"))
        return [m for root, replies in zip(roots, threads) for m in (root, *replies)]

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        where = locate(chat.external_chat_id)
        url, params = (self._follow(cursor), None) if cursor else (f"{where.path}/messages", {"$top": self.page_size})
        try:
            page = await self._call("GET", url, params=params)
        except CursorExpired:
            raise
        except PermanentError as exc:
            if cursor and exc.status == 400:  # a skiptoken Graph no longer takes: start over
                raise CursorExpired("the saved @odata.nextLink was refused", status=400, code=exc.code) from None
            if exc.status == 404:  # the chat is gone or we left it: nothing more to read
                return HistoryPage(messages=[])
            raise
        next_link = page.get("@odata.nextLink") or None
        if next_link is not None and next_link == cursor:
            raise PermanentError("chat messages: pagination token repeated; stopping")
        raws = await self._with_replies(where, [r for r in page.get("value") or [] if isinstance(r, dict)])
        await self._my_id()
        return HistoryPage(self._mapped(raws, where), next_link)

    # -- export ---------------------------------------------------------------------------
    @staticmethod
    def _bare(value: str, where: Where) -> str:
        chat, message_id = split_message_id(value)
        if chat is not None and chat != where.external_chat_id:
            raise PermanentError("the message id belongs to another chat")
        return message_id

    def _message_path(self, message: OutgoingMessage, where: Where) -> str:
        if not message.external_message_id:
            raise PermanentError("the message has no Teams id yet")
        message_id = self._bare(message.external_message_id, where)
        root = self._bare(message.external_thread_id, where) if where.channel and message.external_thread_id else None
        if root and root != message_id:
            return f"{where.path}/messages/{_q(root)}/replies/{_q(message_id)}"
        return f"{where.path}/messages/{_q(message_id)}"

    async def send(self, message: OutgoingMessage) -> SendResult:
        where = locate(message.external_chat_id)
        body = self.mapping.outgoing("send", message)
        path = f"{where.path}/messages"
        if where.channel and message.external_thread_id:  # chats have no threads: a plain post
            path += f"/{_q(self._bare(message.external_thread_id, where))}/replies"
        mapped = self._map(await self._call("POST", path, json=body), where)
        if mapped is None:
            raise PermanentError("Graph answered the send without a chat message")
        return SendResult(mapped.external_message_id, mapped.sent_at, mapped.external_thread_id)

    async def edit(self, message: OutgoingMessage) -> SendResult:
        where = locate(message.external_chat_id)
        path = self._message_path(message, where)
        await self._call("PATCH", path, json=self.mapping.outgoing("edit", message))
        try:
            # PATCH answers 204: the message itself says when Graph recorded the edit, so the
            # notification that follows matches it.
            mapped = self._map(await self._call("GET", path), where)
        except (PermanentError, RetryableError):
            mapped = None
        if mapped is None:
            return SendResult(message.external_message_id or "", external_thread_id=message.external_thread_id)
        return SendResult(mapped.external_message_id, mapped.sent_at, mapped.external_thread_id,
                          edited_at=mapped.edited_at)

    async def delete(self, message: OutgoingMessage) -> None:
        where = locate(message.external_chat_id)
        try:
            await self._call("POST", self._message_path(message, where) + "/softDelete")
        except PermanentError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    # -- webhooks -------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        token = request.query.get("validationToken")
        if token is not None:
            # Graph checks reachability: 200, text/plain, the URL-decoded token, within 10 s.
            return WebhookAccepted(None, WebhookAnswer(200, token, "text/plain"))
        notifications = self._verified(request.body)
        return WebhookAccepted(self._delivery_id(request.body, notifications), WebhookAnswer(202, b"", "text/plain"))

    def _verified(self, body: bytes) -> list[dict[str, Any]]:
        """The batch's notifications, every one carrying our clientState; else SignatureError."""
        expected = self._client_state()
        if not expected:
            raise SignatureError("teams: this integration has no clientState; notifications are refused")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SignatureError("teams: the delivery is not JSON") from None
        items = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
            raise SignatureError("teams: not a change-notification batch")
        for item in items:
            given = item.get("clientState")
            # One wrong clientState refuses the whole batch: it was not all sent by Graph for us.
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
                raise SignatureError("teams: clientState missing or wrong")
        return items

    def _delivery_id(self, body: bytes, notifications: list[dict[str, Any]]) -> str:
        digest = body_digest(body)
        # An `updated` notification without resource data carries no version: two edits of one
        # message arrive as identical bytes, and deduplicating them would drop the second. Those
        # are deduplicated within the second only (a replay); fetching twice is harmless.
        if any(n.get("changeType") == "updated" and not (n.get("resourceData") or {}).get("lastModifiedDateTime")
               for n in notifications):
            return f"{digest}:{int(self.ctx.clock())}"
        return digest

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        changes = Changes()
        targets: dict[tuple[str, str, str | None], None] = {}
        for item in json.loads(request.body)["value"]:
            event = item.get("lifecycleEvent")
            if event == "missed":
                changes.resync_requested = True
            elif event == "reauthorizationRequired":
                if not await self._reauthorize(str(item.get("subscriptionId") or "")):
                    changes.poll_requested = True
            elif event == "subscriptionRemoved":
                # maintain recreates it (Graph no longer lists it); a poll covers the gap.
                changes.poll_requested = True
            elif not event:
                resource = item.get("resource") or (item.get("resourceData") or {}).get("@odata.id") or ""
                target = parse_resource(str(resource))
                if target is not None:
                    targets[target] = None
        fetched = await self._each(self._fetch(*target) for target in targets)
        changes.messages = [m for m in fetched if m is not None]
        changes.chats = await self._describe(dict.fromkeys(m.external_chat_id for m in changes.messages))
        return changes

    async def _fetch(self, chat: str, message_id: str, root: str | None) -> MessageData | None:
        where = locate(chat)
        tail = f"{_q(root)}/replies/{_q(message_id)}" if root else _q(message_id)
        try:
            raw = await self._call("GET", f"{where.path}/messages/{tail}")
        except PermanentError as exc:
            if exc.status == 404:  # hard-deleted since the notification
                return self._tombstone(where, message_id, root)
            raise
        await self._my_id()
        return self._map(raw, where)

    async def _describe(self, chats: Iterable[str]) -> list[ChatData]:
        """Names of chats this process has not described yet, so a new chat arrives named."""
        out: list[ChatData] = []
        for chat in chats:
            if chat in self._described:
                continue
            where = locate(chat)
            try:
                if where.channel:
                    team_id = chat.split("/")[1]
                    team = await self._call("GET", f"/teams/{_q(team_id)}", params={"$select": "id,displayName"})
                    out.append(self._channel_chat(team, await self._call("GET", where.path)))
                else:
                    raw = await self._call("GET", where.path, params={"$expand": "members"})
                    out.append(self._chat(raw, await self._my_id()))
            except PermanentError:
                pass  # no name then; the messages are stored all the same
            self._described.add(chat)
        return out

    # -- polling --------------------------------------------------------------------------
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        marks: dict[str, str] = dict(state or {})
        # "*" is when the first mark was taken (before the import read history): chats with no
        # mark of their own are read from there.
        baseline = marks.setdefault("*", iso(self.ctx.clock()))
        if state is None:
            return PollResult(Changes(), marks)
        await self._my_id()
        targets, new_chats = list(chats), []
        if self.settings.get("importChats") is None:
            new_chats = await self._new_chats({c.external_chat_id for c in chats}, parse_time(baseline))
            targets += new_chats
        messages: list[MessageData] = []
        for chat in targets:
            mark = parse_time(marks.get(chat.external_chat_id, baseline)) or parse_time(baseline)
            since = mark - timedelta(seconds=lookback_s)
            found, newest = await self._changed_since(locate(chat.external_chat_id), since)
            messages += found
            marks[chat.external_chat_id] = iso(max(mark, newest or mark))
        return PollResult(Changes(messages=messages, chats=new_chats), marks)

    async def _new_chats(self, known: set[str], since: datetime | None) -> list[ChatData]:
        """Chats we do not have yet whose last message is newer than ``since`` (a new DM)."""
        me, found = await self._my_id(), []
        for raw in await self._all_chats():
            last = parse_time(repair_time(((raw.get("lastMessagePreview") or {}).get("createdDateTime")) or ""))
            if raw["id"] not in known and last is not None and since is not None and last > since:
                found.append(self._chat(raw, me))
        return found

    async def _changed_since(self, where: Where, since: datetime) -> tuple[list[MessageData], datetime | None]:
        """Messages modified after ``since``, newest first, and the newest modification time."""
        raws: list[dict[str, Any]] = []
        odata_since = iso(since)
        if where.channel:
            # Channel messages have no $orderby: the delta function filters root posts by time.
            path, params = f"{where.path}/messages/delta", {"$filter": f"lastModifiedDateTime gt {odata_since}"}
        else:
            path, params = f"{where.path}/messages", {
                "$top": self.page_size, "$orderby": "lastModifiedDateTime desc",
                "$filter": f"lastModifiedDateTime gt {odata_since}"}
        try:
            async for page in self._pages(path, params, f"GET {path.rsplit('/', 1)[-1]} since"):
                batch = [r for r in page.get("value") or [] if isinstance(r, dict)]
                fresh = [r for r in batch if (modified_at(r) or since) > since]
                raws += fresh
                if len(fresh) < len(batch):
                    break  # reached the mark
        except PermanentError as exc:
            if exc.status in (403, 404):  # gone, or we left it: one lost chat must not stop the poll
                return [], None
            raise
        raws = await self._with_replies(where, raws, since)
        times = [modified_at(r) for r in raws]
        return self._mapped(raws, where), max((t for t in times if t is not None), default=None)

    # -- staying connected ---------------------------------------------------------------
    async def maintain(self, state: Any) -> Any:
        """Keep one change-notification subscription per wanted resource alive: create what is
        missing (never made, expired, or removed by Graph), renew what expires within 20
        minutes, delete what is no longer wanted. State: ``{"subscriptions": {resource: {id,
        expiresAt[, error]}}}``."""
        known: dict[str, dict[str, Any]] = dict((state or {}).get("subscriptions") or {})
        if not self.ctx.public_webhooks:
            return {"subscriptions": known, "note": "no SYNCD_PUBLIC_URL: Graph cannot reach syncd; polling only"}
        rotated = not self._client_state()
        if rotated:
            await self._new_client_state()
        # New credentials may carry a new clientState: subscriptions made with the old one
        # would have every notification refused. A fingerprint (never the secret) tells.
        fingerprint = hashlib.sha256(str(self._client_state()).encode()).hexdigest()[:16]
        rotated = rotated or (state or {}).get("clientStateId", fingerprint) != fingerprint
        wanted = await self._wanted_resources()
        live: dict[str, dict[str, Any]] = {}
        async for page in self._pages("/subscriptions", None, "GET /subscriptions"):
            live.update({s["id"]: s for s in page.get("value") or [] if isinstance(s, dict) and s.get("id")})
        if rotated:
            # Graph cannot change a subscription's clientState: the old ones go, new ones come.
            ours = {e.get("id") for e in known.values()} | {
                i for i, s in live.items() if s.get("notificationUrl") == self.ctx.webhook_url}
            for subscription_id in filter(None, ours):
                await self._unsubscribe(subscription_id)
            live, known = {}, {}
        subscriptions: dict[str, dict[str, Any]] = {}
        for resource in wanted:
            entry = known.get(resource) or {}
            current = live.get(entry.get("id", "")) or next(
                (s for s in live.values() if s.get("notificationUrl") == self.ctx.webhook_url
                 and s.get("resource") == resource), None)
            try:
                if current is None:
                    subscriptions[resource] = await self._subscribe(resource)
                elif (parse_time(current.get("expirationDateTime")) or datetime.min.replace(tzinfo=timezone.utc)) \
                        .timestamp() - self.ctx.clock() < RENEW_BEFORE_S:
                    subscriptions[resource] = await self._renew(current["id"], resource)
                else:
                    subscriptions[resource] = {"id": current["id"], "expiresAt": current.get("expirationDateTime")}
            except AuthError:
                raise
            except ProviderError as exc:  # kept and retried on the next run; the others go on
                subscriptions[resource] = {**entry, "error": str(exc)[:300]}
        for resource, entry in known.items():
            if resource not in subscriptions and entry.get("id"):
                await self._unsubscribe(entry["id"])
        return {"subscriptions": subscriptions, "clientStateId": fingerprint}

    async def _unsubscribe(self, subscription_id: str) -> None:
        try:
            await self._call("DELETE", f"/subscriptions/{_q(subscription_id)}")
        except (PermanentError, RetryableError):
            pass  # it expires within the hour anyway

    async def _new_client_state(self) -> None:
        """Credentials replaced without a clientState (``PUT .../credentials`` does not run
        ``prepare_credentials``): make one and store it with the credentials."""
        self.credentials = self.credentials.model_copy(update={"client_state": secrets.token_urlsafe(32)})
        if self.ctx.on_credentials is not None:
            await self.ctx.on_credentials(self.credentials.model_dump(by_alias=True, exclude_none=True))

    async def _wanted_resources(self) -> list[str]:
        override = self.settings.get("subscriptionResources")
        if isinstance(override, list) and override:
            return [str(r) for r in override]
        only = self.settings.get("importChats")
        channels = [channel_id(t["id"], c["id"]) for t, c in await self._teams()]
        if only is not None:
            chats = [c for c in only if not locate(c).channel]
            return [f"{locate(c).path}/messages" for c in chats] + [
                f"{locate(c).path}/messages" for c in channels if c in only]
        me = await self._my_id()
        if not me:
            raise TransientError("teams: cannot tell the account's user id; subscriptions wait")
        return [f"/users/{me}/chats/getAllMessages"] + [f"{locate(c).path}/messages" for c in channels]

    def _expiry(self) -> str:
        return iso(self.ctx.clock() + SUBSCRIPTION_LIFETIME_S)

    async def _subscribe(self, resource: str) -> dict[str, Any]:
        created = await self._call("POST", "/subscriptions", json={
            "changeType": CHANGE_TYPES, "notificationUrl": self.ctx.webhook_url,
            "lifecycleNotificationUrl": self.ctx.webhook_url, "resource": resource,
            "expirationDateTime": self._expiry(), "clientState": self._client_state(),
        })
        return {"id": created["id"], "expiresAt": created.get("expirationDateTime")}

    async def _renew(self, subscription_id: str, resource: str) -> dict[str, Any]:
        try:
            renewed = await self._call("PATCH", f"/subscriptions/{_q(subscription_id)}",
                                       json={"expirationDateTime": self._expiry()})
        except PermanentError as exc:
            if exc.status != 404:
                raise
            return await self._subscribe(resource)  # expired or removed in the meantime
        return {"id": subscription_id, "expiresAt": renewed.get("expirationDateTime")}

    async def _reauthorize(self, subscription_id: str) -> bool:
        """Renewing a subscription reauthorizes it; False when Graph no longer has it."""
        if not subscription_id:
            return False
        try:
            await self._call("PATCH", f"/subscriptions/{_q(subscription_id)}",
                             json={"expirationDateTime": self._expiry()})
        except PermanentError as exc:
            if exc.status == 404:
                return False
            raise
        return True


CONNECTOR = TeamsConnector
