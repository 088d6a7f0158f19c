"""Twilio Programmable Messaging as a simulator: one account, one phone number, its messages.

Endpoints under ``/2010-04-01/Accounts/{AccountSid}`` (HTTP Basic ``AccountSid:AuthToken``):
``GET|POST IncomingPhoneNumbers/{PN}.json`` (the number; POST sets ``SmsUrl``),
``GET Messages.json`` (``To``/``From`` filters, newest first, ``PageSize`` at most 1000, a
relative ``next_page_uri`` with ``Page`` and ``PageToken``), ``POST Messages.json`` (form:
``To``, ``From``, ``Body``, ``StatusCallback`` -> 201 queued), ``DELETE Messages/{sid}.json``
(204; 404 code 20404 when gone). Errors are ``{code, message, more_info, status}``: 20003 for
bad credentials, 20429 with HTTP 429 for the concurrency limit (``faults``). Deliveries are
form posts signed as Twilio signs them (``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL
and the sorted parameters, keyed with the auth token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.sim.base import Faults, Trial

ROOT = "/2010-04-01/Accounts/{account}"
#: The counterparts ``syncd sim twilio`` seeds a conversation with.
TRIAL_PEOPLE = ("+15551230001", "+15551230002")


def signature(token: str, url: str, params: dict[str, str] | list[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` of a delivery to ``url`` with form ``params``."""
    pairs = params.items() if isinstance(params, dict) else params
    payload = url + "".join(k + v for k, v in sorted(set(pairs)))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


@dataclass
class TwilioDelivery:
    """A webhook as Twilio posts it: the form body, its headers, and the URL it signed."""

    body: bytes
    headers: dict[str, str]
    params: dict[str, str]
    url: str
    query: str = ""


