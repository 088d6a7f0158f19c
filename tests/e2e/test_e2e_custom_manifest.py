"""An operator's platform with no code: a manifest for a REST API syncd has never seen, dropped
into ``SYNCD_MAPPINGS_DIR``, imports paged history, verifies and stores webhooks, and sends.

The platform ("Parley") is invented here, with its own ids, paging, signature scheme and error
envelope, so nothing built into syncd can know it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from syncd.testbed import Testbed

MANIFEST = """
platform: parley
title: Parley
capabilities: {history: true, poll: false, send: true, listChats: true, webhooks: true}
api: {root: "https://api.parley.example/v2", pageSize: 3}
credentials:
  apiKey: {secret: true, pattern: "^pk_[a-z0-9]+$"}
  webhookSecret: {secret: true, generate: hex, setup: "Parley > Webhooks > Signing secret"}
auth: {type: bearer, token: "{credentials.apiKey}"}
requests:
  identify: {path: /me, records: ".", map: user}
  listChats:
    path: /rooms
    params: {per_page: "{pageSize}"}
    paginator: {type: cursor, path: paging.after, param: after}
    records: rooms
    map: chat
  history:
    path: "/rooms/{chat.externalChatId}/posts"
    params: {per_page: "{pageSize}"}
    paginator: {type: cursor, path: paging.after, param: after}
    records: posts
    map: message
    ctx: {room: "{chat.externalChatId}"}
  send:
    method: POST
    path: "/rooms/{message.externalChatId}/posts"
    result: sent
errors:
  - {status: [200], when: [{path: error.kind, equals: slow_down}], as: rate_limited, retryAfterPath: error.wait}
  - {status: [401], as: auth}
webhook:
  verify:
    - {type: hmac, header: Parley-Signature, prefix: "v1,", key: "{credentials.webhookSecret}",
       payload: "{header.parley-timestamp}.{body}", encoding: base64, timestampHeader: Parley-Timestamp}
  deliveryId: {path: delivery}
  events:
    - {records: "posts[]", when: [{path: kind, equals: post}], as: message, ctx: {room: "{parent.room}"}}
mapping:
  message:
    externalChatId: {path: [room, ctx.room], required: true}
    externalMessageId: {path: id, required: true}
    sender.externalUserId: {path: author.id}
    sender.name: {path: author.name}
    text: {path: text}
    sentAt: {path: at, transform: iso8601}
  chat:
    externalChatId: {path: id, required: true}
    name: {path: title}
  user:
    externalUserId: {path: id, required: true}
    displayName: {path: name}
  send:
    text: {path: text}
  sections:
    sent:
      externalMessageId: {path: post.id, required: true}
      sentAt: {path: post.at, transform: iso8601}
"""


class Parley:
    """The invented platform's API: two rooms, posts paged newest first, and a throttle."""

    def __init__(self) -> None:
        self.key = "pk_contract1"
        self.rooms = {"r1": "Front desk", "r2": "Kitchen"}
        self.posts: dict[str, list[dict[str, Any]]] = {
            room: [{"id": f"{room}-p{i}", "text": f"post {i}", "author": {"id": "u7", "name": "Una Vale"},
                    "at": f"2026-11-0{1 + i % 9}T10:00:0{i % 10}Z"} for i in range(7)] for room in self.rooms}
        self.throttled = 1
        self.app = Starlette(routes=[
            Route("/v2/me", self.me), Route("/v2/rooms", self.list_rooms),
            Route("/v2/rooms/{room}/posts", self.room_posts, methods=["GET", "POST"]),
        ])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    @staticmethod
    def _page(items: list[Any], request: Request) -> tuple[list[Any], dict[str, Any]]:
        start, size = int(request.query_params.get("after") or 0), int(request.query_params["per_page"])
        after = str(start + size) if start + size < len(items) else None
        return items[start:start + size], {"after": after}

    async def me(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"error": {"kind": "unauthorized"}}, status_code=401)
        return JSONResponse({"id": "bot-1", "name": "Parley Bot"})

    async def list_rooms(self, request: Request) -> JSONResponse:
        rooms, paging = self._page([{"id": k, "title": v} for k, v in self.rooms.items()], request)
        return JSONResponse({"rooms": rooms, "paging": paging})

    async def room_posts(self, request: Request) -> JSONResponse:
        room = request.path_params["room"]
        if request.method == "POST":
            body = await request.json()
            post = {"id": f"{room}-p{len(self.posts[room])}", "text": body["text"], "author": {"id": "bot-1"},
                    "at": "2026-12-01T08:00:00Z"}
            self.posts[room].insert(0, post)
            return JSONResponse({"post": post})
        if self.throttled:
            self.throttled -= 1
            return JSONResponse({"error": {"kind": "slow_down", "wait": 0}})
        posts, paging = self._page(self.posts[room], request)
        return JSONResponse({"posts": posts, "paging": paging})


