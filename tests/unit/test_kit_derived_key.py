"""An HMAC verifier whose key is derived per delivery (``keyDigest``: the hex digest of the
rendered key template, e.g. of "{timestamp};{secret}"), with a millisecond timestamp in its
replay window, and whose derived key the answer carries (``answerHeader``)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from syncd.kit.errors import SignatureError
from syncd.kit.manifest_webhook import Verifier
from syncd.kit.signatures import verify
from syncd.universal import WebhookRequest

SECRET = "s" * 40
NOW = 1_700_000_000.0
VERIFIER = Verifier.model_validate({
    "type": "hmac", "header": "X-Sig", "timestampHeader": "X-Ts", "timestampUnit": "ms",
    "key": "{header.x-ts};{credentials.secret}", "keyDigest": "sha256", "answerHeader": "X-Proof",
})


def _request(stamp_ms: int, secret: str = SECRET, body: bytes = b'{"events":{}}') -> WebhookRequest:
    key = hashlib.sha256(f"{stamp_ms};{secret}".encode()).hexdigest()
    signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(method="POST", url="https://x/y", headers={"x-ts": str(stamp_ms), "x-sig": signature},
                          query={}, body=body)


def _verify(request: WebhookRequest) -> dict[str, str]:
    scope = {"credentials": {"secret": SECRET}, "header": request.headers}
    return verify([VERIFIER], request, scope, now=NOW, max_skew_s=300)


def test_a_delivery_signed_with_the_derived_key_passes_and_the_answer_carries_that_key():
    stamp = int(NOW * 1000)
    assert _verify(_request(stamp)) == {"X-Proof": hashlib.sha256(f"{stamp};{SECRET}".encode()).hexdigest()}


def test_milliseconds_are_read_as_such_in_the_replay_window():
    assert _verify(_request(int((NOW - 299) * 1000)))
    with pytest.raises(SignatureError, match="replay window"):
        _verify(_request(int((NOW - 301) * 1000)))


def test_a_key_derived_from_another_secret_or_another_timestamp_is_refused():
    with pytest.raises(SignatureError):
        _verify(_request(int(NOW * 1000), secret="t" * 40))
    request = _request(int(NOW * 1000))
    request.headers["x-ts"] = str(int(NOW * 1000) + 1)  # the signature was made for another stamp
    with pytest.raises(SignatureError):
        _verify(request)


def test_only_an_hmac_verifier_derives_its_key_or_answers_it():
    with pytest.raises(ValidationError, match="keyDigest"):
        Verifier.model_validate({"type": "token", "header": "X-T", "value": "{credentials.t}", "answerHeader": "X-P"})
