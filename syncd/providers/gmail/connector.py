"""Gmail: email threads are chats, emails are messages.

Transport only: OAuth bearer auth with refresh-on-401, Google's error envelope, ``pageToken``
paging, MIME decoding (``mime.py``), RFC 2822 composition for replies, Pub/Sub push
verification and ``history.list`` polling. Shape lives in ``mappings/gmail.yaml``.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import hashlib
import json
import os
import re
import secrets
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, ClassVar, cast
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from syncd.kit.connector import Connector, ConnectorContext, OAuthSpec, body_digest
from syncd.kit.errors import (
    AuthError,
    CursorExpired,
    PermanentError,
    ProviderError,
    RateLimited,
    SignatureError,
    TransientError,
)
from syncd.kit.http import (
    Pages,
    ProviderHttp,
    RetryPolicy,
    default_classify,
    gather_bounded,
    parse_retry_after,
)
from syncd.providers.mime import b64_decode, b64url_encode, decode_payload, header_dict
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

API = "/gmail/v1/users/me"
METADATA_HEADERS = ["Subject", "From", "To", "Cc"]
HISTORY_TYPES = ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
RATE_LIMIT_REASONS = {"userRateLimitExceeded", "rateLimitExceeded"}
#: Parallel threads/messages fetches; Gmail counts concurrent requests per user.
CONCURRENCY = 8
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
#: Re-run ``maintain`` this often; the watch itself is renewed only when it nears expiry.
WATCH_CHECK_EVERY_S = 6 * 3600
#: Renew a watch that expires sooner than this (Google: re-watch within 7 days, ideally daily).
WATCH_RENEW_BEFORE_S = 24 * 3600

#: The documented root (its manifest declares it too; ``SYNCD_GMAIL_BASE_URL`` replaces it).
GMAIL_ROOT = "https://gmail.googleapis.com"
#: The documented root (its manifest declares it too; ``SYNCD_GOOGLE_OAUTH_BASE_URL`` replaces it).
GOOGLE_OAUTH_ROOT = "https://oauth2.googleapis.com"



class GmailCredentials(BaseModel):
    """What an integration needs; secrets are kept out of ``repr``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    access_token: str = Field(min_length=1, repr=False)
    email_address: str
    refresh_token: str | None = Field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    #: The secret ``token`` query parameter of the Pub/Sub push endpoint URL.
    push_token: str | None = Field(default=None, repr=False)

    @field_validator("email_address")
    @classmethod
    def _valid_email(cls, value: str) -> str:
        value = value.strip()
        if not _EMAIL.match(value):
            raise ValueError("must be an email address such as user@example.com")
        return value


def default_token_url(base_url: str) -> str:
    """Google's token endpoint, unless the API root points elsewhere (a simulator or proxy
    serves ``/token`` on its own root) or ``SYNCD_GOOGLE_OAUTH_BASE_URL`` says otherwise."""
    env = os.environ.get("SYNCD_GOOGLE_OAUTH_BASE_URL")
    if env:
        return env.rstrip("/") + "/token"
    if base_url.rstrip("/") == GMAIL_ROOT:
        return GOOGLE_OAUTH_ROOT + "/token"
    return base_url.rstrip("/") + "/token"


class GoogleBearer:
    """The ``authenticate`` hook: the current access token, swapped in place on refresh."""

    def __init__(self, token: str, token_url: str):
        self.token = token
        self.token_url = token_url
        self.lock = asyncio.Lock()

    async def __call__(self, request: httpx.Request) -> None:
        if str(request.url) != self.token_url:  # the token endpoint takes the refresh grant instead
            request.headers["authorization"] = f"Bearer {self.token}"


