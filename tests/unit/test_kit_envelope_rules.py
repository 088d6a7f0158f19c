"""Kit features a JSON-envelope platform needs, on a made-up manifest: credential patterns with
their own message, error messages that quote the platform with secrets scrubbed, conditions
on path lists and contained text, deliveries that are acknowledged and dropped, and no
history without a history request."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import MalformedDelivery, ManifestConnector
from syncd.kit.errors import AlreadyDone, AuthError, PermanentError, RateLimited
from syncd.kit.http import RetryPolicy
from syncd.kit.manifest import Manifest
from syncd.mapping import Mapping
from syncd.universal import ChatData, WebhookRequest

TOKEN = "12345:sEcReTsEcReT"
MESSAGE = "envelope error {body.code}: {body.description}"


def manifest(**webhook: Any) -> Manifest:
    return Manifest.model_validate({
        "platform": "envelope",
        "api": {"root": "https://api.envelope.test"},
        "credentials": {
            "apiToken": {"secret": True, "aliases": ["token"], "pattern": "^[0-9]+:[A-Za-z]+$",
                         "patternMessage": "not an envelope token: expected '<id>:<letters>'"},
            "hookSecret": {"secret": True, "generate": "token"},
        },
        "requests": {"identify": {"path": "/me", "records": "result"}},
        "errors": [
            {"status": 429, "as": "rate_limited", "retryAfterPath": "parameters.wait", "message": MESSAGE},
            {"status": 401, "as": "auth", "code": "code"},
            {"when": [{"path": "description", "contains": "already gone"}], "as": "already_done",
             "message": MESSAGE},
            {"when": [{"path": "ok", "notEquals": True}], "as": "permanent", "code": "code", "message": MESSAGE},
        ],
        "webhook": {
            "verify": [{"type": "token", "header": "X-Secret", "value": "{credentials.hookSecret}"}],
            "deliveryId": {"path": "id"},
            "events": [{"records": "item", "as": "message",
                        "when": [{"path": ["text", "caption"], "present": True}]}],
            **webhook,
        },
        "mapping": {"message": {"externalChatId": {"const": "c"},
                                "externalMessageId": {"path": "n", "transform": "str", "required": True},
                                "text": {"path": ["text", "caption"]}},
                    "user": {"externalUserId": {"path": "id", "transform": "str", "required": True}}},
    })


def connector(answer: tuple[int, Any] = (200, {"ok": True}), **webhook: Any) -> ManifestConnector:
    spec = manifest(**webhook)
    cls = ManifestConnector.bind(spec)
    creds = cls.Credentials.model_validate(cls.prepare_credentials({"apiToken": TOKEN, "hookSecret": "hs"}, {})[0])
    http = cls.make_http(spec.api.root, creds, policy=RetryPolicy(max_retries=0), timeout_s=5,
                         transport=httpx.MockTransport(lambda _: httpx.Response(answer[0], json=answer[1])))
    ctx = ConnectorContext(http=http, mapping=Mapping("envelope", spec.mapping, "envelope.yaml"),
                           webhook_url="https://syncd.test/hook")
    return cls(creds, {}, ctx)


def delivery(body: bytes, secret: str = "hs") -> WebhookRequest:
    return WebhookRequest("POST", "https://syncd.test/hook", {"x-secret": secret}, {}, body)


# -- credentials ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["", "nope", "12345:digits99"])
def test_a_credential_outside_its_pattern_is_refused_with_the_manifests_message(value):
    cls = ManifestConnector.bind(manifest())
    with pytest.raises(ValidationError) as failed:
        cls.Credentials.model_validate({"apiToken": value, "hookSecret": "x"})
    assert "not an envelope token" in str(failed.value)
    assert [e["loc"] for e in failed.value.errors()] == [("apiToken",)]
    if value:
        assert value not in str(failed.value)


def test_a_credential_matching_its_pattern_is_accepted_under_its_alias():
    cls = ManifestConnector.bind(manifest())
    assert cls.Credentials.model_validate({"token": TOKEN, "hookSecret": "x"}).api_token == TOKEN


# -- error rules --------------------------------------------------------------------------------

async def test_an_error_message_quotes_the_platform_without_its_secrets():
    tg = connector((400, {"ok": False, "code": 400, "description": f"Bad Request: token {TOKEN} refused"}))
    with pytest.raises(PermanentError) as failed:
        await tg.identify()
    assert str(failed.value) == "identify: envelope error 400: Bad Request: token [redacted] refused"
    assert failed.value.code == "400"


async def test_a_message_with_a_missing_value_falls_back_to_the_generic_one():
    with pytest.raises(RateLimited) as failed:
        await connector((429, {"ok": False, "parameters": {"wait": 3}})).identify()
    assert str(failed.value) == "identify: rate limited (429)" and failed.value.retry_after == 3
    with pytest.raises(AuthError, match=r"^identify: auth \(401, 401\)$"):
        await connector((401, {"ok": False, "code": 401, "description": "Unauthorized"})).identify()


async def test_a_contained_description_classifies_and_the_message_is_kept_short():
    long = "Bad Request: already gone " + "x" * 500
    with pytest.raises(AlreadyDone) as failed:
        await connector((400, {"ok": False, "code": 400, "description": long})).identify()
    assert len(str(failed.value)) <= len("identify: ") + 300


async def test_a_200_that_is_not_ok_is_permanent():
    with pytest.raises(PermanentError):
        await connector((200, {"ok": False, "code": 500, "description": "odd"})).identify()


# -- webhooks -----------------------------------------------------------------------------------

async def test_a_path_list_condition_holds_when_any_path_has_a_value():
    tg = connector()
    texts = []
    for item in ({"n": 1, "text": "a"}, {"n": 2, "caption": "b"}, {"n": 3, "new_member": {}}):
        changes = await tg.parse_webhook(delivery(json.dumps({"id": 1, "item": item}).encode()))
        texts += [m.text for m in changes.messages]
    assert texts == ["a", "b"]


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"item": {}}'])
def test_an_ignored_malformed_delivery_is_acknowledged_and_not_stored(body):
    accepted = connector(malformed="ignore").accept_webhook(delivery(body))
    assert accepted.delivery_id is None and accepted.answer.status_code == 200


def test_a_malformed_delivery_is_refused_by_default_and_a_good_one_kept():
    tg = connector()
    with pytest.raises(MalformedDelivery):
        tg.accept_webhook(delivery(b"not json"))
    assert connector(malformed="ignore").accept_webhook(delivery(b'{"id": 7}')).delivery_id == "7"


# -- history --------------------------------------------------------------------------------------

async def test_a_platform_without_a_history_request_has_empty_history():
    page = await connector().fetch_history_page(ChatData(external_chat_id="c"), None)
    assert (page.messages, page.next_cursor) == ([], None)
