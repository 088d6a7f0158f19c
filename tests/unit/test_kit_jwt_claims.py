"""The kit's ``jwt`` verifier: accepted algorithms, required claims, ``nbf``/``exp`` against
syncd's clock with leeway, and claims that are hashes of the public URL and of the body
(absent for an empty body), checked on MessageBird's documented vectors and on made tokens."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from syncd.kit.errors import SignatureError
from syncd.kit.manifest_webhook import Verifier
from syncd.kit.signatures import verify
from syncd.universal import WebhookRequest

VECTORS = [v for v in json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "messagebird.json").read_text())[
    "signature_vectors"] if v["scheme"] == "MessageBird-Signature-JWT"]
#: Long enough for HS512 (RFC 7518 section 3.2 asks for a key as long as the hash).
KEY = "signing-key-" + "0123456789abcdef" * 4
URL = "https://syncd.example/webhooks/p/i1"
VERIFIER = Verifier.model_validate({
    "type": "jwt", "header": "Signature-JWT", "key": "{credentials.key}", "algorithms": ["HS256", "HS384", "HS512"],
    "require": ["iss", "nbf", "exp"], "leewayS": 1,
    "claims": {"iss": {"equals": "Issuer"}, "url_hash": {"sha256": "{webhookUrl}"},
               "payload_hash": {"sha256": "{body}", "absentIfEmpty": True}},
})


def check(token: str, body: bytes = b"", *, now: float = 1000, url: str = URL, verifier: Verifier = VERIFIER,
          key: str = KEY) -> None:
    request = WebhookRequest("POST", "http://10.0.0.1:8080/webhooks/p/i1", {"signature-jwt": token}, {}, body)
    verify([verifier], request, {"credentials": {"key": key}, "webhookUrl": url, "body": body}, now=now, max_skew_s=300)


def token(body: bytes = b"", *, alg: str = "HS256", key: str = KEY, **over: Any) -> str:
    claims = {"iss": "Issuer", "nbf": 990, "exp": 1050, "jti": "j1", "url_hash": hashlib.sha256(URL.encode()).hexdigest()}
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    claims.update(over)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=alg)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_messagebirds_documented_vectors(vector):
    verifier = VERIFIER.model_copy(update={"claims": {**VERIFIER.claims, "iss": VERIFIER.claims["iss"].model_copy(
        update={"equals": "MessageBird"})}})
    body = (vector["body"] or "").encode()
    run = lambda: check(vector["headers"]["MessageBird-Signature-JWT"], body, now=vector["now_unix"],
                        url=vector["url"], verifier=verifier, key=vector["secret"])
    if vector["expect_valid"]:
        run()
    else:
        with pytest.raises(SignatureError):
            run()


def test_a_token_with_matching_hashes_is_accepted_with_any_declared_algorithm():
    for alg in ("HS256", "HS384", "HS512"):
        check(token(b'{"a":1}', alg=alg), b'{"a":1}')
    check(token())  # no body, no payload_hash


@pytest.mark.parametrize(("why", "make", "body", "now"), [
    ("tampered body", lambda: token(b'{"a":1}'), b'{"a":2}', 1000),
    ("hash for an empty body", lambda: token(b"x"), b"", 1000),
    ("missing body hash", lambda: token(), b"x", 1000),
    ("another URL", lambda: token(url_hash=hashlib.sha256(b"https://elsewhere/").hexdigest()), b"", 1000),
    ("another issuer", lambda: token(iss="Someone"), b"", 1000),
    ("not valid yet", lambda: token(), b"", 988),
    ("expired", lambda: token(), b"", 1051),
    ("no exp", lambda: token(exp=None), b"", 1000),
    ("wrong key", lambda: token(key="another-key-" + "0123456789abcdef" * 4), b"", 1000),
    ("alg none", lambda: jwt.encode({"iss": "Issuer", "nbf": 990, "exp": 1050}, None, algorithm="none"), b"", 1000),
])
def test_a_token_that_does_not_fit_is_refused(why, make, body, now):
    with pytest.raises(SignatureError):
        check(make(), body, now=now)


def test_the_leeway_is_one_second_each_side():
    check(token(), now=989)
    check(token(), now=1050.5)


def test_a_claim_is_checked_by_exactly_one_rule():
    with pytest.raises(ValueError):
        Verifier.model_validate({"type": "jwt", "header": "h", "key": "k", "claims": {"x": {}}})


def test_a_public_key_configured_as_the_secret_is_refused_every_time():
    # Its checks are made once per key: a refused key must stay refused, not be remembered as fine.
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    for _ in range(2):
        with pytest.raises(SignatureError, match="InvalidKeyError"):
            check(token(), key=pem)


def test_a_key_seen_before_still_refuses_a_token_signed_with_another():
    check(token())
    with pytest.raises(SignatureError, match="InvalidSignatureError"):
        check(token(key="a-third-key-" + "0123456789abcdef" * 4))
