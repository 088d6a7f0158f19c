"""The connector that runs a manifest: every operation is a declared request.

A platform with no module gets ``ManifestConnector`` bound to its manifest; a platform's module
subclasses it and overrides single operations (offset polling, a MIME body), never
the whole connector. The class attributes the engine reads (``has_history``, ``can_edit``,
``poll_every_s`` ...) come from the manifest's capabilities and intervals (``bind``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, cast
from urllib.parse import parse_qsl, urlsplit

import httpx
from pydantic import BaseModel

from syncd.kit import handshakes, paging, signatures, signed, templates
from syncd.kit.accepting import AcceptPlan, compile_accept
from syncd.kit.auth import ManifestAuth
from syncd.kit.classify import classifier
from syncd.kit.connector import Connector, TokenConnection, body_digest
from syncd.kit.credentials import credentials_model, generate_missing, secret_values
from syncd.kit.errors import (
    AlreadyDone,
    AuthError,
    MalformedDelivery,
    PermanentError,
    ProviderError,
    SignatureError,
)
from syncd.kit.http import Pages, ProviderHttp, RetryPolicy
from syncd.kit.manifest import Manifest, Request
from syncd.kit.manifest_webhook import EventRule, Selection
from syncd.universal import (
    Changes,
    ChatData,
    FollowUp,
    HistoryPage,
    MessageData,
    OutgoingMessage,
    PollResult,
    SendResult,
    UserData,
    WebhookAccepted,
    WebhookAnswer,
    WebhookRequest,
)

#: A webhook template that reads the request URL (``{urlQuery}`` reads the query alone).
_READS_URL = re.compile(r"\{(url|publicUrl)\}")
#: Answers of ``fetch`` requests kept per connector before the cache starts over.
_FETCH_CACHE_MAX = 1000

_MODELS: dict[str, type[BaseModel]] = {"message": MessageData, "chat": ChatData, "user": UserData}


def _scope_credentials(credentials: BaseModel) -> dict[str, Any]:
    return credentials.model_dump(by_alias=True)


class _ParsedOnce:
    """``parse(request)`` run at most once for one delivery (verifying, answering a challenge
    and picking the delivery id each read it); its ``MalformedDelivery`` is raised again to
    each reader. Every reader gets the same document: they only read it."""

    def __init__(self, parse: Callable[[WebhookRequest], Any], request: WebhookRequest):
        self.parse, self.request = parse, request
        self.value: Any = None
        self.error: MalformedDelivery | None = None
        self.done = False

    def __call__(self) -> Any:
        if not self.done:
            try:
                self.value = self.parse(self.request)
            except MalformedDelivery as exc:
                self.error = exc
            self.done = True
        if self.error is not None:
            raise self.error
        return self.value

    def as_json(self) -> Any:
        """The document, or ``None`` when the body is not JSON (what a JSON challenge reads)."""
        try:
            return self()
        except MalformedDelivery:
            return None


class _RefreshRefused(Exception):
    """The token endpoint refused the refresh grant (the request then fails as it came)."""


class ManifestConnector(Connector):
    """A platform described by ``manifest``; see the module docstring."""

    manifest: ClassVar[Manifest]
    #: Items per page asked where a request says ``{pageSize}``; ``None``: the manifest's
    #: ``api.pageSize``. Set on a class or a connector to shrink pages (tests, benchmarks).
    page_limit: ClassVar[int | None] = None
    #: The manifest's settings defaults (set by ``bind``).
    setting_defaults: ClassVar[dict[str, Any]] = {}
    #: Whether a webhook template of the manifest reads ``{formSorted}`` (set by ``bind``).
    signs_form: ClassVar[bool] = True
    #: Whether one reads ``{url}`` or ``{publicUrl}`` (set by ``bind``).
    reads_url: ClassVar[bool] = True
    #: Whether a verifier reads its signature from the parsed body (set by ``bind``).
    signs_document: ClassVar[bool] = True

    @classmethod
    def bind(cls, manifest: Manifest) -> type[ManifestConnector]:
        """This class (or a platform module's subclass) made for ``manifest``."""
        caps, every = manifest.capabilities, manifest.intervals
        webhook_text = manifest.webhook.model_dump_json()
        attrs: dict[str, Any] = {
            "manifest": manifest, "platform": manifest.platform, "webhook_spec": manifest.webhook,
            "can_edit": caps.edit, "can_delete": caps.delete, "has_history": caps.history,
            "can_poll": caps.poll, "can_list_users": caps.list_users, "maintain_every_s": every.maintain_s, "poll_every_s": every.poll_s,
            "base_url_key": manifest.api.base_url_key if manifest.api else None,
            "rate_limit": manifest.api.rate_limit if manifest.api else None,
            "keep_headers": tuple(h.lower() for h in manifest.webhook.keep_headers),
            "manual_teardown": manifest.webhook.manual_teardown,
            "secret_query": tuple(v.param for v in manifest.webhook.verify if v.param),
            "shared_webhook_account": manifest.webhook.shared.account if manifest.webhook.shared else None,
            "token_connect_credential": (manifest.connect.creation_token.credential
                                         if manifest.connect.creation_token else None),
            # Only a manifest whose webhook templates sign the sorted form pays for parsing
            # every delivery's body as a form.
            "setting_defaults": {name: spec.default for name, spec in manifest.settings.items()
                                 if spec.default is not None},
            "signs_form": "{formSorted}" in webhook_text,
            # Likewise the request URL (built from the ASGI scope) for those that read it, and
            # the parsed body for those whose signature is in it.
            "reads_url": bool(_READS_URL.search(webhook_text)),
            "signs_document": any(v.path for v in manifest.webhook.verify),
        }
        if every.full_sync_s is not None:
            attrs["full_sync_every_s"] = every.full_sync_s
        if "Credentials" not in cls.__dict__:
            attrs["Credentials"] = credentials_model(manifest)
        return type(f"{cls.__name__}[{manifest.platform}]", (cls,), attrs)

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any], settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return generate_missing(cls.manifest, credentials), settings

    @classmethod
    def setup(cls, generated: dict[str, Any], webhook_url: str) -> dict[str, Any] | None:
        """Each generated credential that declares where it is pasted at the platform, with its
        value: shown once, in the creation answer."""
        shown = {name: spec for name, spec in cls.manifest.credentials.items()
                 if spec.generate and spec.setup and generated.get(name)}
        fields: list[dict[str, Any]] = [{"field": name, "where": spec.setup, "value": generated[name]}
                                        for name, spec in shown.items()]
        if not fields:
            return None
        answer: dict[str, Any] = {"webhookUrl": webhook_url, "fields": fields}
        # The webhook URL is ``{publicUrl}/webhooks/{platform}/{integrationId}`` (config).
        public_url, _, rest = webhook_url.rpartition("/webhooks/")
        platform, _, integration_id = rest.partition("/")
        for field, spec in zip(fields, shown.values(), strict=True):
            if spec.link is not None:
                scope = {"publicUrl": public_url, "integrationId": integration_id, "platform": platform,
                         "value": field["value"]}
                field["url"] = answer[spec.link.name] = templates.render(spec.link.url, scope)
        return answer

    @classmethod
    def secrets(cls, credentials: BaseModel) -> list[str]:
        """Every secret value of these credentials (to scrub from any platform text)."""
        values = environment(cls.manifest)
        return [*secret_values(cls.manifest, credentials),
                *(values[name] for name, spec in cls.manifest.environment.items() if spec.secret and values.get(name))]

    @classmethod
    def make_http(cls, base_url: str, credentials: BaseModel, *, policy: RetryPolicy, timeout_s: float,
                  transport: httpx.AsyncBaseTransport | None = None) -> ProviderHttp:
        api = cls.manifest.api
        scope = {"credentials": _scope_credentials(credentials)}
        given = str(scope["credentials"].get(api.root_credential) or "") if api and api.root_credential else ""
        if given.startswith(("https://", "http://")):
            base_url = given.rstrip("/")
        classify = classifier(cls.manifest.errors, secret_values(cls.manifest, credentials))
        return ProviderHttp(
            base_url, classify=classify, auth=ManifestAuth(cls.manifest.auth, scope),
            policy=policy, timeout_s=(api.timeout_s if api and api.timeout_s else timeout_s),
            transport=transport, headers=dict(api.headers) if api else None,
        )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        auth = getattr(self.http, "auth", None)
        if isinstance(auth, ManifestAuth) and self.manifest.auth.type == "oauth2":
            auth.refresh = self.refresh_token

    async def refresh_token(self) -> bool:
        """OAuth 2's refresh grant at the declared ``tokenUrl``: the new access token (and a
        rotated refresh token) go into the credentials the requests read, and are stored."""
        token_field = _field_of(self.manifest.auth.token)
        used = _scope_credentials(self.credentials).get(token_field)
        try:
            updated = await self.refresh_grant(self._refresh_grant, lambda stored: stored.get(token_field) != used)
        except _RefreshRefused:
            return False
        self.credentials = type(self.credentials).model_validate(updated)
        cast(ManifestAuth, self.http.auth).scope["credentials"] = _scope_credentials(self.credentials)
        return True

    async def _refresh_grant(self, current: dict[str, Any]) -> dict[str, Any]:
        spec, scope = self.manifest.auth, {**self.scope(), "credentials": current}
        form = templates.without_none({
            "grant_type": "refresh_token", "refresh_token": templates.render(spec.refresh_token, scope),
            "client_id": templates.render(spec.client_id, scope), "client_secret": templates.render(spec.client_secret, scope),
        })
        url = templates.render(spec.token_url, scope)
        response = await self.http.client.post(url if "://" in str(url) else f"{self.http.base_url}{url}", data=form,
                                            headers=self.http.headers)
        answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or not isinstance(answer, dict) or not answer.get("access_token"):
            raise _RefreshRefused()
        updated = dict(current)
        updated[_field_of(spec.token)] = answer["access_token"]
        if answer.get("refresh_token"):
            updated[_field_of(spec.refresh_token)] = answer["refresh_token"]
        return updated

    # -- requests ---------------------------------------------------------------------------
    def scope(self, **more: Any) -> dict[str, Any]:
        """What templates read: credentials, settings, the webhook URL, the page size, ``more``."""
        page_size = self.page_limit or (self.manifest.api.page_size if self.manifest.api else 100)
        return {"credentials": self._credentials_view(), "settings": {**self.setting_defaults, **self.settings},
                "webhookUrl": self.ctx.webhook_url, "pageSize": page_size, "environment": environment(self.manifest),
                **more}

    def _credentials_view(self) -> dict[str, Any]:
        """The credentials as templates read them, dumped once per credentials object (every
        webhook delivery reads them; a refresh replaces the object, so it is dumped again).
        Templates only read it."""
        cached = self.__dict__.get("_credentials_dumped")
        if cached is None or cached[0] is not self.credentials:
            cached = self.__dict__["_credentials_dumped"] = (self.credentials, _scope_credentials(self.credentials))
        return cast(dict[str, Any], cached[1])

    def _url(self, spec: Request, scope: dict[str, Any], next_url: str | None) -> str:
        if next_url is not None:
            if spec.paginator is not None and spec.paginator.rebase:
                next_url = self._rebased(next_url)
            if not next_url.startswith(self.http.base_url + "/") and not next_url.startswith("/"):
                raise PermanentError("a next-page URL outside the platform's API root was refused")
            return next_url
        prefix = (templates.render(self.manifest.auth.prefix, scope, templates.path_segment)
                  if self.manifest.auth.type == "path" else "")
        path = templates.render(spec.path, scope, templates.path_segment)
        if path is None:
            raise PermanentError(f"the request path {spec.path!r} has a value missing")
        return f"{prefix or ''}{path}"

    def _rebased(self, url: str) -> str:
        """``url`` on the configured root: its path below the documented root's path, its query."""
        if url.startswith(self.http.base_url + "/"):
            return url
        parts = urlsplit(url)
        documented = urlsplit(self.manifest.api.root).path.rstrip("/") if self.manifest.api else ""
        path = parts.path[len(documented):] if documented and parts.path.startswith(documented + "/") else parts.path
        return f"{self.http.base_url}{path}" + (f"?{parts.query}" if parts.query else "")

    async def call(self, name: str, spec: Request, scope: dict[str, Any], *, cursor: str | None = None,
                   body: dict[str, Any] | None = None,
                   headers: dict[str, Any] | None = None) -> tuple[httpx.Response, Any]:
        """Send one declared request; the answer and its JSON (``None`` if not JSON)."""
        api = self.manifest.api
        if api is not None and api.root_credential and not scope["credentials"].get(api.root_credential):
            raise AuthError(f"the API is not configured yet: {api.root_credential} is not set")
        params = templates.without_none(templates.render(spec.params, scope))
        if body is None and spec.body is not None:
            body = templates.without_none(templates.render(spec.body, scope))
        next_url = paging.apply(spec.paginator, cursor, params, body)
        # A next-page URL carries its own query; params given with it would replace that query.
        kwargs: dict[str, Any] = {"params": params if next_url is None else None}
        if spec.headers or headers:
            kwargs["headers"] = templates.without_none(
                {**templates.render(spec.headers, scope), **{k: str(v) for k, v in (headers or {}).items() if v is not None}})
        if body is not None and spec.method != "GET":
            kwargs["json" if spec.encoding == "json" else "data"] = body
        response = await self.http.request(spec.method, self._url(spec, scope, next_url), label=name, **kwargs)
        try:
            return response, response.json()
        except ValueError:
            return response, None

    def records(self, spec: Request | Selection, doc: Any, scope: dict[str, Any]) -> list[tuple[Any, Any]]:
        selector = spec.records or "."
        conditions = spec.where if isinstance(spec, Request) else spec.when
        return [(r, p) for r, p in templates.select(doc, selector)
                if isinstance(r, dict)
                and all(templates.matches(r, c, {**scope, "parent": p, "root": doc}) for c in conditions)]

    def map_as(self, kind: str, section: str, record: dict[str, Any], ctx: dict[str, Any]) -> Any:
        return self.mapping.validated(section, _MODELS[kind], record, ctx)

    async def walk(self, name: str, spec: Request, kind: str, scope: dict[str, Any]) -> list[Any]:
        """Every record of every page of ``spec``, mapped as ``kind``."""
        out, pages, cursor = [], Pages(name), None
        while True:
            page, cursor = await self.page(name, spec, kind, scope, cursor)
            out += page
            if pages.advance(cursor) is None:
                return out

    async def page(self, name: str, spec: Request, kind: str, scope: dict[str, Any],
                   cursor: str | None) -> tuple[list[Any], str | None]:
        found, after = await self.page_records(name, spec, scope, cursor)
        ctx = templates.render(spec.ctx, scope)
        return [self.map_as(kind, spec.map or kind, r, {**ctx, "parent": p}) for r, p in found], after

    async def page_records(self, name: str, spec: Request, scope: dict[str, Any],
                           cursor: str | None) -> tuple[list[tuple[Any, Any]], str | None]:
        """The ``(record, parent)`` pairs of one page, unmapped, and the next cursor."""
        response, body = await self.call(name, spec, scope, cursor=cursor)
        found = self.records(spec, body, scope)
        if spec.paginator is not None and spec.paginator.stop_on_empty and not any(
                isinstance(r, dict) for r, _ in templates.select(body, spec.records or ".")):
            after = None  # checked first: such a log may name the same page again
        else:
            after = paging.next_cursor(spec.paginator, response, body, len(found), cursor, name)
        return await self.expand(name, spec, body, found, scope), after

    async def expand(self, name: str, spec: Request, body: Any, found: list[tuple[Any, Any]],
                     scope: dict[str, Any]) -> list[tuple[Any, Any]]:
        """The records of one page of request ``name``, plus any it only points to (thread
        replies that a platform lists under another request); a module overrides this.
        Default: the page's own records."""
        return found

    async def walk_records(self, name: str, spec: Request, scope: dict[str, Any]) -> list[tuple[Any, Any]]:
        """Every ``(record, parent)`` of every page of ``spec``, unmapped."""
        out, pages, cursor = [], Pages(name), None
        while True:
            found, cursor = await self.page_records(name, spec, scope, cursor)
            out += found
            if pages.advance(cursor) is None:
                return out

    async def connect_with_token(self, connect: dict[str, Any]) -> TokenConnection:
        spec = self.manifest.connect.creation_token
        if spec is None:
            return await super().connect_with_token(connect)
        _, answer = await self.call(spec.request, self.named(spec.request), self.scope(connect=connect))
        credentials = {name: templates.lookup(answer, path) for name, path in spec.credentials.items()}
        missing = [path for name, path in spec.credentials.items() if not isinstance(credentials[name], str)
                   or not credentials[name]]
        if missing:
            raise PermanentError(f"the platform's answer has no {', '.join(missing)}")

        def said(path: str | None) -> str | None:
            value = templates.lookup(answer, path) if path else None
            return str(value) if isinstance(value, (str, int)) and str(value) else None

        return TokenConnection(credentials=credentials, settings=dict(spec.settings),
                               account=said(spec.account), name=said(spec.name))

    def named(self, name: str) -> Request:
        """The manifest's named request ``name`` (``requests.named``)."""
        spec = self.manifest.requests.named.get(name)
        if spec is None:
            raise PermanentError(f"{self.platform} declares no named request {name!r}")
        return spec

    def required(self, name: str) -> Request:
        spec = getattr(self.manifest.requests, name)
        if spec is None:
            raise PermanentError(f"{self.platform} declares no {name} request")
        return spec

    # -- identity, chats, users, history -----------------------------------------------------
    async def identify(self) -> list[UserData]:
        spec = self.manifest.requests.identify
        if spec is None:
            return []
        _, body = await self.call("identify", spec, self.scope())
        ctx = templates.render(spec.ctx, self.scope())
        return [self.map_as("user", spec.map or "user", r, {**ctx, "parent": p}).model_copy(update={"is_self": True})
                for r, p in self.records(spec, body, self.scope())]

    async def list_chats(self) -> list[ChatData]:
        spec = self.manifest.requests.list_chats
        return await self.walk("list_chats", spec, "chat", self.scope()) if spec else []

    async def list_users(self) -> list[UserData]:
        spec = self.manifest.requests.list_users
        return await self.walk("list_users", spec, "user", self.scope()) if spec else []

    async def fetch_history_page(self, chat: ChatData, cursor: str | None) -> HistoryPage:
        spec = self.manifest.requests.history
        if spec is None:
            return HistoryPage([], None)  # a platform that keeps no history (bots)
        messages, after = await self.page("history", spec, "message", self.scope(chat=chat.model_dump(by_alias=True)), cursor)
        return HistoryPage(messages, after)

    # -- export -------------------------------------------------------------------------------
    async def _outgoing(self, name: str, message: OutgoingMessage) -> tuple[httpx.Response, Any]:
        spec = self.required(name)
        source = message.as_source()
        scope = self.scope(message=source, chat=source["chat"])
        section = spec.body_mapping or name
        body = self.mapping.section(section, source) if self.mapping.has(section) else None
        if body is not None and spec.body:
            # Fixed parts of the body (templates) under what the mapping made of the message.
            body = {**templates.without_none(templates.render(spec.body, scope)), **body}
        headers = self.mapping.section(spec.headers_mapping, source) if spec.headers_mapping else None
        return await self.call(name, spec, scope, body=body, headers=headers)

    def _result(self, name: str, message: OutgoingMessage, body: Any) -> SendResult:
        spec = self.required(name)
        if spec.result is None:
            return SendResult(message.external_message_id or "")
        data = self.mapping.section(spec.result, body if isinstance(body, dict) else {},
                                    {"message": message.as_source()})
        if not data.get("externalMessageId"):
            raise PermanentError(f"the {name} answer has no message id")
        return SendResult(str(data["externalMessageId"]), sent_at=data.get("sentAt"),
                          external_thread_id=data.get("externalThreadId"), edited_at=data.get("editedAt"),
                          extra=data.get("extra") or {})

    async def send(self, message: OutgoingMessage) -> SendResult:
        _, body = await self._outgoing("send", message)
        return self._result("send", message, body)

    async def reconcile_send(self, message: OutgoingMessage) -> SendResult | None:
        """The declared ``reconcileSend`` search (``Reconcile``): the sent message that
        matches, read by the send's ``result`` mapping; ``None`` when it is not there."""
        source = message.as_source()
        spec = next((r for r in self.manifest.requests.reconcile_send
                     if all(templates.matches(source, c, {}) for c in r.when)), None)
        if spec is None:
            return None
        at = message.registered_at
        start = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() if at else self.ctx.clock()
        scope = self.scope(message=source, chat=source["chat"],
                           since=_format_mark(start - spec.window_s, spec.time_format))
        if any(c.equals is not None and templates.render(c.equals, scope) is None for c in spec.match):
            return None  # nothing of the message to recognise it by
        pages, cursor = Pages("reconcile_send"), None
        while True:
            found, cursor = await self.page_records("reconcile_send", spec, scope, cursor)
            for record, parent in found:
                local = {**scope, "record": record, "parent": parent}
                if all(templates.matches(record, c, local) for c in spec.match):
                    answer = record if spec.answer is None else templates.render(spec.answer, local)
                    return self._result("send", message, answer)
            if pages.advance(cursor) is None:
                return None

    async def edit(self, message: OutgoingMessage) -> SendResult:
        if not self.can_edit:
            return await super().edit(message)
        _, body = await self._outgoing("edit", message)
        return self._result("edit", message, body)

    async def delete(self, message: OutgoingMessage) -> None:
        if not self.can_delete:
            return await super().delete(message)
        try:
            await self._outgoing("delete", message)
        except AlreadyDone:
            return

    # -- webhooks -----------------------------------------------------------------------------
    def _delivery_scope(self, request: WebhookRequest, document: Callable[[], Any] | None = None) -> dict[str, Any]:
        """What verifiers and handshakes read of a delivery. ``document``: the parsed body, where
        the caller already has it (else parsed here if a verifier reads it). The request URL is
        read only where a webhook template of the manifest does (building it costs a request)."""
        reads_url = self.reads_url
        return self.scope(header=request.headers, query=request.query,
                          url=request.url if reads_url else None,
                          publicUrl=signed.public_url(self.ctx.webhook_url, request) if reads_url else None,
                          formSorted=signed.form_sorted(request) if self.signs_form else "",
                          delivery=self._signed_document(request, document))

    def _signed_document(self, request: WebhookRequest, document: Callable[[], Any] | None = None) -> Any:
        """The parsed delivery, where a verifier reads its signature from it (else not parsed);
        a body that cannot be read cannot carry a signature: ``MalformedDelivery`` (400)."""
        if not self.signs_document:
            return None
        return document() if document is not None else self.parse_body(request)

    def webhook_scope(self, request: WebhookRequest) -> dict[str, Any]:
        return self._delivery_scope(request)

    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        plan = self._accept_plan()
        if plan is not None:
            accepted = plan.accept(request, self.ctx.clock(), self.ctx.webhook_max_skew_s)
            if accepted is not None:
                return accepted
        return self._accept_declared(request)

    def _accept_plan(self) -> AcceptPlan | None:
        """The manifest's accept compiled for these credentials and settings (once for each:
        a refresh replaces the credentials object); ``None`` where it does not compile or a
        platform module reads deliveries its own way."""
        cached = self.__dict__.get("_accept_compiled")
        if cached is None or cached[0] is not self.credentials or cached[1] is not self.settings:
            cls = type(self)
            own = all(getattr(cls, name) is getattr(ManifestConnector, name)
                      for name in ("parse_body", "records", "_delivery_id", "_delivery_scope"))
            plan = compile_accept(self.manifest.webhook, self.scope(), self._delivery_id) if own else None
            cached = self.__dict__["_accept_compiled"] = (self.credentials, self.settings, plan)
        return cast(AcceptPlan | None, cached[2])

    def _accept_declared(self, request: WebhookRequest) -> WebhookAccepted:
        """The accept as the manifest declares it, read anew for each delivery: whatever the
        compiled plan (``syncd.kit.accepting``) does not answer."""
        hook = self.manifest.webhook
        document = _ParsedOnce(self.parse_body, request)
        scope = self._delivery_scope(request, document) if hook.verify or hook.handshakes else self.scope()
        # Only a GET can be a handshake answered before verification (see ``handshakes``).
        shook = handshakes.handshake(hook.handshakes, request, scope, verified=False) if request.method == "GET" else None
        if shook is not None:
            return shook
        if not hook.verify:
            raise SignatureError(f"{self.platform} declares no webhook verification")
        proof = signatures.verify_declared(hook.verify_mode, hook.verify, request, scope, now=self.ctx.clock(),
                                           max_skew_s=self.ctx.webhook_max_skew_s, keys=self.ctx.key_sets)
        shook = handshakes.handshake(hook.handshakes, request, scope, verified=True,
                                     document=document.as_json if hook.format == "json" else None)
        if shook is not None:
            shook.answer.headers.update(proof)
            return shook
        answer = WebhookAnswer(hook.answer_status, hook.answer_body if hook.answer_body is not None else {"ok": True},
                               hook.answer_media_type, proof)
        try:
            body = document()
            # The delivery's scope already holds what the selections read (credentials,
            # settings): no second copy of them per delivery.
            local = {**scope, "body": body}
            if not all(self.records(selection, body, local) for selection in hook.accept):
                return WebhookAccepted(None, answer)  # not this integration's: acknowledged, dropped
            return WebhookAccepted(self._delivery_id(request, body), answer)
        except MalformedDelivery:
            if hook.malformed == "ignore":
                return WebhookAccepted(None, answer)  # acknowledged, nothing stored
            raise

    def parse_body(self, request: WebhookRequest) -> Any:
        """The delivery as a document: JSON, or a form as a dict; ``MalformedDelivery`` if not."""
        if self.manifest.webhook.format == "form":
            return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if self.manifest.webhook.format == "params":
            return {**request.query, **dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))}
        try:
            return json.loads(request.body)
        except (ValueError, RecursionError):
            raise MalformedDelivery("the delivery is not JSON") from None

    def _delivery_id(self, request: WebhookRequest, body: Any) -> str:
        spec = self.manifest.webhook.delivery_id
        found: Any = None
        if spec.header:
            found = request.headers.get(spec.header.lower())
        elif spec.records and spec.path:
            found = _records_id(body, spec.records, spec.path)
        elif spec.path:
            found = templates.lookup(body, spec.path)
        elif spec.template:
            scope = {"body": body, "header": request.headers}
            choices = [spec.template] if isinstance(spec.template, str) else spec.template
            found = next((v for v in (templates.render(t, scope) for t in choices) if v not in (None, "")), None)
        if found not in (None, ""):
            return str(found)
        if self.manifest.webhook.malformed == "ignore" and (spec.header or spec.path or spec.template):
            raise MalformedDelivery("the delivery has no delivery id")
        return body_digest(request.body)

    async def parse_webhook(self, request: WebhookRequest) -> Changes:
        body = self.parse_body(request)
        changes = self.changes_of(body)
        if any(rule.fetch for rule in self.manifest.webhook.events):
            await self.fetched_changes(body, changes)
        return changes

    async def fetched_changes(self, body: Any, changes: Changes) -> None:
        """Add what the event rules with ``fetch`` make of their requests' answers."""
        chats = {c.external_chat_id: c for c in changes.chats}
        scope = self.scope(body=body)
        for rule in self.manifest.webhook.events:
            if rule.fetch is None:
                continue
            for record, parent in self.records(rule, body, scope):
                answer = await self._fetch(rule.fetch, {**scope, "record": record, "parent": parent})
                if answer is not None:
                    self._apply_event(rule, answer, record, scope, changes, chats)
        changes.chats = list(chats.values())

    async def _fetch(self, name: str, scope: dict[str, Any]) -> dict[str, Any] | None:
        """The first record of named request ``name``'s answer; cached by its rendered path."""
        spec = self.named(name)
        key = f"{name}:{templates.render(spec.path, scope, templates.path_segment)}"
        cache: dict[str, Any] = self.__dict__.setdefault("_fetch_cache", {})
        if key not in cache:
            try:
                _, answer = await self.call(name, spec, scope)
            except ProviderError:
                return None  # details are optional: the record stays what the delivery says
            if len(cache) >= _FETCH_CACHE_MAX:
                cache.clear()
            found = self.records(spec, answer, scope)
            cache[key] = found[0][0] if found else None
        return cache[key]

    def changes_of(self, body: Any) -> Changes:
        """What one delivery's document says changed, by the webhook's event rules (a platform
        module reuses this for the same documents read by polling)."""
        changes, chats = Changes(), dict[str, ChatData]()
        scope = self.scope(body=body)
        for rule in self.manifest.webhook.events:
            if rule.fetch is not None:
                continue  # needs a request: ``fetched_changes``
            for record, parent in self.records(rule, body, scope):
                self._apply_event(rule, record, parent, scope, changes, chats)
        changes.chats = list(chats.values())
        return changes

    def _apply_event(self, rule: EventRule, record: dict[str, Any], parent: Any, scope: dict[str, Any],
                     changes: Changes, chats: dict[str, ChatData]) -> None:
        if rule.as_ == "poll":
            changes.poll_requested = True
            return
        if rule.as_ == "resync":
            changes.resync_requested = True
            return
        if rule.as_ == "ignore":
            return
        local = {**scope, "record": record, "parent": parent}
        ctx = {**templates.render(rule.ctx, local), "parent": parent, "root": scope.get("body")}
        mapped = self.map_as(rule.as_, rule.map or rule.as_, record, ctx)
        if rule.follow_up is not None and mapped is not None:
            changes.follow_ups.append(FollowUp(rule.follow_up.stored, rule.follow_up.failed,
                                               {"record": record, "parent": parent, "root": scope.get("body")}))
        if isinstance(mapped, MessageData):
            changes.messages.append(mapped)
        elif isinstance(mapped, ChatData) and (mapped.external_chat_id not in chats or mapped.name):
            chats[mapped.external_chat_id] = mapped

    async def follow_up(self, follow_ups: list[FollowUp], *, stored: bool) -> None:
        for follow_up in follow_ups:
            name = follow_up.stored if stored else follow_up.failed
            if name is not None:
                await self.call(name, self.named(name), self.scope(**follow_up.ctx))

    # -- polling and upkeep -------------------------------------------------------------------
    async def poll(self, state: Any, chats: list[ChatData], lookback_s: float) -> PollResult:
        spec = self.manifest.poll
        if spec is None or not chats:
            return PollResult(Changes(), state)
        now = self.ctx.clock()
        if state is None:
            return PollResult(Changes(), now)
        since = _format_mark(float(state) - lookback_s, spec.format)
        history = self.required("history").model_copy(
            update={"params": {**self.required("history").params, spec.param: since}})
        messages: list[MessageData] = []
        for chat in chats:
            messages += await self.walk("poll", history, "message", self.scope(chat=chat.model_dump(by_alias=True)))
        marks = [m.sent_at.timestamp() for m in messages if m.sent_at is not None]
        return PollResult(Changes(messages=messages), max([float(state), *marks]))

    async def unsubscribe(self, state: Any) -> None:
        """Undo ``maintain``: the declared ``unregisterWebhook`` request, if there is one."""
        spec = self.manifest.requests.unregister_webhook
        if spec is not None:
            await self.call("unregister_webhook", spec, self.scope())

    async def maintain(self, state: Any) -> Any:
        spec, shared = self.manifest.requests.register_webhook, self.manifest.webhook.shared
        if spec is None or not self.ctx.public_webhooks or (shared and self.settings.get(shared.setting)):
            return state  # at the shared URL the platform's vendor set the webhook, once for all
        await self.call("register_webhook", spec, self.scope())
        return {"webhookUrl": self.ctx.webhook_url, "at": time.time()}


