"""What WhatsApp, Messenger and Instagram share: Meta's webhook signature and verification
handshake, and the Graph API's error classification (throttling often arrives as an error
code, not as a 429).

Transport only; each platform module keeps its own endpoints and shapes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx

from syncd.kit.errors import (
    AuthError,
    MalformedDelivery,
    PermanentError,
    RateLimited,
    SignatureError,
    TransientError,
)
from syncd.universal import WebhookAccepted, WebhookAnswer, WebhookRequest

#: Graph error codes that mean "slow down": app/user/page/account throttling, WhatsApp
#: throughput (130429) and pair rate (131056), Business Use Case limits (80000-80014).
THROTTLING_CODES = frozenset({4, 17, 32, 613, 130429, 131056, *range(80000, 80015)})
#: How long to back off from in-body throttling that says nothing about its duration.
THROTTLE_FLOOR_S = 60.0
#: Token expired, revoked or missing permission for the token.
AUTH_CODES = frozenset({102, 190})


def verify_signature(app_secret: str, request: WebhookRequest) -> None:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``.

    The raw bytes are what Meta signed (it escapes unicode), so the body is never re-encoded."""
    given = request.headers.get("x-hub-signature-256", "")
    if not given.startswith("sha256="):
        raise SignatureError("missing or malformed X-Hub-Signature-256")
    expected = "sha256=" + hmac.new(app_secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise SignatureError("X-Hub-Signature-256 does not match")


def handshake(request: WebhookRequest, verify_token: str) -> WebhookAccepted | None:
    """The GET ``hub.mode=subscribe`` verification: 200 with the raw challenge when the token
    matches, 403 otherwise. ``None`` for a request that is not a handshake."""
    if request.method.upper() != "GET":
        return None
    mode = request.query.get("hub.mode")
    token = request.query.get("hub.verify_token", "")
    challenge = request.query.get("hub.challenge", "")
    if mode == "subscribe" and hmac.compare_digest(token.encode(), verify_token.encode()):
        return WebhookAccepted(None, WebhookAnswer(200, challenge, "text/plain"))
    return WebhookAccepted(None, WebhookAnswer(
        403, {"error": {"code": "forbidden", "message": "hub.verify_token does not match"}}))


def parse_body(request: WebhookRequest) -> dict[str, Any]:
    """The delivery's JSON object (ints stay exact: Python's json never makes them floats).
    Called once the signature verified, so a body that is not one is a 400, not a 401."""
    try:
        body = json.loads(request.body)
    except (ValueError, RecursionError):
        raise MalformedDelivery("the delivery is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedDelivery("the delivery is not a JSON object")
    return body


def _usage_wait_s(response: httpx.Response) -> float | None:
    """Minutes until access returns, from Meta's usage headers, in seconds."""
    for header in ("x-business-use-case-usage", "x-app-usage", "x-page-usage"):
        raw = response.headers.get(header)
        if not raw:
            continue
        try:
            usage = json.loads(raw)
        except ValueError:
            continue
        entries = [e for v in usage.values() if isinstance(v, list) for e in v] if isinstance(usage, dict) else []
        waits = [e.get("estimated_time_to_regain_access") for e in entries if isinstance(e, dict)]
        waits = [w for w in waits if isinstance(w, (int, float))]
        if waits:
            return max(waits) * 60.0
    return None


def classify(response: httpx.Response) -> None:
    """Graph answers: throttling codes (in any status) wait; 190 is an auth failure; 5xx is
    transient; any other error is permanent and keeps Meta's code and message."""
    status = response.status_code
    error: dict[str, Any] = {}
    if status >= 400 or response.headers.get("content-type", "").startswith("application/json"):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
    if status < 400 and not error:
        return
    code = error.get("code")
    message = str(error.get("message") or f"HTTP {status}")[:300]
    label = f"{code}" if code is not None else str(status)
    code_text = str(code) if code is not None else None
    if status == 429 or code in THROTTLING_CODES:
        retry = response.headers.get("retry-after")
        wait = float(retry) if retry and retry.isdigit() else _usage_wait_s(response)
        if wait is None and code in THROTTLING_CODES:
            # In-body throttling without a hint lasts minutes at Meta; quick retries only
            # prolong it.
            wait = THROTTLE_FLOOR_S
        raise RateLimited(f"throttled ({label}): {message}", status=status, code=code_text, retry_after=wait)
    if code in AUTH_CODES or status == 401:
        raise AuthError(f"token rejected ({label}): {message}", status=status, code=code_text)
    if status >= 500 or error.get("is_transient"):
        raise TransientError(f"server error ({label}): {message}", status=status, code=code_text)
    raise PermanentError(f"request failed ({label}): {message}", status=status, code=code_text)
