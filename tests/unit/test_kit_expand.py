"""Kit parts a platform module builds on: named requests, the ``expand`` hook that pulls in
records a page only points to, conditions on a record's parent or the body, ``accept`` selections,
``page_limit``, and the ``listUsers`` capability."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import ManifestConnector
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import check_references
from syncd.kit.manifest import Manifest
from syncd.mapping import Mapping, MappingError
from syncd.universal import ChatData, WebhookRequest

CURSOR = {"type": "cursor", "path": "next", "param": "cursor"}
MANIFEST: dict[str, Any] = {
    "platform": "forum",
    "capabilities": {"history": True, "listUsers": True},
    "api": {"root": "https://forum.test/api", "pageSize": 50},
    "credentials": {"secret": {"secret": True}},
    "requests": {
        "history": {"path": "/posts", "params": {"topic": "{chat.externalChatId}", "n": "{pageSize}"},
                    "records": "posts", "where": [{"path": "kind", "in": [None, "post"]}],
                    "ctx": {"topic": "{chat.externalChatId}"}, "paginator": CURSOR},
        "list_users": {"path": "/people", "records": "people"},
        "named": {"answers": {"path": "/answers", "params": {"post": "{post.id}"}, "records": "answers",
                              "where": [{"path": "id", "notEquals": "{post.id}"}], "paginator": CURSOR}},
    },
    "webhook": {
        "verify": [{"type": "hmac", "header": "X-Sig", "key": "{credentials.secret}"}],
        "accept": [{"when": [{"path": "type", "equals": "event"}]}], "malformed": "ignore",
        "events": [{"records": "event.post", "when": [{"of": "parent", "path": "action", "equals": "edited"},
                                                      {"of": "root", "path": "type", "equals": "event"}],
                    "ctx": {"topic": "{parent.topic}"}}],
    },
    "mapping": {
        "message": {"externalChatId": {"path": "ctx.topic", "required": True},
                    "externalMessageId": {"path": "id", "required": True}, "text": {"path": "text"}},
        "user": {"externalUserId": {"path": "id", "required": True}, "displayName": {"path": "name"}},
        "chat": {"externalChatId": {"path": "id", "required": True}, "participants": {"path": "owner", "transform": "list"}},
    },
}

PAGES = {
    None: {"posts": [{"id": "p1", "text": "question", "answers": 2}, {"id": "n1", "kind": "notice"}], "next": "c2"},
    "c2": {"posts": [{"id": "p2", "text": "later"}]},
}
ANSWERS = {
    None: {"answers": [{"id": "p1"}, {"id": "a1", "text": "first answer"}], "next": "a-c2"},
    "a-c2": {"answers": [{"id": "p1"}, {"id": "a2", "text": "second answer"}]},
}


class Forum(ManifestConnector):
    """Posts with answers listed under another request, as a platform module would do it."""

    async def expand(self, name, spec, body, found, scope):
        out = []
        for record, parent in found:
            out.append((record, parent))
            if record.get("answers"):
                out += await self.walk_records("answers", self.named("answers"), {**scope, "post": record})
        return out


def build(cls: type[ManifestConnector] = Forum, seen: list[httpx.Request] | None = None) -> ManifestConnector:
    manifest = Manifest.model_validate(MANIFEST)
    bound = cls.bind(manifest)

    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        cursor = request.url.params.get("cursor")
        if request.url.path.endswith("/people"):
            return httpx.Response(200, json={"people": [{"id": "u1", "name": "Ada"}]})
        return httpx.Response(200, json=(ANSWERS if request.url.path.endswith("/answers") else PAGES)[cursor])

    creds = bound.Credentials(secret="s3")
    http = bound.make_http("https://forum.test/api", creds, policy=RetryPolicy(max_retries=0), timeout_s=5,
                           transport=httpx.MockTransport(answer))
    ctx = ConnectorContext(http=http, mapping=Mapping("forum", manifest.mapping, "forum.yaml"),
                           webhook_url="https://syncd.test/webhooks/forum/i1", clock=lambda: 0.0)
    return bound(creds, {}, ctx)


async def test_expand_puts_every_page_of_a_named_request_after_the_record_pointing_to_it():
    seen: list[httpx.Request] = []
    forum = build(seen=seen)
    page = await forum.fetch_history_page(ChatData(external_chat_id="t1"), None)
    assert [m.external_message_id for m in page.messages] == ["p1", "a1", "a2"]
    assert {m.external_chat_id for m in page.messages} == {"t1"}
    assert page.next_cursor == "c2"
    assert [r.url.params.get("cursor") for r in seen if r.url.path.endswith("/answers")] == [None, "a-c2"]
    assert seen[0].url.params["n"] == "50"


async def test_page_limit_replaces_the_manifests_page_size():
    seen: list[httpx.Request] = []
    forum = build(seen=seen)
    forum.page_limit = 3
    await forum.fetch_history_page(ChatData(external_chat_id="t1"), "c2")
    assert seen[0].url.params["n"] == "3"


async def test_a_connector_without_expand_keeps_a_pages_own_records():
    page = await build(ManifestConnector).fetch_history_page(ChatData(external_chat_id="t1"), None)
    assert [m.external_message_id for m in page.messages] == ["p1"]


async def test_list_users_is_a_declared_capability():
    forum = build()
    assert forum.can_list_users is True
    assert [(u.external_user_id, u.display_name) for u in await forum.list_users()] == [("u1", "Ada")]


def signed(body: dict[str, Any] | bytes) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sig = hmac.new(b"s3", raw, hashlib.sha256).hexdigest()
    return WebhookRequest("POST", "https://syncd.test/webhooks/forum/i1", {"x-sig": sig}, {}, raw)


async def test_event_conditions_read_the_records_parent_and_the_body():
    forum = build()
    edited = {"type": "event", "event": {"action": "edited", "topic": "t9", "post": {"id": "p7", "text": "new"}}}
    [message] = (await forum.parse_webhook(signed(edited))).messages
    assert (message.external_chat_id, message.text) == ("t9", "new")
    created = {**edited, "event": {**edited["event"], "action": "created"}}
    assert (await forum.parse_webhook(signed(created))).messages == []


def test_deliveries_no_accept_selection_finds_are_answered_and_not_stored():
    forum = build()
    assert forum.accept_webhook(signed({"type": "event"})).delivery_id is not None
    ignored = forum.accept_webhook(signed({"type": "notice"}))
    assert ignored.delivery_id is None and ignored.answer.status_code == 200
    # A form body the platform posts to the same URL: verified, answered, not stored (not 400).
    form = forum.accept_webhook(signed(b"command=%2Fhello&text=hi"))
    assert form.delivery_id is None and form.answer.status_code == 200


def test_the_list_transform_wraps_one_value():
    mapping = Mapping("forum", Manifest.model_validate(MANIFEST).mapping, "forum.yaml")
    assert mapping.chat({"id": "c1", "owner": "u1"}).participants == ["u1"]
    assert mapping.chat({"id": "c1"}).participants == []


def test_a_named_request_mapping_to_an_unknown_section_stops_the_load():
    broken = json.loads(json.dumps(MANIFEST))
    broken["requests"]["named"]["answers"]["map"] = "answer"
    with pytest.raises(MappingError, match=r"requests\.named\.answers\.map"):
        check_references(Manifest.model_validate(broken), "forum.yaml")
