"""The compiled accept (``syncd.kit.accepting``) answers every delivery as the manifest's
generic accept does: the same refusals with the same reasons, the same challenge answers,
drops, delivery ids and answer headers; and manifests it cannot say exactly are left to the
generic accept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

from syncd.kit.accepting import compile_accept
from syncd.kit.connector import ConnectorContext
from syncd.kit.declarative import ManifestConnector
from syncd.kit.errors import MalformedDelivery, SignatureError
from syncd.kit.http import RetryPolicy
from syncd.kit.manifest import Manifest
from syncd.mapping import Mapping
from syncd.universal import WebhookRequest

SECRET = "s3cr3t-signing"
TEAM = "T0TEAM"
NOW = time.time()


def manifest(verifier: dict[str, Any] | None = None, **webhook: Any) -> Manifest:
    return Manifest.model_validate({
        "platform": "planned",
        "api": {"root": "https://api.planned.test"},
        "credentials": {"signingSecret": {"secret": True}, "teamId": {}},
        "webhook": {
            "verify": [verifier or {"type": "hmac", "header": "X-Sig", "prefix": "v0=", "key": "{credentials.signingSecret}",
                                    "payload": "v0:{header.x-stamp}:{body}", "timestampHeader": "X-Stamp"}],
            "handshakes": [{"type": "challenge", "when": [{"path": "type", "equals": "url_verification"}],
                            "answer": {"challenge": "{body.challenge}"}}],
            "accept": [{"when": [{"path": "type", "equals": "event_callback"},
                                 {"path": "team_id", "equals": "{credentials.teamId}"}]}],
            "deliveryId": {"path": "event_id"},
            **webhook,
        },
        "mapping": {"message": {"externalChatId": {"const": "c"}, "externalMessageId": {"path": "n"}}},
    })


def connector(spec: Manifest) -> ManifestConnector:
    cls = ManifestConnector.bind(spec)
    creds = cls.Credentials.model_validate({"signingSecret": SECRET, "teamId": TEAM})
    http = cls.make_http("https://api.planned.test", creds, policy=RetryPolicy(max_retries=0), timeout_s=5,
                         transport=httpx.MockTransport(lambda _: httpx.Response(200, json={})))
    ctx = ConnectorContext(http=http, mapping=Mapping("planned", spec.mapping, "planned.yaml"),
                           webhook_url="https://syncd.test/hook", clock=lambda: NOW)
    return cls(creds, {}, ctx)


def signed(body: Any, *, stamp: float = NOW, secret: str = SECRET, prefix: str = "v0=",
           method: str = "POST", drop: str | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    digest = hmac.new(secret.encode(), f"v0:{int(stamp)}:".encode() + raw, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "x-stamp": str(int(stamp)), "x-sig": prefix + digest}
    headers.pop(drop or "", None)
    return WebhookRequest(method, "https://syncd.test/hook", headers, {}, raw, raw_query="")


def outcome(accept: Any, request: WebhookRequest) -> Any:
    try:
        accepted = accept(request)
    except (SignatureError, MalformedDelivery) as exc:
        return type(exc).__name__, str(exc)
    if accepted is None:
        return None
    answer = accepted.answer
    return accepted.delivery_id, answer.status_code, answer.body, answer.media_type, answer.headers


EVENT = {"type": "event_callback", "team_id": TEAM, "event_id": "Ev01", "event": {"type": "message"}}
DELIVERIES = {
    "a valid delivery": signed(EVENT),
    "another team's": signed({**EVENT, "team_id": "T0OTHER"}),
    "not an event callback": signed({**EVENT, "type": "app_rate_limited"}),
    "no delivery id": signed({k: v for k, v in EVENT.items() if k != "event_id"}),
    "a numeric delivery id": signed({**EVENT, "event_id": 7}),
    "a body that is not JSON": signed(b"command=/hello&text=hi"),
    "a JSON list": signed([EVENT]),
    "a wrong signature": signed(EVENT, secret="not the secret"),
    "no signature": signed(EVENT, drop="x-sig"),
    "no prefix": signed(EVENT, prefix=""),
    "no timestamp": signed(EVENT, drop="x-stamp"),
    "a stale timestamp": signed(EVENT, stamp=NOW - 3600),
    "a challenge": signed({"type": "url_verification", "challenge": "abc"}),
}


@pytest.mark.parametrize("malformed", ["ignore", "refuse"])
@pytest.mark.parametrize("name", list(DELIVERIES))
def test_every_delivery_is_answered_as_the_generic_accept_answers_it(name, malformed):
    hook = connector(manifest(malformed=malformed))
    assert hook._accept_plan() is not None
    request = DELIVERIES[name]
    assert outcome(hook.accept_webhook, request) == outcome(hook._accept_declared, request)


def test_a_valid_delivery_is_accepted_by_the_plan_itself():
    hook = connector(manifest())
    plan = hook._accept_plan()
    assert plan is not None
    accepted = plan.accept(DELIVERIES["a valid delivery"], NOW, 300)
    assert accepted is not None and accepted.delivery_id == "Ev01"
    assert plan.accept(DELIVERIES["a challenge"], NOW, 300) is None  # answered by the generic accept
    assert outcome(hook.accept_webhook, DELIVERIES["a challenge"])[2] == {"challenge": "abc"}


@pytest.mark.parametrize("verifier", [
    {"type": "hmac", "header": "X-Sig", "key": "{credentials.signingSecret}", "encoding": "base64",
     "payload": "{bodySha256}", "answerHeader": "X-Proof"},
    {"type": "hmac", "header": "X-Sig", "key": "{credentials.signingSecret}", "algorithm": "sha1",
     "payload": "{credentials.teamId}|{body}"},
    {"type": "hmac", "header": "X-Sig", "key": "{credentials.signingSecret}", "payload": "{header.x-missing}{body}"},
])
def test_other_hmac_layouts_compile_to_the_same_answers(verifier):
    hook = connector(manifest(verifier))
    assert hook._accept_plan() is not None
    raw = json.dumps(EVENT).encode()
    layouts = {
        "base64": base64.b64encode(hmac.new(SECRET.encode(), hashlib.sha256(raw).digest(), hashlib.sha256).digest()),
        "sha1": hmac.new(SECRET.encode(), f"{TEAM}|".encode() + raw, hashlib.sha1).hexdigest().encode(),
    }
    for signature in [*layouts.values(), b"nope"]:
        request = WebhookRequest("POST", "https://syncd.test/hook", {"x-sig": signature.decode()}, {}, raw, raw_query="")
        assert outcome(hook.accept_webhook, request) == outcome(hook._accept_declared, request)


@pytest.mark.parametrize("verifier", [
    {"type": "hmac", "header": "X-Sig", "key": "{credentials.signingSecret}", "payload": "{url}{body}"},
    {"type": "hmac", "header": "X-Sig", "key": "{environment.webhookSecret}", "payload": "{body}"},
    {"type": "hmac", "header": "X-Sig", "key": "{credentials.signingSecret}", "payload": "{formSorted}"},
    {"type": "hmac", "header": "X-Sig", "key": "{credentials.signingSecret}", "ifPresent": True},
])
def test_what_the_plan_cannot_say_exactly_is_left_to_the_generic_accept(verifier):
    spec = manifest(verifier)
    assert compile_accept(spec.webhook, connector(spec).scope(), lambda request, body: "id") is None


@pytest.mark.parametrize("verifier", [
    {"type": "token", "header": "X-Token", "value": "{credentials.signingSecret}"},
    {"type": "token", "param": "token", "prefix": "t:", "value": "{credentials.signingSecret}"},
    {"type": "token", "header": "X-Token", "value": "{credentials.missing}"},
])
@pytest.mark.parametrize("presented", [f"t:{SECRET}", SECRET, "t:wrong", "", None])
def test_a_shared_token_compiles_to_the_same_answers(verifier, presented):
    hook = connector(manifest(verifier))
    assert hook._accept_plan() is not None
    given = {} if presented is None else {"x-token": presented}
    query = {} if presented is None else {"token": presented}
    request = WebhookRequest("POST", "https://syncd.test/hook", given, query, json.dumps(EVENT).encode(), raw_query="")
    assert outcome(hook.accept_webhook, request) == outcome(hook._accept_declared, request)
