"""The WeChat Official Account API as a simulator: one account and its followers.

Endpoints: ``GET /cgi-bin/token`` (``grant_type=client_credential``, ``appid``, ``secret``;
40013 for another AppID, 40125 for a wrong AppSecret; a new token invalidates the previous
one) and ``POST /cgi-bin/message/custom/send?access_token=`` (text; 40001 for an unknown token,
42001 for an expired one, 45015 outside the 48-hour window after the follower's last message,
45047 past 5 replies per follower message). Errors are HTTP 200 with ``errcode``, as WeChat
answers them; ``faults`` throttling answers 45009 and server faults a real 5xx. Pushes are built
as WeChat posts them: XML, ``signature``/``timestamp``/``nonce`` in the query, and in
``safe``/``compatible`` mode ``encrypt_type=aes`` and ``msg_signature`` over the AES
``Encrypt`` (``wire.py``; checked against wechatpy in tests).
"""

from __future__ import annotations

import itertools
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.providers.wechat import wire
from syncd.sim.base import Faults, Trial

#: MsgIds are int64 beyond 2**53: a float parser would corrupt them.
FIRST_MSG_ID = 6_054_768_590_064_713_728
WINDOW_S = 48 * 3600
REPLIES_PER_MESSAGE = 5


@dataclass
class WeChatDelivery:
    """A push as WeChat posts it: the raw XML body, its headers and query string."""

    body: bytes
    headers: dict[str, str]
    query: str
    fields: dict[str, Any]


@dataclass
class WeChatMessage:
    key: str
    openid: str
    text: str
    from_account: bool
    created: int


@dataclass
class Follower:
    openid: str
    last_action: float = 0.0
    replies_left: int = 0