@dataclass
class TwilioMessage:
    sid: str
    counterpart: str
    text: str
    inbound: bool
    at: datetime
    status: str = "received"
    deleted: bool = False


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class TwilioSimulator(Trial):
    """One account (``account_sid``/``auth_token``) with one number; an ASGI app."""

    account_sid: str = field(default_factory=lambda: _sid("AC"))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    number_sid: str = field(default_factory=lambda: _sid("PN"))
    number: str = "+15005550006"
    faults: Faults = field(default_factory=Faults)
    messages: dict[str, TwilioMessage] = field(default_factory=dict)
    sms_url: str | None = None
    sent_forms: list[dict[str, str]] = field(default_factory=list)
    callbacks: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._clock = itertools.count()
        root = ROOT.format(account="{account}")
        self.app = Starlette(routes=[
            Route(root + "/IncomingPhoneNumbers/{sid}.json", self._number, methods=["GET", "POST"]),
            Route(root + "/Messages.json", self._messages, methods=["GET", "POST"]),
            Route(root + "/Messages/{sid}.json", self._message, methods=["GET", "DELETE"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    #: ``syncd sim twilio``: the REST API root is the simulator's own.
    trial_roots: ClassVar[dict[str, str]] = {"twilio": ""}

    def trial_seed(self) -> str:
        for i, person in enumerate(TRIAL_PEOPLE):
            self.add(person, f"hello {i}", inbound=True)
            self.add(person, f"hello back {i}", inbound=False)
        return f"{len(self.messages)} messages with {len(TRIAL_PEOPLE)} phone numbers"

    def trial_credentials(self) -> dict[str, str]:
        return {"accountSid": self.account_sid, "authToken": self.auth_token, "phoneNumberSid": self.number_sid}

    def trial_chat(self) -> str | None:
        return TRIAL_PEOPLE[0]

    def trial_history(self, chats: int, messages: int) -> int:
        """``chats`` phone numbers that each texted the number ``messages`` times."""
        for c in range(chats):
            for m in range(messages):
                self.add(f"+1555{c:07d}", f"message {m} from number {c}", inbound=True)
        return chats * messages

    def trial_delivery(self, n: int) -> TwilioDelivery:
        """An SMS from one of 20 numbers, signed for the ``SmsUrl`` the integration set (before
        it did, for a placeholder: the delivery's shape is all that is asked then)."""
        return self.inbound(f"+1555800{n % 20:04d}", f"trial message {n}",
                            url=self.sms_url or "http://127.0.0.1/unset")

    # -- the API ------------------------------------------------------------------------------
    @staticmethod
    def _error(status: int, code: int, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                             "status": status}, status_code=status)

    async def _guard(self, request: Request, endpoint: str) -> JSONResponse | None:
        fault = await self.faults.check(endpoint)
        if fault is not None and fault.kind == "server_error":
            return self._error(fault.status, 20500, "Internal Server Error")
        if fault is not None:
            refusal = self._error(429, 20429, "Too Many Requests")
            refusal.headers["retry-after"] = str(fault.retry_after_s)
            return refusal
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if request.headers.get("authorization") != expected or request.path_params["account"] != self.account_sid:
            return self._error(401, 20003, "Authenticate")
        return None

    def _number_json(self) -> dict[str, Any]:
        return {"sid": self.number_sid, "account_sid": self.account_sid, "phone_number": self.number,
                "friendly_name": "(500) 555-0006", "sms_url": self.sms_url or "", "sms_method": "POST"}

    async def _number(self, request: Request) -> Response:
        refused = await self._guard(request, "number")
        if refused is not None:
            return refused
        if request.path_params["sid"] != self.number_sid:
            return self._error(404, 20404, "The requested resource was not found")
        if request.method == "POST":
            form = dict(parse_qsl((await request.body()).decode()))
            self.sms_url = form.get("SmsUrl", self.sms_url)
        return JSONResponse(self._number_json())

    def _json(self, m: TwilioMessage) -> dict[str, Any]:
        ours, theirs = self.number, m.counterpart
        return {"sid": m.sid, "account_sid": self.account_sid, "api_version": "2010-04-01", "body": m.text,
                "from": theirs if m.inbound else ours, "to": ours if m.inbound else theirs,
                "direction": "inbound" if m.inbound else "outbound-api", "status": m.status,
                "date_created": format_datetime(m.at), "date_sent": format_datetime(m.at),
                "date_updated": format_datetime(m.at), "num_media": "0", "num_segments": "1",
                "error_code": None, "error_message": None, "price": None, "price_unit": "USD",
                "uri": f"{ROOT.format(account=self.account_sid)}/Messages/{m.sid}.json"}

    async def _messages(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._create(request)
        refused = await self._guard(request, "list")
        if refused is not None:
            return refused
        q = request.query_params
        size = min(int(q.get("PageSize", 50)), 1000)
        page = int(q.get("Page", 0))
        found = [self._json(m) for m in sorted(self.messages.values(), key=lambda m: (m.at, m.sid), reverse=True)
                 if not m.deleted]
        found = [r for r in found if all(r[k.lower()] == q[k] for k in ("To", "From") if k in q)]
        chunk = found[page * size:(page + 1) * size]
        base = f"{ROOT.format(account=self.account_sid)}/Messages.json"
        filters = {k: q[k] for k in ("To", "From") if k in q}
        after = None
        if (page + 1) * size < len(found):
            after = base + "?" + urlencode({**filters, "PageSize": size, "Page": page + 1,
                                           "PageToken": "PA" + chunk[-1]["sid"]})
        return JSONResponse({"messages": chunk, "next_page_uri": after, "page": page, "page_size": size,
                             "first_page_uri": base + "?" + urlencode({**filters, "PageSize": size, "Page": 0}),
                             "previous_page_uri": None, "start": page * size, "end": page * size + len(chunk),
                             "uri": str(request.url.path)})

    async def _create(self, request: Request) -> Response:
        refused = await self._guard(request, "send")
        if refused is not None:
            return refused
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if form.get("From") != self.number:
            return self._error(400, 21606, "The From phone number is not a valid number for this account")
        if not form.get("To", "").startswith("+") or not form.get("Body"):
            return self._error(400, 21604 if not form.get("To") else 21602, "A 'To' and a 'Body' are required")
        self.sent_forms.append(form)
        message = self.add(form["To"], form["Body"], inbound=False, status="queued")
        if form.get("StatusCallback"):
            self.callbacks[message.sid] = form["StatusCallback"]
        return JSONResponse(self._json(message), status_code=201)

    async def _message(self, request: Request) -> Response:
        refused = await self._guard(request, "delete" if request.method == "DELETE" else "get")
        if refused is not None:
            return refused
        message = self.messages.get(request.path_params["sid"])
        if message is None or message.deleted:
            return self._error(404, 20404, "The requested resource was not found")
        if request.method == "GET":
            return JSONResponse(self._json(message))
        message.deleted = True
        return Response(status_code=204)

    # -- the account's data and deliveries ------------------------------------------------------
    def add(self, counterpart: str, text: str, *, inbound: bool, status: str | None = None,
            at: datetime | None = None) -> TwilioMessage:
        tick = next(self._clock)
        when = at or (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=tick))
        message = TwilioMessage(_sid("SM"), counterpart, text, inbound, when,
                                status or ("received" if inbound else "delivered"))
        self.messages[message.sid] = message
        return message

    def signed(self, url: str, params: dict[str, str]) -> TwilioDelivery:
        body = urlencode(params).encode()
        headers = {"content-type": "application/x-www-form-urlencoded",
                   "x-twilio-signature": signature(self.auth_token, url, params),
                   "i-twilio-idempotency-token": secrets.token_hex(8)}
        return TwilioDelivery(body, headers, params, url)

    def inbound(self, counterpart: str, text: str, url: str | None = None) -> TwilioDelivery:
        """A message from ``counterpart`` to the number, as posted to its ``SmsUrl``."""
        message = self.add(counterpart, text, inbound=True)
        target = url or self.sms_url
        if not target:
            raise ValueError("the number has no SmsUrl")
        return self.signed(target, {
            "ToCountry": "US", "SmsMessageSid": message.sid, "NumMedia": "0", "SmsSid": message.sid,
            "SmsStatus": "received", "Body": text, "To": self.number, "NumSegments": "1",
            "MessageSid": message.sid, "AccountSid": self.account_sid, "From": counterpart,
            "ApiVersion": "2010-04-01"})

    def status_callback(self, sid: str, status: str) -> TwilioDelivery:
        """A sent message's status (``sent``, ``delivered``, ``read``, ``failed`` ...), posted to
        the ``StatusCallback`` it was sent with."""
        message = self.messages[sid]
        message.status = status
        return self.signed(self.callbacks[sid], {
            "SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": message.counterpart,
            "MessageSid": sid, "AccountSid": self.account_sid, "From": self.number, "ApiVersion": "2010-04-01"})

    def truth(self) -> list[TwilioMessage]:
        return sorted(self.messages.values(), key=lambda m: (m.at, m.sid))


SIMULATOR = TwilioSimulator
