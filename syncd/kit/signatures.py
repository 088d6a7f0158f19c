"""Webhook verification and handshakes as a manifest declares them.

``verify`` checks every declared verifier (an HMAC over a payload template, a shared token, an
HS256 JWT); the first that fails raises ``SignatureError``, which the API answers with 401.
``handshake`` answers a platform's verification request (an echoed query parameter, a JSON
challenge, a hashed CRC response token) or returns ``None`` for an ordinary delivery. Nothing
here does I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt

from syncd.kit import templates
from syncd.kit.errors import HandshakeRefused, SignatureError
from syncd.kit.manifest import Handshake, Verifier
from syncd.universal import WebhookAccepted, WebhookAnswer, WebhookRequest


def payload_bytes(template: str, request: WebhookRequest, scope: dict[str, Any]) -> bytes:
    """The signed bytes: ``template`` rendered, with ``{body}`` as the raw body's bytes."""
    parts = template.split("{body}")
    rendered = [templates.render(part, scope) if part else "" for part in parts]
    if any(r is None for r in rendered):
        raise SignatureError("a part of the signed payload is missing")
    return request.body.join(str(r).encode() for r in rendered)


def _presented(verifier: Verifier, request: WebhookRequest) -> str:
    value = request.headers.get(verifier.header.lower()) if verifier.header else request.query.get(verifier.param or "")
    if not value:
        raise SignatureError(f"{verifier.header or verifier.param} is missing")
    if verifier.prefix:
        if not value.startswith(verifier.prefix):
            raise SignatureError(f"{verifier.header or verifier.param} has no {verifier.prefix!r} prefix")
        value = value[len(verifier.prefix):]
    return value


def _fresh(verifier: Verifier, request: WebhookRequest, now: float, max_skew_s: float) -> None:
    if not verifier.timestamp_header:
        return
    raw = request.headers.get(verifier.timestamp_header.lower(), "")
    try:
        stamp = float(raw)
    except ValueError:
        raise SignatureError(f"no valid {verifier.timestamp_header}") from None
    if abs(now - stamp) > max_skew_s:
        raise SignatureError("the delivery is outside the replay window")


def _hmac(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], key: str) -> None:
    presented = _presented(verifier, request)
    digest = hmac.new(key.encode(), payload_bytes(verifier.payload, request, scope),
                      getattr(hashlib, verifier.algorithm)).digest()
    expected = digest.hex() if verifier.encoding == "hex" else base64.b64encode(digest).decode()
    if not hmac.compare_digest(expected.lower() if verifier.encoding == "hex" else expected,
                               presented.strip().lower() if verifier.encoding == "hex" else presented.strip()):
        raise SignatureError(f"{verifier.header or verifier.param} does not match")


def verify(verifiers: list[Verifier], request: WebhookRequest, scope: dict[str, Any], *,
           now: float, max_skew_s: float) -> None:
    """Raise ``SignatureError`` unless the delivery passes every verifier that applies."""
    for verifier in verifiers:
        if verifier.only_if and not templates.render(verifier.only_if, scope):
            continue
        key = templates.render(verifier.key, scope) if verifier.key else None
        if verifier.type == "hmac":
            _fresh(verifier, request, now, max_skew_s)
            _hmac(verifier, request, scope, str(key or ""))
        elif verifier.type == "token":
            expected = str(templates.render(verifier.value, scope) or "")
            if not expected or not hmac.compare_digest(_presented(verifier, request).encode(), expected.encode()):
                raise SignatureError(f"{verifier.header or verifier.param} does not match")
        else:
            _jwt(verifier, request, scope, str(key or ""), now)


