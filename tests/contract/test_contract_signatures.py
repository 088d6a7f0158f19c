"""Every platform that declares its webhook verification, by existing: every documented
signature vector verifies (or is refused) as documented, and every handshake is answered."""

from __future__ import annotations

from typing import Any

import pytest
from contractsupport import LOADED, PLATFORMS, declares, fixtures, key_credential, sign

from syncd import providers
from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import MalformedDelivery, SignatureError
from syncd.kit.http import ProviderHttp
from syncd.kit.templates import placeholders
from syncd.universal import WebhookRequest


def connector(platform: str, credentials: dict[str, Any], clock: float,
              webhook_url: str = "https://syncd.test/webhooks/x/1") -> Any:
    """The platform's connector with ``credentials`` over placeholders for every other field."""
    cls = providers.connector_for(LOADED[platform])
    ctx = ConnectorContext(http=ProviderHttp("http://platform.invalid"), mapping=LOADED[platform].mapping,
                           webhook_url=webhook_url, clock=lambda: clock)
    filler = {(info.alias or name): "1234567890:" + "x" * 35 for name, info in cls.Credentials.model_fields.items()}
    return cls(cls.Credentials.model_construct(**{**filler, **credentials}), {}, ctx)


def vectors() -> list[Any]:
    found = []
    for platform in PLATFORMS:
        if not declares(platform):
            continue
        for i, vector in enumerate(fixtures(platform).get("signature_vectors") or []):
            if "headers" in vector and "body" in vector:
                found.append(pytest.param(platform, vector, id=f"{platform}-{i}"))
    return found


@pytest.mark.parametrize(("platform", "vector"), vectors())
def test_a_documented_signature_vector_verifies_as_documented(platform, vector):
    verifiers = LOADED[platform].manifest.webhook.verify
    names = {key_credential(v) for v in verifiers} - {None}
    headers = {k.lower(): v for k, v in vector["headers"].items()}
    stamps = [headers.get((v.timestamp_header or "").lower()) for v in verifiers if v.timestamp_header]
    clock = float(stamps[0]) if stamps and stamps[0] else vector.get("now_unix", 1e9)
    url = vector.get("url", "https://syncd.test/hook")
    request = WebhookRequest(method=vector.get("method", "POST"), url=url, headers=headers,
                             query=vector.get("params") or {}, body=(vector["body"] or "").encode())
    # The URL the platform was given is the vector's, without the query the platform adds.
    subject = connector(platform, {name: vector["secret"] for name in names}, clock, url.split("?")[0])
    if vector.get("expect_valid", True):
        try:
            subject.accept_webhook(request)
        except MalformedDelivery:
            pass  # verified; the body is a form the platform also posts, not an event
    else:
        with pytest.raises(SignatureError):
            subject.accept_webhook(request)


def handshakes() -> list[Any]:
    return [pytest.param(p, i, h, id=f"{p}-{h.type}") for p in PLATFORMS
            for i, h in enumerate(LOADED[p].manifest.webhook.handshakes)]


@pytest.mark.parametrize(("platform", "index", "spec"), handshakes())
def test_a_handshake_is_answered_and_a_wrong_one_refused(platform, index, spec):
    secret = "contract-secret-0123456789abcdef"
    names = {key_credential(v) for v in LOADED[platform].manifest.webhook.verify} | {
        n.split(".", 1)[1] for n in placeholders(spec.expect or spec.key or "") if n.startswith("credentials.")}
    subject = connector(platform, {n: secret for n in names - {None}}, 1e9)
    if spec.type in ("echo", "crc"):
        query = {**spec.query, spec.param: "challenge-42", **({spec.token: secret} if spec.token else {})}
        answer = subject.accept_webhook(WebhookRequest("GET", "https://syncd.test/h", {}, query, b"")).answer
        assert answer.status_code == 200 and answer.body is not None
        if spec.type == "echo":
            assert answer.body == "challenge-42"
            wrong = {**query, spec.token: "a-guess"} if spec.token else None
            if wrong:
                try:
                    refused = subject.accept_webhook(WebhookRequest("GET", "https://syncd.test/h", {}, wrong, b""))
                except SignatureError:
                    return
                assert refused.delivery_id is None and 400 <= refused.answer.status_code < 500
        return
    body: dict[str, Any] = {c.path: c.equals for c in spec.when if c.equals is not None}
    for name in placeholders(str(spec.answer)):
        if name.startswith("body."):
            body[name.split(".", 1)[1]] = "challenge-42"
    import json

    request = WebhookRequest("POST", "https://syncd.test/h", {"content-type": "application/json"}, {},
                             json.dumps(body).encode())
    scope = subject.scope(header=request.headers, query=request.query, url=request.url)
    accepted = subject.accept_webhook(sign(LOADED[platform].manifest.webhook.verify, request, scope, 1e9))
    assert accepted.delivery_id is None and accepted.answer.status_code == 200
    if "challenge-42" in str(body):
        assert "challenge-42" in str(accepted.answer.body)
    forged = WebhookRequest("POST", "https://syncd.test/h", {"content-type": "application/json"}, {},
                            json.dumps(body).encode())
    with pytest.raises(SignatureError):
        subject.accept_webhook(forged)
