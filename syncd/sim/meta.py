"""Meta's Graph API as simulators: the shared base, and the WhatsApp Cloud API on top of it.

``MetaGraphSimulator`` is what WhatsApp, Messenger and Instagram share (Messenger and Instagram
live in ``syncd/sim/meta_pages.py`` and subclass it):

- routing: ``route("POST", "{phone_number_id}/messages", handler, endpoint="messages")``; an
  optional leading version segment (``/v21.0/...``) is accepted, so the simulator serves both
  ``SYNCD_META_BASE_URL=<url>`` and ``<url>/v21.0``;
- the access token check (``Authorization: Bearer`` or ``?access_token=``) answering Meta's
  code 190 ``OAuthException``;
- Meta's error envelope ``{"error": {message, type, code, error_subcode?, error_data?,
  fbtrace_id}}`` via ``GraphError``;
- throttling faults in every form Meta uses: HTTP 429, or HTTP 400 / even HTTP 200 with an
  error body whose code is 4/17/32/613/130429/80007, plus the ``X-Business-Use-Case-Usage``
  header carrying ``estimated_time_to_regain_access`` (minutes). Drive them with
  ``faults.fail_next(endpoint, "rate_limit", status=400)`` (the code is ``throttle_code``) or
  ``throttle_next(endpoint, code=613, status=200)``; 5xx faults answer code 2 ``is_transient``;
- signed deliveries (``sign``): the body is encoded as Meta does (non-ASCII as ``\\uXXXX``,
  ``/`` as ``\\/``) and signed with ``X-Hub-Signature-256`` (and the legacy SHA-1
  ``X-Hub-Signature``) using the app secret, so a receiver that re-serializes fails;
- the ``hub.challenge`` GET handshake (``handshake_query``).

``WhatsAppSimulator`` adds the Cloud API: ``POST /{phone_number_id}/messages`` (body checked,
error 131047 outside the 24-hour customer service window by the simulator clock),
``GET /{phone_number_id}``, and builders of the webhook deliveries WhatsApp sends (incoming
text/media/reply, statuses, edit, revoke) shaped exactly like ``tests/fixtures/whatsapp.json``;
``truth()`` lists what the number sent and received, and ``on_send`` runs before a send is
answered (to deliver a status webhook that outruns the send's answer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.sim.base import Faults

Handler = Callable[[Request, dict[str, str], dict[str, Any]], Awaitable[Any]]

_VERSION = re.compile(r"^v\d+\.\d+$")


class GraphError(Exception):
    """An error the simulated Graph API answers in Meta's envelope."""

    def __init__(self, code: int, message: str, *, status: int = 400, type: str = "OAuthException",
                 subcode: int | None = None, error_data: dict[str, Any] | None = None,
                 is_transient: bool | None = None, title: str | None = None):
        super().__init__(message)
        self.code, self.message, self.status, self.type = code, message, status, type
        self.subcode, self.error_data, self.is_transient, self.title = subcode, error_data, is_transient, title


@dataclass(frozen=True)
class MetaDelivery:
    """One webhook POST exactly as Meta sends it: raw body bytes and headers."""

    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]


@dataclass
class _Route:
    method: str
    parts: tuple[str, ...]
    handler: Handler
    endpoint: str


@dataclass
class _Throttle:
    code: int
    minutes: int