def google_error(response: httpx.Response) -> tuple[str, str | None]:
    """``(error.message, errors[0].reason)`` from Google's error envelope, tolerating junk."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str):  # the OAuth endpoint: {"error": "invalid_grant", ...}
        return error, error
    if not isinstance(error, dict):
        return response.reason_phrase or "error", None
    reasons = [e.get("reason") for e in error.get("errors") or [] if isinstance(e, dict)]
    reason = next((r for r in reasons if r), None) or error.get("status")
    return str(error.get("message") or reason or "error")[:300], reason


def classify(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    message, reason = google_error(response)
    if status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS):
        raise RateLimited(
            f"rate limited ({status} {reason or 'rateLimited'})",
            status=status,
            code=reason,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    if status >= 500 or status == 408:
        raise TransientError(f"server error ({status}): {message}", status=status, code=reason)
    if status == 401:
        raise AuthError("credentials rejected (401)", status=status, code=reason)
    raise PermanentError(f"request failed ({status}): {message}", status=status, code=reason)


def _classify_history(response: httpx.Response) -> None:
    if response.status_code == 404:
        raise CursorExpired("startHistoryId is too old; a full resync is needed", status=404)
    classify(response)


def _classify_token(response: httpx.Response) -> None:
    if response.status_code in (400, 401):
        _, reason = google_error(response)
        raise AuthError(f"token refresh rejected ({reason or response.status_code})", status=401, code=reason)
    default_classify(response)


def decode_push(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Pub/Sub push body -> ``(message, data)``; ``data`` is ``{emailAddress, historyId}``."""
    try:
        envelope = json.loads(body)
        message = envelope["message"]
        data = json.loads(b64_decode(message["data"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"gmail: not a Pub/Sub push envelope ({type(exc).__name__})") from None
    if not isinstance(data, dict) or "historyId" not in data:
        raise SignatureError("gmail: Pub/Sub push data carries no historyId")
    return message, data


def id_token_claims(id_token: str) -> dict[str, Any]:
    """The claims of an OpenID Connect ID token, without checking its signature.

    Only for a token received straight from Google's token endpoint over TLS, which OpenID
    Connect Core 1.0 §3.1.3.7 allows in place of the signature check; never for a token that
    reached us any other way.
    """
    try:
        _, payload, _ = id_token.split(".")
        claims = json.loads(b64_decode(payload))
    except ValueError:
        raise ValueError("id_token is not a JWT") from None
    if not isinstance(claims, dict):
        raise ValueError("id_token is not a JWT")
    return claims


def reply_subject(subject: str | None) -> str:
    subject = (subject or "").strip()
    if not subject or re.match(r"(?i)^re\s*:", subject):
        return subject
    return f"Re: {subject}"


class GmailConnector(Connector):
    credentials: GmailCredentials  # validated against ``Credentials`` by the caller
    #: The push subscription's shared token rides in the URL's query: never stored.
    secret_query = ("token",)
    platform: ClassVar[str] = "gmail"
    Credentials: ClassVar[type[BaseModel]] = GmailCredentials
    can_edit: ClassVar[bool] = False
    maintain_every_s: ClassVar[float | None] = WATCH_CHECK_EVERY_S
    #: ``openid email`` make the token endpoint answer an id_token naming the mailbox, so the
    #: credentials are complete without another call; ``offline`` + ``consent`` get a refresh token.
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(
        authorize_url="{google_accounts}/o/oauth2/v2/auth",
        token_url="/token",
        scopes=("https://www.googleapis.com/auth/gmail.modify", "openid", "email"),
        base_url_key="google_oauth",
        authorize_params=(("access_type", "offline"), ("prompt", "consent"), ("include_granted_scopes", "true")),
    )

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any],
                            settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A push token is generated when none is given: without one every Pub/Sub push would
        be refused and the integration would only poll."""
        if not (credentials.get("pushToken") or credentials.get("push_token")):
            credentials = {**credentials, "pushToken": secrets.token_urlsafe(32)}
        return credentials, settings

    @classmethod
    def setup(cls, generated: dict[str, Any], webhook_url: str) -> dict[str, Any] | None:
        """The Pub/Sub push subscription's endpoint: the webhook URL with the generated token."""
        token = generated.get("pushToken")
        if not token:
            return None
        return {"webhookUrl": f"{webhook_url}?{urlencode({'token': token})}",
                "where": "Pub/Sub push subscription of settings.pubsubTopic: Endpoint URL"}

    @classmethod
    def credentials_from_oauth(cls, token: dict[str, Any], *, client_id: str, client_secret: str) -> dict[str, Any]:
        """Tokens, the OAuth client (so the access token can be refreshed) and the mailbox
        address from the id_token's ``email`` claim."""
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ValueError("Google answered without an access_token")
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ValueError("Google answered without an id_token; the flow must request the 'openid email' scopes")
        claims = id_token_claims(id_token)
        if claims.get("aud") != client_id:
            raise ValueError("the id_token was issued to another OAuth client")
        address = claims.get("email")
        if not isinstance(address, str) or claims.get("email_verified") is False:
            raise ValueError("the id_token carries no verified email address")
        credentials = {"accessToken": access_token, "emailAddress": address, "clientId": client_id,
                       "clientSecret": client_secret}
        if token.get("refresh_token"):
            credentials["refreshToken"] = token["refresh_token"]
        return credentials

    def __init__(self, credentials: BaseModel, settings: dict[str, Any], ctx: ConnectorContext):
        super().__init__(credentials, settings, ctx)
        #: A new access token after a refresh, for the engine to store: ``{"accessToken": ...}``.
        self.refreshed_credentials: dict[str, str] | None = None
        self.page_size = 500  # Gmail's maximum for threads.list and history.list
        auth = self.http.authenticate
        if not isinstance(auth, GoogleBearer):  # an http built elsewhere (tests): adopt it
            auth = GoogleBearer(self.credentials.access_token, default_token_url(self.http.base_url))
            self.http.authenticate = auth
        self.auth = auth

    @classmethod
    def make_http(
        cls,
        base_url: str,
        credentials: BaseModel,
        *,
        policy: RetryPolicy,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        token_url: str | None = None,
    ) -> ProviderHttp:
        base_url = (base_url or GMAIL_ROOT).rstrip("/")
        token = cast(GmailCredentials, credentials).access_token  # validated against ``Credentials``
        auth = GoogleBearer(token, token_url or default_token_url(base_url))
        return ProviderHttp(
            base_url, classify=classify, authenticate=auth, policy=policy, timeout_s=timeout_s, transport=transport
        )

    # -- transport ------------------------------------------------------------------------
    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One Gmail API call; a 401 refreshes the access token once and retries once."""
        used = self.auth.token
        try:
            try:
                response = await self.http.request(method, API + path, **kwargs)
            except AuthError as exc:
                if exc.status != 401 or not self._can_refresh():
                    raise
                await self._refresh(used)
                response = await self.http.request(method, API + path, **kwargs)
        except ProviderError as exc:
            self._scrub(exc)
            raise
        return response.json() if response.content else {}

    def _can_refresh(self) -> bool:
        c = self.credentials
        return bool(c.refresh_token and c.client_id and c.client_secret)

    async def _refresh(self, used: str) -> None:
        async with self.auth.lock:
            if self.auth.token != used:  # a concurrent call refreshed it already
                return
            new = await self.refresh_grant(self._refresh_grant, lambda stored: stored.get("accessToken") != used)
            self.credentials = GmailCredentials.model_validate(new)
            self.auth.token = self.credentials.access_token
            self.refreshed_credentials = {"accessToken": self.auth.token}

    async def _refresh_grant(self, current: dict[str, Any]) -> dict[str, Any]:
        """The refresh grant at Google's token endpoint, from the stored credentials."""
        c = GmailCredentials.model_validate(current)
        response = await self.http.request(
            "POST",
            self.auth.token_url,
            label="POST oauth2 token",
            classify=_classify_token,
            data={
                "grant_type": "refresh_token",
                "refresh_token": c.refresh_token,
                "client_id": c.client_id,
                "client_secret": c.client_secret,
            },
        )
        token = response.json().get("access_token")
        if not token:
            raise AuthError("token refresh answered without an access token", status=401)
        return {**current, "accessToken": token}

    def _scrub(self, exc: ProviderError) -> None:
        c = self.credentials
        text = str(exc.args[0]) if exc.args else ""
        for secret in (self.auth.token, c.access_token, c.refresh_token, c.client_secret):
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
        exc.args = (text,)

    async def _each(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        return await gather_bounded(calls, CONCURRENCY)

    # -- identity and chats ---------------------------------------------------------------
    async def identify(self) -> list[UserData]:
        return [self.mapping.user(await self._call("GET", "/profile"))]

    async def list_chats(self) -> list[ChatData]:
        ids: list[str] = []
        pages, token = Pages("gmail threads.list"), None
        while True:
            params: dict[str, Any] = {"maxResults": self.page_size}
            if token:
                params["pageToken"] = token
            page = await self._call("GET", "/threads", params=params)
            ids += [t["id"] for t in page.get("threads") or []]
            token = pages.advance(page.get("nextPageToken"))
            if not token:
                break
        chats = await self._each(self._thread_chat(thread_id) for thread_id in dict.fromkeys(ids))
        return [c for c in chats if c is not None]

    async def _thread_chat(self, thread_id: str) -> ChatData | None:
        """A thread's name (its subject) and participants, from one metadata-only fetch."""
        try:
            thread = await self._call(
                "GET", f"/threads/{thread_id}", params={"format": "metadata", "metadataHeaders": METADATA_HEADERS}
            )
        except PermanentError as exc:
            if exc.status == 404:  # deleted since it was listed
                return None
            raise
        messages = [m for m in thread.get("messages") or [] if "DRAFT" not in (m.get("labelIds") or [])]
        if not messages:
            return None
        subject, participants, last = None, [], None
        for message in messages:
            headers = header_dict((message.get("payload") or {}).get("headers"))
            subject = subject or headers.get("subject")
            values = [headers[h] for h in ("from", "to", "cc") if headers.get(h)]
            participants += [a.lower() for _, a in email.utils.getaddresses(values) if a]
            if message.get("internalDate"):
                last = max(last or 0, int(message["internalDate"]))
        raw = {"id": thread_id, "subject": subject, "participants": list(dict.fromkeys(participants)),
               "lastInternalDate": last}
        return self.mapping.chat(raw)

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        try:
            thread = await self._call("GET", f"/threads/{chat.external_chat_id}", params={"format": "full"})
        except PermanentError as exc:
            if exc.status == 404:  # the whole thread is gone: nothing of it remains
                return HistoryPage(messages=[])
            raise
        messages = [self._message(m) for m in thread.get("messages") or []]
        return HistoryPage(messages=[m for m in messages if m is not None])

    def _message(self, resource: dict[str, Any]) -> MessageData | None:
        """Map one ``format=full`` message resource; drafts are not messages yet."""
        labels = resource.get("labelIds") or []
        if "DRAFT" in labels:
            return None
        payload = resource.get("payload") or {}
        headers = header_dict(payload.get("headers"))
        body = decode_payload(payload)
        source: dict[str, Any] = {
            "id": resource.get("id"),
            "threadId": resource.get("threadId"),
            "internalDate": resource.get("internalDate"),
            "labelIds": labels,
            "snippet": resource.get("snippet"),
            "headers": headers,
            "text": body.text,
            "html": body.html,
            "attachments": body.attachments,
            "isSent": "SENT" in labels,
            "isTrash": "TRASH" in labels,
        }
        if headers.get("date"):
            try:
                source["dateMs"] = int(email.utils.parsedate_to_datetime(headers["date"]).timestamp() * 1000)
            except (TypeError, ValueError):
                pass  # an unparseable Date header: internalDate is the real answer anyway
        if source["isTrash"]:
            source["trashedAt"] = int(self.ctx.clock() * 1000)
        return self.mapping.message(source)

    # -- export ---------------------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> SendResult:
        fields = self.mapping.outgoing("send", message)
        me = self.credentials.email_address
        recipients = [a for a in fields.get("participants") or [] if a.lower() != me.lower()]
        fallback = fields.get("replyToSender")
        if not recipients and fallback and fallback.lower() != me.lower():
            recipients = [fallback]
        if not recipients:
            raise PermanentError("gmail: nobody to send to (the thread has no participant but the account)")
        mail = EmailMessage()
        mail["From"] = me
        mail["To"] = ", ".join(recipients)
        mail["Subject"] = reply_subject(fields.get("subject"))
        mail["Date"] = email.utils.formatdate(usegmt=True)
        rfc_id = self._message_id(message)
        mail["Message-ID"] = rfc_id
        references = fields.get("references")
        if fields.get("inReplyTo"):
            mail["In-Reply-To"] = fields["inReplyTo"]
            references = " ".join(r for r in (references, fields["inReplyTo"]) if r)
            mail["References"] = references
        mail.set_content(fields.get("text") or "")
        if fields.get("html"):
            mail.add_alternative(fields["html"], subtype="html")
        body: dict[str, Any] = {"raw": b64url_encode(mail.as_bytes(policy=email.policy.SMTP))}
        if fields.get("threadId"):
            body["threadId"] = fields["threadId"]
        sent = await self._call("POST", "/messages/send", json=body)
        extra = {"rfcMessageId": rfc_id}
        if references:
            extra["references"] = references
        return SendResult(external_message_id=sent["id"], external_thread_id=sent.get("threadId"), extra=extra)

    def _message_id(self, message: OutgoingMessage) -> str:
        """The RFC Message-ID of an app message: the same for every attempt to send it, so a
        send whose answer was lost can be found by it (``reconcile_send``)."""
        me = self.credentials.email_address
        if not message.app_message_id:
            return email.utils.make_msgid(domain=me.rsplit("@", 1)[-1])
        digest = hashlib.sha256(f"{me.lower()}\n{message.app_message_id}".encode()).hexdigest()[:32]
        return f"<syncd.{digest}@{me.rsplit('@', 1)[-1]}>"

    async def reconcile_send(self, message: OutgoingMessage) -> SendResult | None:
        """The email an earlier attempt sent, found by its Message-ID; ``None`` if it never arrived."""
        if not message.app_message_id:
            return None
        rfc_id = self._message_id(message)
        found = await self._call("GET", "/messages", params={"q": f"rfc822msgid:{rfc_id.strip('<>')}",
                                                             "includeSpamTrash": "true", "maxResults": 1})
        hits = found.get("messages") or []
        if not hits:
            return None
        return SendResult(external_message_id=hits[0]["id"], external_thread_id=hits[0].get("threadId"),
                          extra={"rfcMessageId": rfc_id})

    async def delete(self, message: OutgoingMessage) -> None:
        fields = self.mapping.outgoing("delete", message)
        try:
            await self._call("POST", f"/messages/{fields['id']}/trash")
        except PermanentError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    # -- webhooks -------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        # The push token or Google's OIDC token, as mappings/gmail.yaml declares.
        self.verify_declared(request)
        message, _ = decode_push(request.body)
        delivery_id = message.get("messageId") or message.get("message_id")
        return WebhookAccepted(delivery_id=str(delivery_id) if delivery_id else body_digest(request.body))

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        _, data = decode_push(request.body)
        if str(data.get("emailAddress", "")).lower() != self.credentials.email_address.lower():
            return Changes()
        # The push carries only a historyId; history.list from our stored mark has the rest.
        return Changes(poll_requested=True)

    # -- staying connected ---------------------------------------------------------------
    async def maintain(self, state: Any) -> Any:
        """Keep a ``users.watch`` on the Pub/Sub topic of ``settings.pubsubTopic`` alive.

        State: ``{historyId, expiration (epoch ms), topicName}``. Without a topic there is no
        push at all (polls only) and nothing to keep: ``None``.
        """
        topic = self.settings.get("pubsubTopic")
        if not topic:
            return None
        now_ms = int(self.ctx.clock() * 1000)
        if (isinstance(state, dict) and state.get("topicName") == topic
                and int(state.get("expiration") or 0) - now_ms > WATCH_RENEW_BEFORE_S * 1000):
            return state
        answer = await self._call("POST", "/watch", json={"topicName": topic})
        return {"historyId": str(answer["historyId"]), "expiration": int(answer["expiration"]), "topicName": topic}

    async def unsubscribe(self, state: Any) -> None:
        """``users.stop``: the mailbox stops publishing to the Pub/Sub topic. Without a watch
        there is nothing to stop."""
        if (isinstance(state, dict) and state.get("topicName")) or self.settings.get("pubsubTopic"):
            await self._call("POST", "/stop")

    # -- polling --------------------------------------------------------------------------
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        # history.list is exact (every change since the mark), so lookback_s is not needed.
        if not state or not state.get("historyId"):
            profile = await self._call("GET", "/profile")
            return PollResult(Changes(), {"historyId": str(profile["historyId"])})
        changed, deleted, latest = await self._history(str(state["historyId"]))
        fetched = await self._each(self._fetch(mid, tid) for mid, tid in changed.items())
        messages: list[MessageData] = []
        for (mid, tid), resource in zip(changed.items(), fetched):
            if resource is None:
                deleted[mid] = tid
            elif (mapped := self._message(resource)) is not None:
                messages.append(mapped)
        gone_at = datetime.fromtimestamp(self.ctx.clock(), tz=UTC)
        messages += [
            MessageData(external_chat_id=tid or "", external_message_id=mid, deleted_at=gone_at)
            for mid, tid in deleted.items()
        ]
        known = {c.external_chat_id for c in chats}
        new_threads = {m.external_chat_id for m in messages if m.deleted_at is None} - known
        new_chats = await self._each(self._thread_chat(t) for t in sorted(new_threads))
        changes = Changes(messages=messages, chats=[c for c in new_chats if c is not None])
        return PollResult(changes, {"historyId": latest})

    async def _history(self, start: str) -> tuple[dict[str, str | None], dict[str, str | None], str]:
        """Message ids changed and deleted since ``start`` (id -> threadId), and the new mark."""
        changed: dict[str, str | None] = {}
        deleted: dict[str, str | None] = {}
        latest = start
        pages, token = Pages("gmail history.list"), None
        while True:
            params: list[tuple[str, Any]] = [("startHistoryId", start), ("maxResults", self.page_size)]
            params += [("historyTypes", t) for t in HISTORY_TYPES]
            if token:
                params.append(("pageToken", token))
            page = await self._call("GET", "/history", params=params, classify=_classify_history)
            for record in page.get("history") or []:
                for key in ("messagesAdded", "labelsAdded", "labelsRemoved"):
                    for item in record.get(key) or []:
                        m = item.get("message") or {}
                        if m.get("id") and m["id"] not in deleted:
                            changed[m["id"]] = m.get("threadId")
                for item in record.get("messagesDeleted") or []:
                    m = item.get("message") or {}
                    if m.get("id"):
                        changed.pop(m["id"], None)
                        deleted[m["id"]] = m.get("threadId")
            latest = str(page.get("historyId") or latest)
            token = pages.advance(page.get("nextPageToken"))
            if not token:
                return changed, deleted, latest

    async def _fetch(self, message_id: str, thread_id: str | None) -> dict[str, Any] | None:
        """``messages.get`` format=full; ``None`` when it was deleted in the meantime."""
        try:
            return await self._call("GET", f"/messages/{message_id}", params={"format": "full"})
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise


CONNECTOR = GmailConnector
