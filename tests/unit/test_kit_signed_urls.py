"""Kit verifiers for platforms that sign a URL: the public URL the platform was given (not the
one a proxy forwarded), the default port added or removed, sorted form parameters with repeats,
and a JSON body covered by a digest in the signed URL's query."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from syncd.kit import signatures, signed
from syncd.kit.errors import SignatureError
from syncd.kit.manifest_webhook import Verifier
from syncd.universal import WebhookRequest

FORM = {"content-type": "application/x-www-form-urlencoded"}
PUBLIC = "https://hooks.example.com/webhooks/p/1"
VERIFIER = Verifier(type="hmac", header="X-Sig", key="{credentials.secret}", algorithm="sha1", encoding="base64",
                    payload="{publicUrl}{formSorted}", any_default_port=True, body_digest_param="bodySHA256")


def sig(text: str) -> str:
    return base64.b64encode(hmac.new(b"k", text.encode(), hashlib.sha1).digest()).decode()


def request(body: bytes, signed: str, headers: dict[str, str] | None = None, query: str = "") -> WebhookRequest:
    url = "http://10.0.0.1:8080/webhooks/p/1" + (f"?{query}" if query else "")
    params = dict(p.split("=", 1) for p in query.split("&")) if query else {}
    return WebhookRequest("POST", url, {**(headers or FORM), "x-sig": sig(signed)}, params, body)


def check(req: WebhookRequest, public: str = PUBLIC) -> None:
    scope = {"credentials": {"secret": "k"}, "url": req.url, "publicUrl": signed.public_url(public, req),
             "formSorted": signed.form_sorted(req)}
    signatures.verify([VERIFIER], req, scope, now=0, max_skew_s=300)


def test_the_form_is_sorted_by_name_then_value_with_exact_repeats_once():
    req = request(b"b=2&a=9&b=1&b=1", "", FORM)
    assert signed.form_sorted(req) == "a9b1b2"
    assert signed.form_sorted(request(b"b=2", "", {"content-type": "application/json"})) == ""


def test_the_public_url_is_signed_with_or_without_its_default_port():
    check(request(b"a=1", PUBLIC + "a1"))
    check(request(b"a=1", "https://hooks.example.com:443/webhooks/p/1a1"))
    check(request(b"a=1", PUBLIC + "a1"), public="https://hooks.example.com:443/webhooks/p/1")
    with pytest.raises(SignatureError):
        check(request(b"a=1", "https://hooks.example.com:8443/webhooks/p/1a1"))
    with pytest.raises(SignatureError):
        check(request(b"a=1", "http://10.0.0.1:8080/webhooks/p/1a1"))  # the URL behind the proxy
    with pytest.raises(SignatureError):
        check(request(b"a=2", PUBLIC + "a1"))


def test_port_toggling_keeps_everything_else():
    assert signed.port_toggled("https://u:p@h.example/x?q=1") == "https://u:p@h.example:443/x?q=1"
    assert signed.port_toggled("http://h.example:80/x") == "http://h.example/x"
    assert signed.port_toggled("http://h.example:81/x") == "http://h.example:81/x"


def test_a_json_body_is_covered_by_its_digest_in_the_signed_query():
    body = b'{"a": 1}'
    digest = hashlib.sha256(body).hexdigest()
    json_headers = {"content-type": "application/json"}
    check(request(body, f"{PUBLIC}?bodySHA256={digest}", json_headers, f"bodySHA256={digest}"))
    with pytest.raises(SignatureError, match="bodySHA256"):
        check(request(b'{"a": 2}', f"{PUBLIC}?bodySHA256={digest}", json_headers, f"bodySHA256={digest}"))
    with pytest.raises(SignatureError, match="bodySHA256"):
        check(request(body, PUBLIC, json_headers))  # no digest: the signature covers no body


def test_a_signature_carried_in_the_delivery_is_read_from_its_path_and_its_time_checked():
    body = {"sig": {"t": "1000", "n": "abc", "s": hmac.new(b"k", b"1000abc", hashlib.sha256).hexdigest()}}
    verifier = Verifier(type="hmac", path="sig.s", timestamp_path="sig.t", key="{credentials.secret}",
                        payload="{delivery.sig.t}{delivery.sig.n}")
    req = WebhookRequest("POST", "https://h/x", {}, {}, b"")
    scope = {"credentials": {"secret": "k"}, "delivery": body}
    signatures.verify([verifier], req, scope, now=1100, max_skew_s=300)
    with pytest.raises(SignatureError, match="replay window"):
        signatures.verify([verifier], req, scope, now=5000, max_skew_s=300)
    with pytest.raises(SignatureError, match="sig.s does not match"):
        signatures.verify([verifier], req, {**scope, "delivery": {"sig": {**body["sig"], "n": "abd"}}},
                          now=1100, max_skew_s=300)
    with pytest.raises(SignatureError, match="missing"):
        signatures.verify([verifier], req, {**scope, "delivery": {"sig": {"t": "1000"}}}, now=1100, max_skew_s=300)