def _jwt(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], key: str, now: float) -> None:
    try:
        # Times are checked below against syncd's clock, not the library's.
        claims = jwt.decode(_presented(verifier, request), key, algorithms=list(verifier.algorithms),
                            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                     "verify_iat": False, "verify_iss": False, "require": list(verifier.require)})
    except jwt.PyJWTError as exc:
        raise SignatureError(f"JWT rejected ({type(exc).__name__})") from None
    leeway = verifier.leeway_s
    not_before, expires = _number(claims, "nbf"), _number(claims, "exp")
    if not_before is not None and now + leeway < not_before:
        raise SignatureError("JWT rejected (not valid yet)")
    if expires is not None and now - leeway >= expires:
        raise SignatureError("JWT rejected (expired)")
    for name, claim in verifier.claims.items():
        _claim(name, claim, claims.get(name), request, scope)


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SignatureError(f"JWT rejected ({name} is not a number)")
    return float(value)


def _claim(name: str, claim: Any, value: Any, request: WebhookRequest, scope: dict[str, Any]) -> None:
    if claim.sha256 is not None:
        payload = payload_bytes(claim.sha256, request, scope)
        if claim.absent_if_empty and not payload:
            if value is not None:
                raise SignatureError(f"JWT rejected ({name} given for an empty payload)")
            return
        expected = hashlib.sha256(payload).hexdigest()
    else:
        expected = str(templates.render(claim.equals, scope) or "")
    if not isinstance(value, str) or not hmac.compare_digest(value.encode(), expected.encode()):
        raise SignatureError(f"JWT rejected ({name} does not match)")


def _json(request: WebhookRequest) -> Any:
    try:
        return json.loads(request.body)
    except ValueError:
        return None


def handshake(handshakes: list[Handshake], request: WebhookRequest, scope: dict[str, Any], *,
              verified: bool) -> WebhookAccepted | None:
    """The answer to a verification request, or ``None``. GET handshakes are answered before
    signatures are checked (platforms do not sign them); body challenges only once verified."""
    for spec in handshakes:
        if spec.type in ("echo", "crc") and request.method == "GET" and not verified:
            value = request.query.get(spec.param or "")
            if value is None and spec.type == "echo" and spec.refuse_status is not None:
                return _refused(spec, f"no {spec.param}")  # deliveries are POSTed: a GET is a handshake
            if value is None:
                continue
            if spec.type == "echo":
                return _echo(spec, request, scope, value)
            key = str(templates.render(spec.key, scope) or "")
            digest = hmac.new(key.encode(), value.encode(), hashlib.sha256).digest()
            return WebhookAccepted(None, WebhookAnswer(200, {spec.field: spec.prefix + base64.b64encode(digest).decode()}))
        if spec.type == "challenge" and verified and request.method == "POST":
            body = _json(request)
            if isinstance(body, dict) and spec.when and all(templates.matches(body, c) for c in spec.when):
                return WebhookAccepted(None, WebhookAnswer(200, templates.render(spec.answer or {}, {**scope, "body": body})))
    return None


def _echo(spec: Handshake, request: WebhookRequest, scope: dict[str, Any], value: str) -> WebhookAccepted:
    """The echoed value when the token and the required query values match; else refused."""
    try:
        _check_token(spec, request, scope)
        if any(request.query.get(name) != want for name, want in spec.query.items()):
            raise SignatureError(f"not a {', '.join(f'{k}={v}' for k, v in spec.query.items())} request")
    except SignatureError as exc:
        if spec.refuse_status is None:
            raise
        return _refused(spec, str(exc))
    return WebhookAccepted(None, WebhookAnswer(200, value, "text/plain"))


def _refused(spec: Handshake, why: str) -> WebhookAccepted:
    return WebhookAccepted(None, WebhookAnswer(spec.refuse_status or 401, {"error": {"code": "forbidden", "message": why}}))


def _check_token(spec: Handshake, request: WebhookRequest, scope: dict[str, Any]) -> None:
    if not spec.token:
        return
    expected = str(templates.render(spec.expect, scope) or "")
    presented = request.query.get(spec.token, "")
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HandshakeRefused(f"{spec.token} does not match")