@pytest.fixture
async def parley(tmp_path, monkeypatch):
    (tmp_path / "parley.yaml").write_text(MANIFEST)
    monkeypatch.setenv("SYNCD_MAPPINGS_DIR", str(tmp_path))
    sim = Parley()
    tb = await Testbed.start(sims={"parley": sim})
    yield tb, sim
    await tb.stop()


def _signed(secret: str, payload: dict[str, Any], *, stamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    stamp = stamp or int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).digest()
    import base64

    return body, {"content-type": "application/json", "parley-timestamp": str(stamp),
                  "parley-signature": "v1," + base64.b64encode(mac).decode()}


async def test_a_manifest_alone_imports_verifies_webhooks_and_sends(parley):
    tb, sim = parley
    described = (await tb.api.get("/platforms/parley")).json()["platform"]
    assert described["custom"] and [f["name"] for f in described["credentials"] if f["secret"]] == [
        "apiKey", "webhookSecret"]

    integration = await tb.create("parley", {"apiKey": sim.key})
    chats = {c["externalChatId"]: c for c in (await tb.api.get("/chats", params={"customerId": "cust-1"})).json()["chats"]}
    assert {k: c["name"] for k, c in chats.items()} == sim.rooms
    stored = await tb.messages(chats["r1"]["id"])
    assert sorted(m["externalMessageId"] for m in stored) == sorted(p["id"] for p in sim.posts["r1"])
    assert {m["sender"]["name"] for m in stored} == {"Una Vale"}

    secret = (await tb.daemon.store.get_credentials(integration["id"]))["webhookSecret"]
    delivery = {"delivery": "d-1", "room": "r2", "posts": [
        {"kind": "post", "id": "r2-live", "text": "a live post", "author": {"id": "u8", "name": "Ned"},
         "at": "2026-12-02T09:00:00Z"}, {"kind": "typing", "id": "x"}]}
    body, headers = _signed(secret, delivery)
    assert (await tb.api.post(tb.webhook_url(integration), content=body, headers=headers)).status_code == 200
    assert (await tb.api.post(tb.webhook_url(integration), content=body, headers=headers)).status_code == 200
    forged = {**headers, "parley-signature": "v1," + "A" * 44}
    assert (await tb.api.post(tb.webhook_url(integration), content=body, headers=forged)).status_code == 401
    stale_body, stale = _signed(secret, delivery, stamp=int(time.time()) - 3600)
    assert (await tb.api.post(tb.webhook_url(integration), content=stale_body, headers=stale)).status_code == 401
    await tb.settle()
    live = [m for m in await tb.messages(chats["r2"]["id"]) if m["externalMessageId"] == "r2-live"]
    assert [(m["text"], m["direction"]) for m in live] == [("a live post", "inbound")]

    await tb.post_event({"id": "evt-parley-1", "type": "message.created", "customerId": "cust-1",
                         "platform": "parley", "externalChatId": "r1", "message": {"id": "app-1", "text": "hi"}})
    await tb.settle()
    assert sim.posts["r1"][0]["text"] == "hi"
    sent = [m for m in await tb.messages(chats["r1"]["id"]) if m.get("appMessageId") == "app-1"]
    assert [(m["externalMessageId"], m["direction"]) for m in sent] == [(sim.posts["r1"][0]["id"], "outbound")]


async def test_a_custom_manifest_with_a_misspelt_key_stops_the_start(tmp_path, monkeypatch):
    (tmp_path / "parley.yaml").write_text(MANIFEST.replace("  listChats:\n    path: /rooms", "  listChat:\n    path: /rooms"))
    monkeypatch.setenv("SYNCD_MAPPINGS_DIR", str(tmp_path))
    from syncd.kit.loader import ManifestError

    with pytest.raises(ManifestError) as err:
        await Testbed.start()
    assert err.value.field == "requests.listChat" and err.value.file.endswith("parley.yaml")


@pytest.mark.parametrize("path", ["rooms", "https://elsewhere.example/rooms", "@elsewhere.example/rooms"])
def test_a_request_path_must_stay_under_the_declared_root(tmp_path, path):
    from syncd.kit.loader import ManifestError, load_manifest

    (tmp_path / "parley.yaml").write_text(MANIFEST.replace("path: /rooms\n", f"path: {json.dumps(path)}\n"))
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path / "parley.yaml")
    assert err.value.field == "requests.listChats.path"


def test_values_put_into_a_path_cannot_leave_it():
    from syncd.kit import templates

    rendered = templates.render("/rooms/{id}/posts", {"id": "../../admin?x=1#y"}, templates.path_segment)
    assert rendered == "/rooms/..%2F..%2Fadmin%3Fx=1%23y/posts"
