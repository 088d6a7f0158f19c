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

import hashlib
import hmac
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

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


class MetaGraphSimulator(Trial):
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

    # -- a trial (``syncd sim <a Meta platform>``) -------------------------------------------
    trial_roots: ClassVar[dict[str, str]] = {"meta": "", "meta_www": ""}

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
