"""Twilio's own RequestValidator (the ``twilio`` SDK) against the documented vectors, the
simulator's signed deliveries, and syncd's verifier from the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from syncd import providers
from syncd.kit.connector import ConnectorContext
from syncd.kit.errors import SignatureError
from syncd.kit.http import ProviderHttp
from syncd.kit.loader import load_all
from syncd.providers.twilio.sim import TwilioSimulator
from syncd.universal import WebhookRequest

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "twilio.json").read_text())
LOADED = load_all()["twilio"]


def connector(token: str, webhook_url: str):
    cls = providers.connector_for(LOADED)
    ctx = ConnectorContext(http=ProviderHttp("http://platform.invalid"), mapping=LOADED.mapping,
                           webhook_url=webhook_url, clock=lambda: 1e9)
    creds = cls.Credentials.model_construct(accountSid="AC" + "0" * 32, authToken=token, phoneNumberSid="PN" + "0" * 32)
    return cls(creds, {}, ctx)


def form_request(url: str, body: bytes, signature: str) -> WebhookRequest:
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&")) if "?" in url else {}
    return WebhookRequest("POST", "http://127.0.0.1:9000/behind-proxy" + (url[url.index("?"):] if query else ""),
                          {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
                          query, body)


@pytest.mark.parametrize("vector", FIXTURE["signature_vectors"], ids=lambda v: v["source"][-30:])
def test_the_documented_vectors_verify_in_the_sdk_and_in_syncd(vector):
    from urllib.parse import urlencode
    signature = vector["headers"]["X-Twilio-Signature"]
    assert RequestValidator(vector["secret"]).validate(vector["url"], vector["params"], signature) \
        == vector["expect_valid"]
    public = vector["url"].split("?")[0]
    subject = connector(vector["secret"], public)
    request = form_request(vector["url"], urlencode(vector["params"]).encode(), signature)
    if vector["expect_valid"]:
        subject.accept_webhook(request)
    else:
        with pytest.raises(SignatureError):
            subject.accept_webhook(request)


def test_the_sdk_accepts_the_simulators_deliveries_and_so_does_syncd():
    sim = TwilioSimulator()
    public = "https://syncd.example.com/webhooks/twilio/abc"
    delivery = sim.inbound("+14155550101", "héllo & ünïcode", url=public)
    validator = RequestValidator(sim.auth_token)
    assert validator.validate(public, delivery.params, delivery.headers["x-twilio-signature"])
    assert validator.validate("https://syncd.example.com:443/webhooks/twilio/abc", delivery.params,
                              delivery.headers["x-twilio-signature"])
    accepted = connector(sim.auth_token, public).accept_webhook(
        form_request(public, delivery.body, delivery.headers["x-twilio-signature"]))
    assert accepted.delivery_id and accepted.answer.body == "<Response/>"
    assert accepted.answer.media_type == "text/xml"


def test_the_sdk_and_syncd_agree_on_a_json_body_with_body_sha256():
    validator = RequestValidator("12345")
    body = '{"property": "value", "boolean": true}'
    digest = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    url = f"https://mycompany.com/myapp.php?bodySHA256={digest}"
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body, signature)
    request = WebhookRequest("POST", "http://10.0.0.1/x?bodySHA256=" + digest,
                             {"content-type": "application/json", "x-twilio-signature": signature},
                             {"bodySHA256": digest}, body.encode())
    connector("12345", "https://mycompany.com/myapp.php").accept_webhook(request)
    request.body = body.replace("true", "false").encode()
    with pytest.raises(SignatureError):
        connector("12345", "https://mycompany.com/myapp.php").accept_webhook(request)