def _alnum(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


@dataclass
class WeChatSimulator(Trial):
    """One Official Account (``app_id``) and its followers; an ASGI app."""

    #: ``syncd sim``: the one API root it serves, at its URL.
    trial_roots: ClassVar[dict[str, str]] = {"wechat": ""}

    app_id: str = field(default_factory=lambda: "wx" + secrets.token_hex(8))
    app_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    token: str = field(default_factory=lambda: _alnum(32))
    encoding_aes_key: str = field(default_factory=lambda: _alnum(43))
    account: str = "gh_7f083739789a"
    mode: Literal["plain", "safe", "compatible"] = "safe"
    faults: Faults = field(default_factory=Faults)
    followers: dict[str, Follower] = field(default_factory=dict)
    messages: list[WeChatMessage] = field(default_factory=list)
    sent_bodies: list[dict[str, Any]] = field(default_factory=list)
    token_fetches: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(FIRST_MSG_ID)
        self.access_token: str | None = None
        self.expired: set[str] = set()
        self.app = Starlette(routes=[
            Route("/cgi-bin/token", self._token, methods=["GET"]),
            Route("/cgi-bin/message/custom/send", self._custom_send, methods=["POST"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def trial_credentials(self) -> dict[str, str]:
        return {"appId": self.app_id, "appSecret": self.app_secret, "token": self.token,
                "encodingAesKey": self.encoding_aes_key}

    def trial_delivery(self, n: int) -> WeChatDelivery:
        return self.user_message(f"oTRIAL{n % 20:022d}", f"trial message {n}")

    def expire_token(self) -> None:
        """The current access token expires now (the next call answers 42001)."""
        if self.access_token:
            self.expired.add(self.access_token)

    # -- the API ------------------------------------------------------------------------------
    @staticmethod
    def _error(code: int, message: str) -> JSONResponse:
        return JSONResponse({"errcode": code, "errmsg": f"{message} rid: {secrets.token_hex(4)}"})

    async def _token(self, request: Request) -> JSONResponse:
        query = request.query_params
        if query.get("grant_type") != "client_credential":
            return self._error(40002, "invalid grant_type")
        if query.get("appid") != self.app_id:
            return self._error(40013, "invalid appid")
        if query.get("secret") != self.app_secret:
            return self._error(40125, "invalid appsecret")
        self.token_fetches += 1
        self.access_token = secrets.token_urlsafe(96)
        return JSONResponse({"access_token": self.access_token, "expires_in": 7200})

    async def _custom_send(self, request: Request) -> JSONResponse:
        fault = await self.faults.check("custom_send")
        if fault is not None and fault.kind == "server_error":
            return JSONResponse({"errcode": -1, "errmsg": "system error"}, status_code=fault.status)
        if fault is not None:
            return self._error(45009, "reach max api daily quota limit")
        presented = request.query_params.get("access_token")
        if presented and presented in self.expired:
            return self._error(42001, "access_token expired")
        if not presented or presented != self.access_token:
            return self._error(40001, "invalid credential, access_token is invalid or not latest")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._error(47001, "data format error")
        return self._deliver_reply(body if isinstance(body, dict) else {})

    def _deliver_reply(self, body: dict[str, Any]) -> JSONResponse:
        if body.get("msgtype") != "text" or not (body.get("text") or {}).get("content"):
            return self._error(44004, "empty content")
        follower = self.followers.get(str(body.get("touser")))
        if follower is None:
            return self._error(40003, "invalid openid")
        if time.time() - follower.last_action > WINDOW_S:
            return self._error(45015, "response out of time limit or subscription is canceled")
        if follower.replies_left <= 0:
            return self._error(45047, "out of response count limit")
        follower.replies_left -= 1
        self.sent_bodies.append(body)
        self.messages.append(WeChatMessage(f"sent:{len(self.sent_bodies)}", follower.openid,
                                           body["text"]["content"], True, int(time.time())))
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    # -- pushes ---------------------------------------------------------------------------------
    def _act(self, openid: str, replies: int) -> None:
        follower = self.followers.setdefault(openid, Follower(openid))
        follower.last_action, follower.replies_left = time.time(), replies

    def push(self, fields: dict[str, Any], *, mode: str | None = None, token: str | None = None) -> WeChatDelivery:
        """``fields`` posted as WeChat posts them in ``mode`` (default: the account's)."""
        mode, token = mode or self.mode, token or self.token
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
        query = {"signature": wire.signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                 "openid": fields.get("FromUserName", "")}
        plain = wire.build_xml(fields)
        body = plain
        if mode != "plain":
            encrypted = wire.encrypt(self.encoding_aes_key, self.app_id, plain)
            query.update(encrypt_type="aes", msg_signature=wire.signature(token, timestamp, nonce, encrypted))
            outer = fields if mode == "compatible" else {"ToUserName": self.account}
            body = wire.build_xml({**outer, "Encrypt": encrypted})
        return WeChatDelivery(body, {"content-type": "text/xml"}, urlencode(query), fields)

    def user_message(self, openid: str, text: str, **how: Any) -> WeChatDelivery:
        self._act(openid, REPLIES_PER_MESSAGE)
        message = WeChatMessage(str(next(self._ids)), openid, text, False, int(time.time()))
        self.messages.append(message)
        return self.push({"ToUserName": self.account, "FromUserName": openid, "CreateTime": message.created,
                          "MsgType": "text", "Content": text, "MsgId": int(message.key)}, **how)

    def subscribe(self, openid: str, **how: Any) -> WeChatDelivery:
        self._act(openid, 3)
        return self.push({"ToUserName": self.account, "FromUserName": openid, "CreateTime": int(time.time()),
                          "MsgType": "event", "Event": "subscribe", "EventKey": ""}, **how)

    def server_check(self, token: str | None = None) -> dict[str, str]:
        """The query of WeChat's GET server check when the URL is submitted."""
        timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
        return {"signature": wire.signature(token or self.token, timestamp, nonce), "timestamp": timestamp,
                "nonce": nonce, "echostr": str(secrets.randbelow(10**19))}

    def truth(self) -> list[WeChatMessage]:
        return list(self.messages)


SIMULATOR = WeChatSimulator