def environment(manifest: Manifest) -> dict[str, str]:
    """The manifest's platform-level values: ``SYNCD_<PLATFORM>_<NAME>`` (``webhookSecret`` ->
    ``WEBHOOK_SECRET``), read when used so that a test or an operator's restart sees changes."""
    out: dict[str, str] = {}
    for name, variable in _environment_names(manifest.platform, tuple(manifest.environment)):
        value = os.environ.get(variable)
        if value:
            out[name] = value
    return out


@functools.lru_cache(maxsize=256)
def _environment_names(platform: str, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name, f"SYNCD_{platform.upper()}_{re.sub(r'(?<!^)(?=[A-Z])', '_', name).upper()}") for name in names)


def _field_of(template: str | None) -> str:
    """The credential a ``{credentials.x}`` template names."""
    names = templates.placeholders(template or "")
    if len(names) != 1 or not names[0].startswith("credentials."):
        raise PermanentError(f"{template!r} does not name one credential")
    return names[0].split(".", 1)[1]


def _records_id(body: Any, records: str, path: str) -> str | None:
    """The ids of the selected records, sorted and joined (hashed when long); ``None`` if none."""
    ids = sorted(str(v) for r, _ in templates.select(body, records) if isinstance(r, dict)
                 for v in [templates.lookup(r, path)] if v not in (None, ""))
    joined = ",".join(ids)
    return (joined if len(joined) <= 200 else "sha256:" + hashlib.sha256(joined.encode()).hexdigest()) or None


def _format_mark(seconds: float, fmt: str) -> Any:
    if fmt == "epoch_ms":
        return int(seconds * 1000)
    if fmt == "iso8601":
        return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")
    if fmt == "slack_ts":
        return f"{seconds:.6f}"
    return int(seconds)