def meta_json(payload: Any) -> bytes:
    """JSON as Meta's webhooks encode it: ASCII only (``\\uXXXX``) and escaped slashes."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


class MetaGraphSimulator:
    """The parts of the Graph API every Meta messaging product shares. Subclasses add routes."""

    #: The Graph error code a plain ``faults.fail_next(..., "rate_limit")`` answers with.
    throttle_code: int = 4
    #: ``object`` of the webhook envelope (``whatsapp_business_account``, ``page``, ``instagram``).
    webhook_object: str = ""

    def __init__(
        self,
        *,
        valid_tokens: Iterable[str] = ("EAAG-sim-access-token",),
        app_secret: str = "sim-app-secret",
        verify_token: str = "sim-verify-token",
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
    ):
        self.valid_tokens = set(valid_tokens)
        self.app_secret = app_secret
        self.verify_token = verify_token
        self.clock = clock
        self.faults = faults or Faults()
        #: Every answered API call as ``(method, path, json body or None)``, oldest first.
        self.requests: list[tuple[str, str, Any]] = []
        self._routes: list[_Route] = []
        self._throttles: dict[str, deque[_Throttle]] = {}
        self._trace = itertools.count(1)
        self.app = Starlette(routes=[Route("/{path:path}", self._dispatch, methods=["GET", "POST", "DELETE"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # -- wiring for subclasses ----------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler, *, endpoint: str) -> None:
        """Serve ``method pattern`` (``{name}`` segments capture) under the fault name ``endpoint``."""
        self._routes.append(_Route(method.upper(), tuple(pattern.strip("/").split("/")), handler, endpoint))

    def throttle_next(self, endpoint: str, *, code: int | None = None, status: int = 400, times: int = 1,
                      minutes: int = 1) -> None:
        """The next ``times`` calls of ``endpoint`` answer Meta throttling ``code`` with HTTP
        ``status`` (429, 400 or even 200) and a usage header saying ``minutes`` to wait."""
        self.faults.fail_next(endpoint, "rate_limit", times=times, status=status, retry_after_s=minutes * 60)
        self._throttles.setdefault(endpoint, deque()).extend(
            [_Throttle(code if code is not None else self.throttle_code, minutes)] * times)

    # -- webhooks -------------------------------------------------------------------------------
    def sign(self, payload: dict[str, Any], body: bytes | None = None) -> MetaDelivery:
        body = body if body is not None else meta_json(payload)
        secret = self.app_secret.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "facebookexternalua",
            "X-Hub-Signature": "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
        }
        return MetaDelivery(payload, body, headers)

    def retry(self, delivery: MetaDelivery) -> MetaDelivery:
        """Meta's redelivery of an unacknowledged POST: the same bytes, the same signature."""
        return self.sign(delivery.payload, body=delivery.body)

    def handshake_query(self, *, verify_token: str | None = None, challenge: str = "1158201444",
                        mode: str = "subscribe") -> dict[str, str]:
        """The query of Meta's GET verification request (``verify_token`` defaults to the right one)."""
        return {"hub.mode": mode, "hub.verify_token": self.verify_token if verify_token is None else verify_token,
                "hub.challenge": challenge}

    @staticmethod
    async def deliver(http_client: httpx.AsyncClient, url: str, delivery: MetaDelivery) -> httpx.Response:
        return await http_client.post(url, content=delivery.body, headers=delivery.headers)

    # -- HTTP -------------------------------------------------------------------------------------
    def _match(self, method: str, segments: list[str]) -> tuple[_Route, dict[str, str]] | None:
        for r in self._routes:
            if r.method != method or len(r.parts) != len(segments):
                continue
            params: dict[str, str] = {}
            for part, seg in zip(r.parts, segments):
                if part.startswith("{") and part.endswith("}"):
                    params[part[1:-1]] = seg
                elif part != seg:
                    break
            else:
                return r, params
        return None

    async def _dispatch(self, request: Request) -> Response:
        segments = [s for s in request.path_params["path"].split("/") if s]
        if segments and _VERSION.match(segments[0]):
            segments = segments[1:]
        matched = self._match(request.method, segments)
        if matched is None:
            return self._error(GraphError(100, "Unsupported request - method type: " + request.method.lower(),
                                          type="GraphMethodException", status=400))
        route, params = matched
        fault = await self.faults.check(route.endpoint)
        if fault is not None:
            return self._fault(route.endpoint, fault.kind, fault.status, fault.retry_after_s)
        try:
            self._authenticate(request)
            body = await self._json(request) if request.method == "POST" else {}
            self.requests.append((request.method, "/" + "/".join(segments), body or None))
            data = await route.handler(request, params, body)
        except GraphError as exc:
            return self._error(exc)
        return JSONResponse(data)

    def _fault(self, endpoint: str, kind: str, status: int, retry_after_s: int | None) -> Response:
        if kind != "rate_limit":
            return self._error(GraphError(2, "Service temporarily unavailable", status=status, is_transient=True))
        queued = self._throttles.get(endpoint)
        # A plain fault (not ``throttle_next``) says seconds; Meta's usage header says minutes.
        throttle = queued.popleft() if queued else _Throttle(
            self.throttle_code, max(1, math.ceil((retry_after_s or 60) / 60)))
        usage = {"0": [{"type": "messaging", "call_count": 100, "total_cputime": 1, "total_time": 1,
                        "estimated_time_to_regain_access": throttle.minutes}]}
        headers = {"X-Business-Use-Case-Usage": json.dumps(usage)}
        if status == 429 and retry_after_s:
            headers["Retry-After"] = str(retry_after_s)
        return self._error(GraphError(throttle.code, self.throttle_message(throttle.code), status=status,
                                      is_transient=True), headers=headers)

    @staticmethod
    def throttle_message(code: int) -> str:
        return {4: "(#4) Application request limit reached", 17: "(#17) User request limit reached",
                32: "(#32) Page request limit reached", 613: "(#613) Calls to this api have exceeded the rate limit.",
                130429: "(#130429) Rate limit hit"}.get(code, f"(#{code}) Rate limit hit")

    def _error(self, exc: GraphError, headers: dict[str, str] | None = None) -> Response:
        error: dict[str, Any] = {"message": exc.message, "type": exc.type, "code": exc.code}
        if exc.subcode is not None:
            error["error_subcode"] = exc.subcode
        if exc.is_transient is not None:
            error["is_transient"] = exc.is_transient
        if exc.title is not None:
            error["error_user_title"] = exc.title
        if exc.error_data is not None:
            error["error_data"] = exc.error_data
        error["fbtrace_id"] = f"ASimTrace{next(self._trace):06d}"
        if exc.code == 190:
            headers = {**(headers or {}), "WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token"'}
        return JSONResponse({"error": error}, status_code=exc.status, headers=headers)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.query_params.get("access_token")
        if not token:
            raise GraphError(2500, "An active access token must be used to query information about the current user.",
                             status=400)
        if token not in self.valid_tokens:
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token", status=401)

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise GraphError(100, "(#100) The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise GraphError(100, "(#100) Param must be an object")
        return body


# ==================================================================================================
# WhatsApp Cloud API
# ==================================================================================================

WINDOW_S = 24 * 3600
_WINDOW_DETAILS = ("Message failed to send because more than 24 hours have passed since the customer last "
                   "replied to this number.")


@dataclass
class WhatsAppMessage:
    """One message of the truth: what the business number sent or received."""

    wamid: str
    wa_id: str
    direction: str  # "in" (from the customer) or "out" (sent by the business)
    type: str
    body: dict[str, Any]
    timestamp: int
    context_id: str | None = None
    status: str | None = None
    edited: bool = False
    revoked: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class WhatsAppSimulator(MetaGraphSimulator):
    """One WhatsApp Business phone number and its customers, as an ASGI app."""

    throttle_code = 130429
    webhook_object = "whatsapp_business_account"

    def __init__(
        self,
        *,
        phone_number_id: str = "106540352242922",
        display_phone_number: str = "15550783881",
        verified_name: str = "Sim Shop",
        waba_id: str = "102290129340398",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.verified_name = verified_name
        self.waba_id = waba_id
        #: wa_id -> profile name of the customers who wrote to the number.
        self.customers: dict[str, str] = {}
        #: wamid -> message, in the order they happened.
        self.messages: dict[str, WhatsAppMessage] = {}
        #: Awaited with the new wamid before a send is answered (e.g. to deliver its status
        #: webhook before the sender has recorded the wamid, as can happen for real).
        self.on_send: Callable[[str], Awaitable[None]] | None = None
        self._seq = itertools.count(1)
        self.route("GET", "{phone_number_id}", self._phone_number, endpoint="phone_number")
        self.route("POST", "{phone_number_id}/messages", self._send, endpoint="messages")

    # -- the truth --------------------------------------------------------------------------------
    def truth(self, wa_id: str | None = None) -> list[dict[str, Any]]:
        """Every message sent or received (of one customer), oldest first."""
        return [
            {"wamid": m.wamid, "wa_id": m.wa_id, "direction": m.direction, "type": m.type,
             "text": self._text_of(m), "context_id": m.context_id, "status": m.status,
             "edited": m.edited, "revoked": m.revoked, "timestamp": m.timestamp}
            for m in self.messages.values() if wa_id is None or m.wa_id == wa_id
        ]

    @staticmethod
    def _text_of(m: WhatsAppMessage) -> str | None:
        if m.type == "text":
            return m.body.get("text", {}).get("body")
        return (m.body.get(m.type) or {}).get("caption")

    def _now(self) -> int:
        return int(self.clock())

    def _wamid(self) -> str:
        raw = f"\x18\x0b{self.phone_number_id}\x15\x02\x00\x12\x18\x14SIM{next(self._seq):017X}\x00".encode()
        return "wamid." + base64.b64encode(raw).decode()

    def last_inbound_at(self, wa_id: str) -> int | None:
        times = [m.timestamp for m in self.messages.values() if m.wa_id == wa_id and m.direction == "in"]
        return max(times) if times else None

    # -- Cloud API ---------------------------------------------------------------------------------
    def _check_number(self, params: dict[str, str]) -> None:
        if params["phone_number_id"] != self.phone_number_id:
            raise GraphError(100, f"Unsupported get request. Object with ID '{params['phone_number_id']}' does not "
                             "exist, cannot be loaded due to missing permissions, or does not support this operation.",
                             type="GraphMethodException", subcode=33)

    async def _phone_number(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self._check_number(params)
        record = {"verified_name": self.verified_name, "code_verification_status": "VERIFIED",
                  "display_phone_number": self._display(), "quality_rating": "GREEN",
                  "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"}, "id": self.phone_number_id}
        fields = request.query_params.get("fields")
        if fields:
            wanted = {f.strip() for f in fields.split(",")} | {"id"}
            record = {k: v for k, v in record.items() if k in wanted}
        return record

    def _display(self) -> str:
        digits = self.display_phone_number
        return f"+{digits[0]} {digits[1:4]}-{digits[4:7]}-{digits[7:]}" if digits.isdigit() and len(digits) == 11 \
            else digits

    @staticmethod
    def _invalid(message: str, details: str) -> GraphError:
        return GraphError(100, message, error_data={"messaging_product": "whatsapp", "details": details})

    async def _send(self, request: Request, params: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self._check_number(params)
        if body.get("messaging_product") != "whatsapp":
            raise self._invalid("(#100) The parameter messaging_product is required.",
                                "The parameter messaging_product is required.")
        if "status" in body:  # mark as read
            if body.get("status") != "read" or body.get("message_id") not in self.messages:
                raise self._invalid("(#100) Invalid parameter", "Invalid message_id")
            self.messages[body["message_id"]].status = "read"
            return {"success": True}
        to = str(body.get("to") or "")
        if not to.lstrip("+").isdigit():
            raise self._invalid("(#100) Invalid parameter", "The parameter to is required.")
        if body.get("recipient_type", "individual") != "individual":
            raise self._invalid("(#100) Invalid parameter", "recipient_type must be individual")
        kind = body.get("type", "text")
        if kind != "text":
            raise self._invalid("(#100) Invalid parameter", f"Only text is simulated, not {kind!r}")
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"].strip():
            raise self._invalid("(#100) The parameter text['body'] is required.",
                                "The parameter text['body'] is required.")
        if len(text["body"]) > 4096:
            raise self._invalid("(#100) Param text['body'] must be at most 4096 characters long.",
                                "Param text['body'] must be at most 4096 characters long.")
        wa_id = to.lstrip("+")
        last = self.last_inbound_at(wa_id)
        if last is None or self._now() - last > WINDOW_S:
            raise GraphError(131047, "Re-engagement message", title="Re-engagement message",
                             error_data={"messaging_product": "whatsapp", "details": _WINDOW_DETAILS})
        context = body.get("context") if isinstance(body.get("context"), dict) else {}
        wamid = self._wamid()
        self.messages[wamid] = WhatsAppMessage(wamid, wa_id, "out", "text", {"text": {"body": text["body"]}},
                                               self._now(), context_id=context.get("message_id"), status="accepted")
        if self.on_send is not None:
            await self.on_send(wamid)
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}],
                "messages": [{"id": wamid}]}

    # -- webhook deliveries -------------------------------------------------------------------------
    def _envelope(self, value: dict[str, Any], *, phone_number_id: str | None = None) -> MetaDelivery:
        return self.sign({"object": self.webhook_object, "entry": [{"id": self.waba_id, "changes": [{
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": self.display_phone_number,
                                   "phone_number_id": phone_number_id or self.phone_number_id},
                      **value},
            "field": "messages"}]}]})

    def _contact(self, wa_id: str) -> list[dict[str, Any]]:
        return [{"profile": {"name": self.customers.get(wa_id, wa_id)}, "wa_id": wa_id}]

    def _incoming(self, wa_id: str, name: str | None, kind: str, content: dict[str, Any], *,
                  context_id: str | None = None, at: int | None = None,
                  phone_number_id: str | None = None) -> MetaDelivery:
        if name:
            self.customers[wa_id] = name
        self.customers.setdefault(wa_id, wa_id)
        wamid = self._wamid()
        ts = self._now() if at is None else at
        message: dict[str, Any] = {"from": wa_id, "id": wamid, "timestamp": str(ts)}
        if context_id:
            original = self.messages.get(context_id)
            message["context"] = {"from": original.wa_id if original and original.direction == "in"
                                  else self.display_phone_number, "id": context_id}
        message.update(type=kind, **content)
        self.messages[wamid] = WhatsAppMessage(wamid, wa_id, "in", kind, content, ts, context_id=context_id)
        return self._envelope({"contacts": self._contact(wa_id), "messages": [message]},
                              phone_number_id=phone_number_id)

    def incoming_text(self, wa_id: str, text: str, *, name: str | None = None, reply_to: str | None = None,
                      at: int | None = None, phone_number_id: str | None = None) -> MetaDelivery:
        """A customer writes (``reply_to`` a wamid quotes it); opens the 24-hour window."""
        return self._incoming(wa_id, name, "text", {"text": {"body": text}}, context_id=reply_to, at=at,
                              phone_number_id=phone_number_id)

    def incoming_media(self, wa_id: str, kind: str, *, media_id: str | None = None, mime_type: str = "image/jpeg",
                       caption: str | None = None, filename: str | None = None, name: str | None = None,
                       reply_to: str | None = None, at: int | None = None) -> MetaDelivery:
        """A customer sends an image/document/audio/video/sticker (metadata only, as WhatsApp does)."""
        media: dict[str, Any] = {"mime_type": mime_type, "sha256": hashlib.sha256(kind.encode()).hexdigest(),
                                 "id": media_id or str(1_000_000_000_000_000 + next(self._seq))}
        if caption is not None and kind in ("image", "document", "video"):
            media["caption"] = caption
        if filename is not None and kind == "document":
            media["filename"] = filename
        if kind == "audio":
            media["voice"] = False
        if kind == "sticker":
            media["animated"] = False
        return self._incoming(wa_id, name, kind, {kind: media}, context_id=reply_to, at=at)

    def edit(self, wamid: str, text: str, *, at: int | None = None) -> MetaDelivery:
        """The customer edits their message ``wamid``; the delivery carries a new wamid."""
        original = self.messages[wamid]
        original.history.append(dict(original.body))
        original.body = {"text": {"body": text}} if original.type == "text" else \
            {original.type: {**original.body.get(original.type, {}), "caption": text}}
        original.edited = True
        inner: dict[str, Any] = {"type": original.type, **original.body}
        if original.context_id:
            inner = {"context": {"id": original.context_id}, **inner}
        return self._envelope({"contacts": self._contact(original.wa_id), "messages": [{
            "from": original.wa_id, "id": self._wamid(), "timestamp": str(self._now() if at is None else at),
            "type": "edit", "edit": {"original_message_id": wamid, "message": inner}}]})

    def revoke(self, wamid: str, *, at: int | None = None) -> MetaDelivery:
        """The customer deletes their message ``wamid`` for everyone."""
        original = self.messages[wamid]
        original.revoked = True
        return self._envelope({"contacts": self._contact(original.wa_id), "messages": [{
            "from": original.wa_id, "id": self._wamid(), "timestamp": str(self._now() if at is None else at),
            "type": "revoke", "revoke": {"original_message_id": wamid}}]})

    def status(self, wamid: str, status: str, *, at: int | None = None,
               errors: list[dict[str, Any]] | None = None, recipient: str | None = None) -> MetaDelivery:
        """A ``sent``/``delivered``/``read``/``failed`` status of a business message."""
        record = self.messages.get(wamid)
        wa_id = recipient or (record.wa_id if record else "")
        if record is not None:
            record.status = status
        ts = str(self._now() if at is None else at)
        item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": ts, "recipient_id": wa_id}
        if status != "read":
            item["conversation"] = {"id": hashlib.md5(wa_id.encode()).hexdigest(),
                                    "expiration_timestamp": str(int(ts) + WINDOW_S), "origin": {"type": "service"}}
            item["pricing"] = {"billable": status != "failed", "pricing_model": "CBP", "category": "service"}
        if status == "failed":
            item["errors"] = errors or [{"code": 131026, "title": "Message undeliverable",
                                         "message": "Message undeliverable",
                                         "error_data": {"details": "Message Undeliverable."}}]
        return self._envelope({"contacts": self._contact(wa_id), "statuses": [item]})
