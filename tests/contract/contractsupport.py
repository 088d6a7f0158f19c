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
from urllib.parse import urlencode

import jwt

from syncd import providers
from syncd.kit import templates
from syncd.kit.loader import Loaded, load_all
from syncd.kit.manifest import Verifier
from syncd.kit.signatures import payload_bytes
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
        if verifier.timestamp_header:
            request.headers[verifier.timestamp_header.lower()] = str(int(now))
            scope = {**scope, "header": request.headers}
        key = str(templates.render(verifier.key or verifier.value or "", scope) or "")
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
