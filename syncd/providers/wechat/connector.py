"""WeChat Official Account: what the manifest cannot say.

- The access token: ``GET /cgi-bin/token`` (the manifest's named request ``token``) gives a
  token for 7200 s that goes in every call's ``access_token`` query parameter. It is fetched
  before the first call, again 5 minutes before it expires, and at once when a call answers
  errcode 40001/40014/42001 (in a 200 body), after which that call is sent once more. Tokens are
  kept per app for the whole process: fetching a new one invalidates the old one after 5
  minutes, so every connector of one app must share it.
- Deliveries: the GET server check (``signature`` over the sorted token/timestamp/nonce, answered
  with ``echostr``), the same ``signature`` on every POST, and safe mode: ``<Encrypt>`` verified
  with ``msg_signature`` (sorted token/timestamp/nonce/Encrypt) and decrypted with the
  EncodingAESKey (``wire.py``). Bodies are XML; the events and mappings of the manifest read them
  as flat dicts. Deliveries are answered ``success`` as text, so WeChat sends nothing to the user.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from syncd.kit import templates
from syncd.kit.classify import classifier
from syncd.kit.credentials import ManifestCredentials, secret_values
from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import MalformedDelivery, SignatureError
from syncd.kit.http import ProviderHttp, RetryPolicy
from syncd.providers.wechat import wire
from syncd.universal import WebhookAccepted, WebhookAnswer, WebhookRequest

#: errcodes that mean the access token is no longer good (not the app's credentials).
STALE_TOKEN = {40001, 40014, 42001}
#: Refresh this long before the token's own expiry.
EARLY_S = 300.0

#: (API root, appId) -> (token, monotonic expiry): one token per app for the whole process.
_TOKENS: dict[tuple[str, str], tuple[str, float]] = {}


def _errcode(response: httpx.Response) -> int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("errcode") if isinstance(body, dict) else None


class AccessTokenAuth(httpx.Auth):
    """Puts the app's access token on every request, fetching it as the module docstring says.
    A token answer with an errcode is handed back as the call's answer (the manifest's error
    rules classify it: a wrong AppSecret is an auth failure)."""

    def __init__(self, base_url: str, app_id: str, token_request: httpx.Request):
        self.key = (base_url, app_id)
        self.token_request = token_request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        for attempt in range(2):
            cached = _TOKENS.get(self.key)
            if cached is None or cached[1] <= time.monotonic():
                answer = yield self.token_request
                await answer.aread()
                token, expires_in = self._read(answer)
                if token is None:
                    return
                cached = _TOKENS[self.key] = (token, time.monotonic() + max(expires_in - EARLY_S, 60.0))
            request.url = request.url.copy_set_param("access_token", cached[0])
            response = yield request
            await response.aread()
            if attempt or _errcode(response) not in STALE_TOKEN:
                return
            if _TOKENS.get(self.key) == cached:
                del _TOKENS[self.key]

    @staticmethod
    def _read(answer: httpx.Response) -> tuple[str | None, float]:
        try:
            body = answer.json()
        except ValueError:
            return None, 0.0
        if not isinstance(body, dict) or not body.get("access_token"):
            return None, 0.0
        return str(body["access_token"]), float(body.get("expires_in") or 7200)


if TYPE_CHECKING:
    class WeChatCredentials(ManifestCredentials):
        """The fields of the credentials model generated from mappings/wechat.yaml."""

        app_id: str
        token: str | None
        encoding_aes_key: str | None


class WeChatConnector(ManifestConnector):
    credentials: WeChatCredentials  # validated against the manifest's model by the caller

    @classmethod
    def make_http(cls, base_url: str, credentials: BaseModel, *, policy: RetryPolicy, timeout_s: float,
                  transport: httpx.AsyncBaseTransport | None = None) -> ProviderHttp:
        scope = {"credentials": credentials.model_dump(by_alias=True)}
        spec = cls.manifest.requests.named["token"]
        params = templates.without_none(templates.render(spec.params, scope))
        token_request = httpx.Request(spec.method, f"{base_url}{spec.path}", params=params)
        api = cls.manifest.api
        return ProviderHttp(
            base_url, classify=classifier(cls.manifest.errors, secret_values(cls.manifest, credentials)),
            auth=AccessTokenAuth(base_url, scope["credentials"]["appId"], token_request), policy=policy,
            timeout_s=(api.timeout_s if api and api.timeout_s else timeout_s), transport=transport,
        )

    # -- deliveries -----------------------------------------------------------------------------
    def accept_webhook(self, request: WebhookRequest) -> WebhookAccepted:
        query, token = request.query, str(self.credentials.token or "")
        if not wire.signed(query.get("signature"), token, query.get("timestamp", ""), query.get("nonce", "")):
            raise SignatureError("signature does not match")
        if request.method == "GET":
            if "echostr" not in query:
                raise MalformedDelivery("a GET without echostr is not WeChat's server check")
            return WebhookAccepted(None, WebhookAnswer(200, query["echostr"], "text/plain"))
        body = self.parse_body(request)
        hook = self.manifest.webhook
        return WebhookAccepted(_delivery_id(body), WebhookAnswer(hook.answer_status, hook.answer_body,
                                                                 hook.answer_media_type))

    def parse_body(self, request: WebhookRequest) -> Any:
        """The delivery's fields; in safe or compatible mode, the decrypted message's."""
        try:
            fields = wire.parse_xml(request.body)
        except wire.WireError as exc:
            raise MalformedDelivery(str(exc)) from None
        if "Encrypt" not in fields:
            return fields
        key = self.credentials.encoding_aes_key
        if not key:
            if "MsgType" in fields:
                return fields  # compatible mode, and syncd was given no key: the plain copy
            raise MalformedDelivery("the delivery is encrypted (safe mode) and the integration has no encodingAesKey")
        return self._decrypted(request, str(key), str(fields["Encrypt"]))

    def _decrypted(self, request: WebhookRequest, key: str, encrypted: str) -> dict[str, Any]:
        query = request.query
        if not wire.signed(query.get("msg_signature"), str(self.credentials.token or ""),
                           query.get("timestamp", ""), query.get("nonce", ""), encrypted):
            raise SignatureError("msg_signature does not match")
        try:
            message, app_id = wire.decrypt(key, encrypted)
            fields = wire.parse_xml(message)
        except wire.WireError as exc:
            raise MalformedDelivery(str(exc)) from None
        if app_id != self.credentials.app_id:
            raise SignatureError("the encrypted message is for another appId")
        return fields


def _delivery_id(fields: dict[str, Any]) -> str:
    """``MsgId`` for messages; ``FromUserName`` + ``CreateTime`` for events, as WeChat says to
    dedupe them (with the event's name, so two events of one second stay apart)."""
    if fields.get("MsgId"):
        return f"msg:{fields['MsgId']}"
    if not fields.get("FromUserName") or not fields.get("CreateTime"):
        raise MalformedDelivery("the delivery has neither MsgId nor FromUserName and CreateTime")
    return f"event:{fields['FromUserName']}:{fields['CreateTime']}:{fields.get('Event', '')}:{fields.get('EventKey', '')}"


CONNECTOR = WeChatConnector
