"""Platform-level values a manifest declares (``environment``: ``SYNCD_<PLATFORM>_<NAME>``) and
the shared webhook URL's key (``sharedKey``), used only for deliveries received there."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from syncd.kit.declarative import ManifestConnector, environment
from syncd.kit.errors import SignatureError
from syncd.kit.manifest import Manifest
from syncd.kit.manifest_webhook import Verifier
from syncd.kit.signatures import verify
from syncd.universal import WebhookRequest

MANIFEST = Manifest.model_validate({
    "platform": "hub", "capabilities": {"webhooks": False},
    "credentials": {"token": {"secret": True}},
    "environment": {"webhookSecret": {"secret": True}, "region": {}},
})
VERIFIER = Verifier.model_validate({"type": "hmac", "header": "X-Sig", "key": "{credentials.token}",
                                    "sharedKey": "{environment.webhookSecret}"})


def test_values_come_from_syncd_platform_name_variables_and_secret_ones_are_scrubbed(monkeypatch):
    monkeypatch.setenv("SYNCD_HUB_WEBHOOK_SECRET", "platform-level-secret")
    monkeypatch.setenv("SYNCD_HUB_REGION", "eu")
    assert environment(MANIFEST) == {"webhookSecret": "platform-level-secret", "region": "eu"}
    cls = ManifestConnector.bind(MANIFEST)
    secrets = cls.secrets(cls.Credentials.model_validate({"token": "own-token-1"}))
    assert "platform-level-secret" in secrets and "own-token-1" in secrets and "eu" not in secrets


def _signed(key: str, *, shared: bool) -> WebhookRequest:
    body = b'{"a":1}'
    signature = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(method="POST", url="https://x", headers={"x-sig": signature}, query={}, body=body,
                          shared=shared)


@pytest.mark.parametrize(("key", "shared", "passes"), [
    ("own-token-1", False, True), ("platform-level-secret", True, True),
    ("own-token-1", True, False), ("platform-level-secret", False, False),
])
def test_the_shared_url_is_checked_with_the_shared_key_and_only_there(key, shared, passes):
    scope = {"credentials": {"token": "own-token-1"}, "environment": {"webhookSecret": "platform-level-secret"}}
    request = _signed(key, shared=shared)
    if passes:
        verify([VERIFIER], request, scope, now=0, max_skew_s=300)
    else:
        with pytest.raises(SignatureError):
            verify([VERIFIER], request, scope, now=0, max_skew_s=300)


def test_without_the_platform_level_value_the_shared_url_refuses_everything():
    with pytest.raises(SignatureError, match="not configured"):
        verify([VERIFIER], _signed("", shared=True), {"credentials": {"token": "own-token-1"}, "environment": {}},
               now=0, max_skew_s=300)
