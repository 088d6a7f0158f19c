"""Kit pieces for platforms that sign more than a body, or sign one of two ways: the raw SHA-256
digest of the body and the query (sorted, or as received) in signed payloads; ``verifyMode:
any`` (a current scheme or a legacy one; carrying neither, or no key configured, is refused);
``format: params`` (GET query parameters and form fields as one document); delivery ids from
the first template that resolves."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import SignatureError
from syncd.kit.manifest import Manifest
from syncd.kit.manifest_webhook import Verifier
from syncd.kit.signatures import verify_any
from syncd.kit.signed import payload_bytes
from syncd.universal import WebhookRequest

KEY = "k3y"
HMAC = Verifier.model_validate({"type": "hmac", "header": "Sig", "key": "{credentials.key}", "onlyIf": "{credentials.key}",
                                "payload": "{header.ts}\n{querySorted}\n{bodySha256}", "encoding": "base64"})
TOKEN = Verifier.model_validate({"type": "token", "header": "Token", "value": "{credentials.key}",
                                 "onlyIf": "{credentials.key}"})


def request(body: bytes = b"", query: dict[str, str] | None = None, url: str = "https://h/p",
            **headers: str) -> WebhookRequest:
    return WebhookRequest("GET", url, {k.lower(): v for k, v in headers.items()}, query or {}, body)


def scope(req: WebhookRequest, key: str | None = KEY) -> dict[str, Any]:
    return {"credentials": {"key": key}, "header": req.headers, "webhookUrl": "https://public/p"}


def test_the_body_digest_is_its_raw_32_bytes_and_the_query_is_sorted_and_form_encoded():
    req = request(b"payload", {"b": "2 +", "a": "1"}, ts="7")
    signed = payload_bytes(HMAC.payload, req, scope(req))
    assert signed == b"7\na=1&b=2+%2B\n" + hashlib.sha256(b"payload").digest()
    assert payload_bytes("{body}|{bodySha256}", req, {}) == b"payload|" + hashlib.sha256(b"payload").digest()


def test_the_query_as_received_follows_the_public_url():
    req = request(url="http://10.0.0.1:8080/p?z=1&a=%20")
    assert payload_bytes("{webhookUrl}{urlQuery}", req, scope(req)) == b"https://public/p?z=1&a=%20"
    bare = request(url="http://10.0.0.1:8080/p")
    assert payload_bytes("{webhookUrl}{urlQuery}", bare, scope(bare)) == b"https://public/p"


def _legacy(req: WebhookRequest) -> WebhookRequest:
    digest = hmac.new(KEY.encode(), payload_bytes(HMAC.payload, req, scope(req)), hashlib.sha256).digest()
    req.headers["sig"] = base64.b64encode(digest).decode()
    return req


def test_any_mode_accepts_one_valid_scheme_of_those_carried():
    check = lambda req: verify_any([TOKEN, HMAC], req, scope(req), now=0, max_skew_s=300)
    check(request(token=KEY))
    check(_legacy(request(b"x", {"a": "1"}, ts="5")))
    check(_legacy(request(b"x", ts="5", token="a-wrong-token")))  # one passing is enough


@pytest.mark.parametrize(("why", "req", "key", "message"), [
    ("neither carried", request(), KEY, "none of Token, Sig is present"),
    ("no key configured", request(token=""), None, "no verification applies"),
    ("the carried one fails", request(token="guess"), KEY, "Token does not match"),
])
def test_any_mode_refuses(why, req, key, message):
    with pytest.raises(SignatureError, match=message):
        verify_any([TOKEN, HMAC], req, scope(req, key), now=0, max_skew_s=300)


def test_any_mode_refuses_a_tampered_query():
    req = _legacy(request(b"", {"status": "delivered"}, ts="5"))
    req.query["status"] = "failed"
    with pytest.raises(SignatureError, match="Sig does not match"):
        verify_any([HMAC], req, scope(req), now=0, max_skew_s=300)


MANIFEST = Manifest.model_validate({
    "platform": "kitparams",
    "credentials": {"key": {"secret": True}},
    "webhook": {"verifyMode": "any", "verify": [TOKEN.model_dump(by_alias=True, exclude_defaults=True)],
                "format": "params", "deliveryId": {"template": ["{body.id}:{body.status}", "{body.id}"]}},
})


def test_params_join_query_and_form_and_the_first_resolving_template_is_the_delivery_id():
    cls = ManifestConnector.bind(MANIFEST)
    connector = object.__new__(cls)
    report = request(query={"id": "m1", "status": "delivered"}, token=KEY)
    assert connector.parse_body(report) == {"id": "m1", "status": "delivered"}
    assert connector._delivery_id(report, connector.parse_body(report)) == "m1:delivered"
    inbound = WebhookRequest("POST", "https://h/p?src=x", {}, {"src": "x"}, b"id=m2&body=hi")
    assert connector.parse_body(inbound) == {"src": "x", "id": "m2", "body": "hi"}
    assert connector._delivery_id(inbound, connector.parse_body(inbound)) == "m2"
