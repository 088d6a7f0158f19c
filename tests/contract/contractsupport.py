"""What the contract suite needs to drive any platform from its manifest alone: the loaded
platforms, their documented fixtures, and a signer that is the inverse of the manifest's
verifiers (so any platform's samples can be delivered signed, without platform code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt

from syncd import providers
from syncd.kit import templates
from syncd.kit.loader import Loaded, load_all
from syncd.kit.manifest_webhook import Verifier
from syncd.kit.signed import payload_bytes
from syncd.universal import WebhookRequest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOADED: dict[str, Loaded] = load_all()
PLATFORMS = sorted(LOADED)


def fixtures(platform: str) -> dict[str, Any]:
    path = FIXTURES / f"{platform}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def declares(platform: str) -> bool:
    """The platform's verification is declared in its manifest (not a module's own code)."""
    return bool(LOADED[platform].manifest.webhook.verify)


def key_credential(verifier: Verifier) -> str | None:
    """The credential a verifier keys its check with (``{credentials.token}`` -> ``token``)."""
    template = verifier.key if verifier.type != "token" else verifier.value
    names = templates.placeholders(template or "")
    return names[0].split(".", 1)[1] if len(names) == 1 and names[0].startswith("credentials.") else None


def sign(verifiers: list[Verifier], request: WebhookRequest, scope: dict[str, Any], now: float) -> WebhookRequest:
    """``request`` with every header or query parameter the verifiers check, made as the
    platform makes them."""
    for verifier in verifiers:
        if verifier.only_if and not templates.render(verifier.only_if, scope):
            continue
        if verifier.path:
            request, scope = _sign_in_body(verifier, request, scope, now)
            continue
        if verifier.timestamp_header:
            request.headers[verifier.timestamp_header.lower()] = str(int(now * (1000 if verifier.timestamp_unit == "ms" else 1)))
            scope = {**scope, "header": request.headers}
        key = str(templates.render(verifier.key or verifier.value or "", scope) or "")
        if verifier.key_digest:
            key = hashlib.new(verifier.key_digest, key.encode()).hexdigest()
        if verifier.type == "hmac":
            digest = hmac.new(key.encode(), payload_bytes(verifier.payload, request, scope),
                              getattr(hashlib, verifier.algorithm)).digest()
            value = digest.hex() if verifier.encoding == "hex" else base64.b64encode(digest).decode()
        elif verifier.type == "jwt":
            value = jwt.encode(jwt_claims(verifier, request, scope, now), key, algorithm=verifier.algorithms[0])
        else:
            value = key
        if verifier.header:
            request.headers[verifier.header.lower()] = verifier.prefix + value
        else:
            request.query[verifier.param or ""] = verifier.prefix + value
    return request


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for step in parents:
        doc = doc.setdefault(step, {})
    doc[last] = value


def _sign_in_body(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any],
                  now: float) -> tuple[WebhookRequest, dict[str, Any]]:
    """A JSON delivery that carries its own signature: stamped now, signed, written back."""
    if "form" in request.headers.get("content-type", ""):
        return _sign_in_form(verifier, request, scope, now)
    try:
        doc = json.loads(request.body)
    except ValueError:
        return request, scope  # not a document: nothing to sign it in
    if verifier.timestamp_path:
        _put(doc, verifier.timestamp_path, str(int(now)))
    scope = {**scope, "delivery": doc}
    _put(doc, verifier.path or "", _signature(verifier, request, scope))
    request.body = json.dumps(doc).encode()
    return request, scope


def _signature(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any]) -> str:
    key = str(templates.render(verifier.key or "", scope) or "")
    digest = hmac.new(key.encode(), payload_bytes(verifier.payload, request, scope),
                      getattr(hashlib, verifier.algorithm)).digest()
    return verifier.prefix + (digest.hex() if verifier.encoding == "hex" else base64.b64encode(digest).decode())


def _sign_in_form(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any],
                  now: float) -> tuple[WebhookRequest, dict[str, Any]]:
    """A form carries its signature fields flat: each path the verifier reads is the field named
    by its last segment (``signature.token`` -> ``token``)."""
    fields = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    if verifier.timestamp_path:
        fields[verifier.timestamp_path.rsplit(".", 1)[-1]] = str(int(now))
    doc: dict[str, Any] = {}
    for name in templates.placeholders(verifier.payload):
        if name.startswith("delivery."):
            field = name.rsplit(".", 1)[-1]
            _put(doc, name.removeprefix("delivery."), fields.setdefault(field, f"contract-{field}-{now}"))
    scope = {**scope, "delivery": doc}
    fields[(verifier.path or "").rsplit(".", 1)[-1]] = _signature(verifier, request, scope)
    request.body = urlencode(fields).encode()
    return request, scope


def jwt_claims(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], now: float) -> dict[str, Any]:
    """The claims a platform puts in its JWT: times around ``now`` and each declared claim."""
    claims: dict[str, Any] = {"iat": int(now), "nbf": int(now), "exp": int(now) + 60, "jti": "contract"}
    for name, claim in verifier.claims.items():
        if claim.sha256 is not None:
            payload = payload_bytes(claim.sha256, request, scope)
            if payload or not claim.absent_if_empty:
                claims[name] = hashlib.sha256(payload).hexdigest()
        else:
            claims[name] = str(templates.render(claim.equals, scope) or "")
    return claims


def query_string(request: WebhookRequest) -> str:
    return urlencode(request.query)


def simulator_of(platform: str) -> Any | None:
    """A new simulator of the platform, if it ships one that tells its trial credentials."""
    try:
        sim = providers.simulator(platform)
    except KeyError:
        return None
    return sim if hasattr(sim, "trial_credentials") else None
