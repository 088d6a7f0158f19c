"""Kit parts for batched, thin webhooks and idempotent sends: event rules that ``fetch`` the
details a delivery lacks (cached, optional), delivery ids made of the batch's own event ids,
request headers built by a mapping section (``headersMapping``) and the ``uuid5`` transform."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest

from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import ManifestConnector
from syncd.kit.http import RetryPolicy
from syncd.kit.loader import ManifestError, check_references
from syncd.kit.manifest import Manifest
from syncd.mapping import Mapping
from syncd.universal import ChatData, OutgoingMessage, WebhookRequest

MANIFEST: dict[str, Any] = {
    "platform": "chatter",
    "api": {"root": "https://chatter.test"},
    "credentials": {"secret": {"secret": True}},
    "requests": {
        "send": {"method": "POST", "path": "/send", "body": {"to": "{chat.externalChatId}", "text": "{message.text}"},
                 "headers": {"X-Fixed": "yes"}, "headersMapping": "keys", "result": "sent"},
        "named": {"profile": {"path": "/people/{record.from}"}},
    },
    "webhook": {
        "verify": [{"type": "hmac", "header": "X-Sig", "key": "{credentials.secret}"}],
        "deliveryId": {"records": "events[]", "path": "eventId"},
        "events": [
            {"records": "events[]", "as": "message"},
            {"records": "events[]", "as": "chat", "map": "person", "fetch": "profile"},
        ],
    },
    "mapping": {
        "message": {"externalChatId": {"path": "from", "required": True},
                    "externalMessageId": {"path": "id", "required": True}, "text": {"path": "text"}},
        "sections": {
            "person": {"externalChatId": {"path": "id", "required": True}, "name": {"path": "name"}},
            "keys": {"Idempotency-Key": {"path": "appMessageId", "transform": "uuid5"}},
            "sent": {"externalMessageId": {"path": "id", "required": True}},
        },
    },
}
PEOPLE = {"ann": {"id": "ann", "name": "Ann"}}


def build(seen: list[httpx.Request]) -> ManifestConnector:
    manifest = Manifest.model_validate(MANIFEST)
    bound = ManifestConnector.bind(manifest)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/send":
            return httpx.Response(200, json={"id": "m-9"})
        person = PEOPLE.get(request.url.path.rsplit("/", 1)[-1])
        return httpx.Response(200, json=person) if person else httpx.Response(404, json={"message": "no such user"})

    creds = bound.Credentials(secret="s3")
    http = bound.make_http("https://chatter.test", creds, policy=RetryPolicy(max_retries=0), timeout_s=5,
                           transport=httpx.MockTransport(answer))
    ctx = ConnectorContext(http=http, mapping=Mapping("chatter", manifest.mapping, "chatter.yaml"),
                           webhook_url="https://syncd.test/webhooks/chatter/i1", clock=lambda: 0.0)
    return bound(creds, {}, ctx)


def signed(body: dict[str, Any]) -> WebhookRequest:
    raw = json.dumps(body).encode()
    return WebhookRequest("POST", "https://syncd.test/webhooks/chatter/i1",
                          {"x-sig": hmac.new(b"s3", raw, hashlib.sha256).hexdigest()}, {}, raw)


def batch(*events: tuple[str, str], redelivery: bool = False) -> dict[str, Any]:
    return {"events": [{"eventId": e, "id": f"m-{e}", "from": who, "text": e, "again": redelivery} for e, who in events]}


async def test_a_fetch_rule_maps_the_answer_once_per_path_and_skips_a_refused_call():
    seen: list[httpx.Request] = []
    connector = build(seen)
    changes = await connector.parse_webhook(signed(batch(("e1", "ann"), ("e2", "ann"), ("e3", "bob"))))
    assert [m.external_message_id for m in changes.messages] == ["m-e1", "m-e2", "m-e3"]
    assert [(c.external_chat_id, c.name) for c in changes.chats] == [("ann", "Ann")]
    assert [r.url.path for r in seen] == ["/people/ann", "/people/bob"]
    await connector.parse_webhook(signed(batch(("e4", "ann"))))
    assert len(seen) == 2  # cached


def test_changes_of_leaves_fetch_rules_to_parse_webhook():
    changes = build([]).changes_of(batch(("e1", "ann")))
    assert len(changes.messages) == 1 and changes.chats == []


def test_a_delivery_id_is_the_batchs_event_ids_however_flagged_or_ordered():
    connector = build([])
    first = connector.accept_webhook(signed(batch(("e1", "ann"), ("e2", "bob"))))
    again = connector.accept_webhook(signed(batch(("e2", "bob"), ("e1", "ann"), redelivery=True)))
    assert first.delivery_id == again.delivery_id == "e1,e2"
    other = connector.accept_webhook(signed(batch(("e1", "ann"))))
    assert other.delivery_id == "e1"
    many = connector.accept_webhook(signed(batch(*[(f"event-{i:03d}", "ann") for i in range(40)])))
    assert many.delivery_id.startswith("sha256:") and len(many.delivery_id) == 71


def test_a_delivery_id_from_records_needs_a_path():
    with pytest.raises(ValueError, match="needs path"):
        Manifest.model_validate({**MANIFEST, "webhook": {**MANIFEST["webhook"], "deliveryId": {"records": "events[]"}}})


async def test_headers_mapping_adds_a_stable_key_named_by_the_app_message():
    seen: list[httpx.Request] = []
    connector = build(seen)
    out = OutgoingMessage(ChatData(external_chat_id="ann"), text="hi", app_message_id="app-1")
    result = await connector.send(out)
    await connector.send(out)
    assert result.external_message_id == "m-9"
    keys = [r.headers["idempotency-key"] for r in seen]
    assert keys == [str(uuid.uuid5(uuid.NAMESPACE_URL, "app-1"))] * 2
    assert seen[0].headers["x-fixed"] == "yes" and json.loads(seen[0].content) == {"to": "ann", "text": "hi"}


async def test_without_an_app_message_id_the_key_header_is_left_out():
    seen: list[httpx.Request] = []
    await build(seen).send(OutgoingMessage(ChatData(external_chat_id="ann"), text="hi"))
    assert "idempotency-key" not in seen[0].headers


def test_the_loader_refuses_unknown_fetch_and_headers_mapping_references():
    for broken in ({**MANIFEST, "requests": {**MANIFEST["requests"], "named": {}}},
                   {**MANIFEST, "requests": {**MANIFEST["requests"],
                                             "send": {**MANIFEST["requests"]["send"], "headersMapping": "nope"}}}):
        with pytest.raises(ManifestError):
            check_references(Manifest.model_validate(broken), "chatter.yaml")
