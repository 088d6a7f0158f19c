"""Handshakes as a manifest declares them: a platform's verification request (an echoed query
parameter, a JSON challenge, a hashed CRC response token) answered without storing anything."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from syncd.kit import templates
from syncd.kit.errors import HandshakeRefused, SignatureError
from syncd.kit.manifest_webhook import Handshake
from syncd.universal import WebhookAccepted, WebhookAnswer, WebhookRequest


def _json(request: WebhookRequest) -> Any:
    try:
        return json.loads(request.body)
    except ValueError:
        return None


def handshake(handshakes: list[Handshake], request: WebhookRequest, scope: dict[str, Any], *,
              verified: bool, document: Callable[[], Any] | None = None) -> WebhookAccepted | None:
    """The answer to a verification request, or ``None``. GET handshakes are answered before
    signatures are checked (platforms do not sign them); body challenges only once verified.
    ``document``: the body as JSON (``None`` if it is not), where the caller has parsed it."""
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
            body = document() if document is not None else _json(request)
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
