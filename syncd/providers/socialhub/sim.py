"""SocialHub's Inbox API for one custom channel, from the documented shapes (socialhub.dev,
``swagger.yaml`` v1.2), as an ASGI app.

``GET /`` the channel (and its manifest); ``PATCH /manifest`` stores the webhook and tests it
at once with a signed request whose ``events`` is ``{}`` (a missing or wrong
``X-SocialHub-Challenge`` answer is 422 ``WebhookValidationError``); ``POST /inbox/tickets``
(201, or 409 ``ConflictError`` for a networkItemId the channel has); follow-up success and
reset; ``POST /channels`` with a 30-minute channel-creation token. Every call but the last
carries ``?accesstoken=`` (401 ``AccessTokenInvalidError`` otherwise). ``faults`` inject 429/5xx.
Deliveries are signed as SocialHub signs them (:meth:`signed`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

#: How many tickets ``trial_seed`` opens for agents' replies.
TRIAL_TICKETS = 20
#: How long ``trial_webhook`` waits for syncd's ``PATCH /manifest``.
TRIAL_MANIFEST_WAIT_S = 30
NETWORK_ITEM_ID = re.compile(r"^[a-zA-Z0-9\/|@&$!?\\()\[\]{}+*~,;.:=_-]{6,256}$")


def challenge_of(timestamp: str, secret: str) -> str:
    return hashlib.sha256(f"{timestamp};{secret}".encode()).hexdigest()


def signature_of(timestamp: str, secret: str, body: bytes) -> str:
    return hmac.new(challenge_of(timestamp, secret).encode(), body, hashlib.sha256).hexdigest()


@dataclass
class SocialHubDelivery:
    body: bytes
    headers: dict[str, str]
    payload: dict[str, Any]
    challenge: str


@dataclass
class Ticket:
    id: str
    network_item_id: str
    root_id: str | None
    message: str | None
    interactor: dict[str, Any] | None
    #: The agents' replies: followupId -> (text, state: pending | done | reset).
    replies: dict[str, list[Any]] = field(default_factory=dict)


def _oid() -> str:
    return secrets.token_hex(12)


@dataclass
class SocialHubSimulator(Trial):
    """One account with one custom channel; an ASGI app."""

    token: str = field(default_factory=lambda: "eyJ" + secrets.token_urlsafe(40))
    channel_id: str = field(default_factory=_oid)
    account_id: str = field(default_factory=_oid)
    manifest_id: str = field(default_factory=_oid)
    faults: Faults = field(default_factory=Faults)
    #: Where PATCH /manifest sends its webhook test (syncd's API); None: the test is skipped.
    webhook_client: httpx.AsyncClient | None = None
    webhook: dict[str, Any] | None = None
    ticket_actions: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    webhook_tests: list[int] = field(default_factory=list)
    #: Channel-creation tokens handed out (token -> expiry, epoch seconds).
    creation_tokens: dict[str, float] = field(default_factory=dict)
    channels_created: list[dict[str, Any]] = field(default_factory=list)
    #: How POST /channels refuses a good token, e.g. ``(403, "ChannelLimitReached")``; None: it does not.
    channel_refusal: tuple[int, str] | None = None

    trial_roots: ClassVar[dict[str, str]] = {"socialhub": ""}

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[
            Route("/", self._root, methods=["GET"]),
            Route("/manifest", self._manifest, methods=["PATCH"]),
            Route("/inbox/tickets", self._create_ticket, methods=["POST"]),
            Route("/inbox/tickets/{ticket_id}/replies/{followup_id}/success", self._success, methods=["POST"]),
            Route("/inbox/tickets/{ticket_id}/reset/{action_id}", self._reset, methods=["POST"]),
            Route("/channels", self._create_channel, methods=["POST"]),
        ])
        self._clock = itertools.count(int(time.time() * 1000))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def trial_credentials(self) -> dict[str, Any]:
        return {"accessToken": self.token}

    def trial_seed(self) -> str:
        """Tickets of conversations the app wrote to earlier: agents reply to tickets."""
        for i in range(TRIAL_TICKETS):
            chat = f"trial-conversation-{i}"
            self.tickets.append(Ticket(_oid(), f"trial-ticket-{i}", chat, f"hello from {chat}", None))
        return f"{TRIAL_TICKETS} tickets an agent can reply to; no history (SocialHub has no read API)"

    def trial_webhook(self, created: dict[str, Any]) -> str:
        """SocialHub posts to the manifest's webhook, and signs with its secret, only once syncd
        has set them (``PATCH /manifest`` runs beside the integration's start): waits for it."""
        deadline = time.monotonic() + TRIAL_MANIFEST_WAIT_S
        while self.webhook is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"syncd set no webhook in the manifest within {TRIAL_MANIFEST_WAIT_S} s")
            time.sleep(0.02)  # the simulator serves syncd from its own thread meanwhile
        return str(self.webhook["url"])

    def trial_delivery(self, n: int) -> SocialHubDelivery:
        """An agent's reply to one of the seeded tickets, signed with the secret syncd set in the
        channel's manifest (``PATCH /manifest`` when the integration starts)."""
        return self.reply(f"trial-ticket-{n % TRIAL_TICKETS}", f"trial reply {n}")

    # -- the API ------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"code": code, "message": f"Error: {message}", **extra}, status_code=status)

    async def _guard(self, request: Request, endpoint: str) -> JSONResponse | None:
        fault = await self.faults.check(endpoint)
        if fault is not None and fault.kind == "server_error":
            return self._error(fault.status, "InternalServerError", "Internal error")
        if fault is not None:
            return JSONResponse({"code": "TooManyRequestsError", "message": "Error: Too many requests."},
                                status_code=429, headers={"Retry-After": "1"})
        if not hmac.compare_digest(request.query_params.get("accesstoken", "").encode(), self.token.encode()):
            return self._error(401, "AccessTokenInvalidError", "Invalid access token")
        return None

    async def _json(self, request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _root(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "root")
        if refused is not None:
            return refused
        return JSONResponse({"channel": self._channel(), "manifest": self._manifest_view()})

    def _channel(self) -> dict[str, Any]:
        return {"_id": self.channel_id, "name": "syncd", "uniqueName": "syncd", "accountId": self.account_id,
                "updatedTime": "2020-05-05T23:16:05.451Z", "businessHours": None,
                "createdTime": "2020-03-19T22:42:52.154Z"}

    def _manifest_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"_id": self.manifest_id, "inbox": {"ticketActions": self.ticket_actions}}
        if self.webhook is not None:
            view["webhook"] = {"url": self.webhook["url"]}
        return view

    async def _manifest(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "manifest")
        body = await self._json(request)
        if refused is not None or body is None:
            return refused or self._error(400, "BadRequestError", "body must be a JSON object")
        if "webhook" in body:
            hook = body["webhook"]
            if hook and (len(str(hook.get("secret") or "")) < 32 or not str(hook.get("url") or "").startswith("http")):
                return self._error(400, "BadRequestError", "webhook needs an url and a secret of at least 32 characters")
            self.webhook = dict(hook) if hook else None
        if isinstance(body.get("inbox"), dict):
            self.ticket_actions = list(body["inbox"].get("ticketActions") or [])
        # "A test request is sent on every update" of a manifest that has a webhook.
        if self.webhook is not None and not await self._webhook_test():
            self.webhook = None
            return self._error(422, "WebhookValidationError", "The WebHook failed to solve the challenge")
        return JSONResponse(self._manifest_view())

    async def _webhook_test(self) -> bool:
        if self.webhook_client is None or self.webhook is None:
            return True
        delivery = self.signed({"manifestId": self.manifest_id, "accountId": self.account_id,
                                "channelId": self.channel_id, "events": {}})
        answer = await self.webhook_client.post(self.webhook["url"], content=delivery.body, headers=delivery.headers)
        self.webhook_tests.append(answer.status_code)
        return answer.is_success and answer.headers.get("x-socialhub-challenge") == delivery.challenge

    async def _create_ticket(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "tickets")
        body = await self._json(request)
        if refused is not None or body is None:
            return refused or self._error(400, "BadRequestError", "body must be a JSON object")
        interaction = body.get("interaction")
        if not isinstance(interaction, dict):
            return self._error(400, "BadRequestError", "interaction is required")
        item_id = str(interaction.get("networkItemId") or "")
        if not NETWORK_ITEM_ID.match(item_id):
            return self._error(400, "BadRequestError", "networkItemId does not match the pattern")
        if not any(interaction.get(k) for k in ("message", "pictures", "attachments", "link", "rating")):
            return self._error(400, "BadRequestError", "one of message, pictures, attachments, link, rating is required")
        if any(t.network_item_id == item_id for t in self.tickets):
            return self._error(409, "ConflictError", "Ticket with such network item id already exists")
        root = (interaction.get("root") or {}).get("rootId")
        ticket = Ticket(_oid(), item_id, root, interaction.get("message"), interaction.get("interactor"))
        self.tickets.append(ticket)
        answer = {**interaction, "root": {"url": None, "rootId": root, "createdTime": "2020-05-07T23:03:56.336Z"}}
        if ticket.interactor:
            answer["interactor"] = {**ticket.interactor, "interactorId": _oid()}
        return JSONResponse({"channelId": self.channel_id, "accountId": self.account_id, "_id": ticket.id,
                             "createdTime": "2020-05-07T23:03:56.384Z", "interaction": answer}, status_code=201)

    def _ticket(self, ticket_id: str) -> Ticket | None:
        return next((t for t in self.tickets if t.id == ticket_id), None)

    async def _success(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "success")
        body = await self._json(request)
        if refused is not None or body is None:
            return refused or self._error(400, "BadRequestError", "body must be a JSON object")
        ticket = self._ticket(request.path_params["ticket_id"])
        reply = ticket.replies.get(request.path_params["followup_id"]) if ticket else None
        if ticket is None or reply is None:
            return self._error(404, "NotFoundError", "no such ticket or followup")
        if not (body.get("interaction") or {}).get("networkItemId"):
            return self._error(400, "BadRequestError", "interaction.networkItemId is required")
        reply[1] = "done"
        return JSONResponse({"_id": _oid(), "followupTo": ticket.id, "interaction": body["interaction"]},
                            status_code=201)

    async def _reset(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, "reset")
        body = await self._json(request)
        if refused is not None or body is None:
            return refused or self._error(400, "BadRequestError", "body must be a JSON object")
        ticket = self._ticket(request.path_params["ticket_id"])
        reply = ticket.replies.get(str(body.get("followupId") or "")) if ticket else None
        if ticket is None or reply is None:
            return self._error(404, "NotFoundError", "no such ticket or followup")
        reply[1] = "reset"
        return JSONResponse({"_id": ticket.id}, status_code=201)

    async def _create_channel(self, request: Request) -> JSONResponse:
        fault = await self.faults.check("channels")
        if fault is not None:
            return self._error(fault.status, "InternalServerError", "Internal error")
        given = request.query_params.get("accesstoken", "")
        expires = self.creation_tokens.get(given)
        if expires is None or expires < time.time():
            return self._error(401, "AccessTokenInvalidError", "Invalid access token")
        if self.channel_refusal is not None:
            status, code = self.channel_refusal
            return self._error(status, code, f"the channel cannot be created ({code})")
        body = await self._json(request) or {}
        if not body.get("name") or not body.get("uniqueName"):
            return self._error(400, "BadRequestError", "name and uniqueName are required")
        channel = {"networkId": body.get("networkId"), "name": body["name"], "uniqueName": body["uniqueName"],
                   "imageUrl": body.get("imageUrl"), "accountId": self.account_id, "_id": self.channel_id,
                   "businessHours": None, "createdTime": "2020-05-07T21:10:44.509Z",
                   "endpoint": {"accessToken": self.token, "expirationTime": None}}
        self.channels_created.append(channel)
        return JSONResponse(channel, status_code=201)

    def creation_token(self, ttl_s: float = 1800) -> str:
        """A channel-creation token, as SocialHub hands it to ``callbacks.channelCreation``."""
        token = "eyJ" + secrets.token_urlsafe(30)
        self.creation_tokens[token] = time.time() + ttl_s
        return token

    # -- deliveries ---------------------------------------------------------------------------
    def signed(self, payload: dict[str, Any], *, secret: str | None = None,
               timestamp: int | None = None) -> SocialHubDelivery:
        """``payload`` as SocialHub posts it: ``X-SocialHub-Timestamp`` (ms) and the signature."""
        key = secret if secret is not None else str((self.webhook or {}).get("secret") or "")
        stamp = str(timestamp if timestamp is not None else next(self._clock))
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "user-agent": "SocialHub",
                   "x-socialhub-timestamp": stamp, "x-socialhub-signature": signature_of(stamp, key, body)}
        return SocialHubDelivery(body, headers, payload, challenge_of(stamp, key))

    def reply(self, network_item_id: str, text: str, **kw: Any) -> SocialHubDelivery:
        """An agent's reply to the ticket ``network_item_id`` (a ``ticket_action`` event)."""
        ticket = next(t for t in self.tickets if t.network_item_id == network_item_id)
        followup = str(uuid.uuid4())
        ticket.replies[followup] = [text, "pending"]
        event = {"ticketId": ticket.id, "networkItemId": network_item_id, "type": "reply", "actionId": "reply",
                 "payload": {"text": text, "followupId": followup}, "time": next(self._clock),
                 "uuid": str(uuid.uuid4())}
        return self.signed({"manifestId": self.manifest_id, "accountId": self.account_id,
                            "channelId": self.channel_id, "events": {"ticket_action": [event]}}, **kw)

    def truth(self) -> list[Ticket]:
        return list(self.tickets)


SIMULATOR = SocialHubSimulator
