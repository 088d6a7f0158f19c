"""Webhook verification as a manifest declares it.

``verify`` checks every declared verifier (an HMAC over a payload template, a shared token, an
HS256 JWT, an OIDC token signed with a published key); the first that fails raises
``SignatureError``, which the API answers with 401. What is signed is built by
``syncd.kit.signed``, tokens are checked by ``syncd.kit.tokens``, and handshakes are answered by
``syncd.kit.handshakes``. Nothing here does I/O: the keys an ``oidc`` verifier needs are fetched
before, by ``signing_keys_needed`` and ``syncd.kit.jwks.KeySets.ensure``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import jwt

from syncd.kit import templates
from syncd.kit.errors import SignatureError
from syncd.kit.manifest_webhook import Verifier
from syncd.kit.signed import is_form, payload_bytes, port_toggled
from syncd.kit.tokens import check_jwt, check_oidc
from syncd.universal import WebhookRequest

if TYPE_CHECKING:
    from syncd.kit.jwks import KeySets


def _variants(verifier: Verifier, scope: dict[str, Any]) -> list[dict[str, Any]]:
    if not verifier.any_default_port:
        return [scope]
    toggled = {k: port_toggled(scope[k]) for k in ("url", "publicUrl") if isinstance(scope.get(k), str)}
    return [scope, {**scope, **toggled}]


def _body_digest(verifier: Verifier, request: WebhookRequest) -> None:
    if not verifier.body_digest_param or is_form(request):
        return
    presented = request.query.get(verifier.body_digest_param, "")
    if not hmac.compare_digest(presented.lower().encode(), hashlib.sha256(request.body).hexdigest().encode()):
        raise SignatureError(f"{verifier.body_digest_param} does not match the body")


def _name(verifier: Verifier) -> str:
    return verifier.header or verifier.param or verifier.path or "the signature"


def _presented(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any] | None = None) -> str:
    if verifier.path:
        found = templates.lookup((scope or {}).get("delivery"), verifier.path)
        value = found if isinstance(found, str) else None
    elif verifier.header:
        value = request.headers.get(verifier.header.lower())
    else:
        value = request.query.get(verifier.param or "")
    return unprefixed(value, _name(verifier), verifier.prefix)


def unprefixed(value: str | None, name: str, prefix: str | None) -> str:
    """The carried proof without its prefix; refused where it is missing or unprefixed."""
    if not value:
        raise SignatureError(f"{name} is missing")
    if prefix:
        if not value.startswith(prefix):
            raise SignatureError(f"{name} has no {prefix!r} prefix")
        value = value[len(prefix):]
    return value


def check_window(stamp: float, now: float, max_skew_s: float) -> None:
    """Refuse a delivery stamped outside the replay window."""
    if abs(now - stamp) > max_skew_s:
        raise SignatureError("the delivery is outside the replay window")


def _fresh(verifier: Verifier, request: WebhookRequest, now: float, max_skew_s: float,
           scope: dict[str, Any] | None = None) -> None:
    if verifier.timestamp_path:
        raw = templates.lookup((scope or {}).get("delivery"), verifier.timestamp_path)
    elif verifier.timestamp_header:
        raw = request.headers.get(verifier.timestamp_header.lower(), "")
    else:
        return
    try:
        stamp = float(raw) / (1000 if verifier.timestamp_unit == "ms" else 1)
    except (TypeError, ValueError):
        raise SignatureError(f"no valid {verifier.timestamp_header or verifier.timestamp_path}") from None
    check_window(stamp, now, max_skew_s)


def _hmac(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], key: str) -> None:
    presented = _presented(verifier, request, scope).strip()
    presented = presented.lower() if verifier.encoding == "hex" else presented
    for variant in _variants(verifier, scope):
        # The one-shot C HMAC: no HMAC object built per delivery.
        digest = hmac.digest(key.encode(), payload_bytes(verifier.payload, request, variant), verifier.algorithm)
        expected = digest.hex() if verifier.encoding == "hex" else base64.b64encode(digest).decode()
        if hmac.compare_digest(expected.encode(), presented.encode()):
            _body_digest(verifier, request)
            return
    raise SignatureError(f"{_name(verifier)} does not match")


def _carried(verifier: Verifier, request: WebhookRequest) -> bool:
    return bool(request.headers.get(verifier.header.lower()) if verifier.header
                else request.query.get(verifier.param or ""))


def _applies(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any]) -> bool:
    if verifier.only_if and not templates.render(verifier.only_if, scope):
        return False
    return not verifier.if_present or _carried(verifier, request)


def _key(verifier: Verifier, scope: dict[str, Any], shared: bool) -> str | None:
    template = verifier.shared_key if shared else verifier.key
    if shared and template is None:
        raise SignatureError("this platform's shared webhook URL has no key for this check")
    key = templates.render(template, scope) if template else None
    if key is None or verifier.key_digest is None:
        return None if key is None else str(key)
    return hashlib.new(verifier.key_digest, str(key).encode()).hexdigest()


def verify(verifiers: list[Verifier], request: WebhookRequest, scope: dict[str, Any], *,
           now: float, max_skew_s: float, keys: KeySets | None = None) -> dict[str, str]:
    """Raise ``SignatureError`` unless the delivery passes every verifier that applies (and,
    where verifiers apply only when present, at least one). Returns the headers the answer must
    carry (``answerHeader``). ``keys``: the fetched key sets. A delivery to the shared URL is
    checked with each verifier's ``sharedKey``."""
    answer: dict[str, str] = {}
    checked = 0
    for verifier in verifiers:
        if not _applies(verifier, request, scope):
            continue
        checked += 1
        _check(verifier, request, scope, now=now, max_skew_s=max_skew_s, keys=keys, answer=answer)
    if not checked and any(v.if_present for v in verifiers):
        ways = ", ".join((v.header or f"?{v.param}") + (f" (needs {v.only_if.strip('{}')})" if v.only_if else "")
                         for v in verifiers)
        raise SignatureError(f"the delivery is not authenticated in a way this integration is set up to check: {ways}")
    return answer


def _check(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], *, now: float, max_skew_s: float,
           keys: KeySets | None, answer: dict[str, str]) -> None:
    """Raise ``SignatureError`` unless the delivery passes ``verifier``; adds its answer header."""
    key = _key(verifier, scope, request.shared)
    if request.shared and not key:
        raise SignatureError("the platform-level webhook secret is not configured")
    if verifier.type == "hmac":
        _fresh(verifier, request, now, max_skew_s, scope)
        _hmac(verifier, request, scope, str(key or ""))
        if verifier.answer_header and key:
            answer[verifier.answer_header] = key
    elif verifier.type == "token":
        expected = str(templates.render(verifier.value, scope) or "")
        if not expected or not hmac.compare_digest(_presented(verifier, request).encode(), expected.encode()):
            raise SignatureError(f"{_name(verifier)} does not match")
    elif verifier.type == "oidc":
        check_oidc(verifier, _presented(verifier, request), request, scope, now, keys)
    else:
        check_jwt(verifier, _presented(verifier, request, scope), request, scope, str(key or ""), now)


def signing_keys_needed(verifiers: list[Verifier], request: WebhookRequest,
                        scope: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(root, path, kid)`` of each key that the ``oidc`` verifiers applying to this delivery
    name, so they can be fetched before ``verify`` runs."""
    needed = []
    for verifier in verifiers:
        if verifier.type != "oidc" or verifier.jwks is None or not _applies(verifier, request, scope):
            continue
        try:
            kid = jwt.get_unverified_header(_presented(verifier, request)).get("kid")
        except (SignatureError, jwt.PyJWTError):
            continue  # refused by verify, with its reason
        if isinstance(kid, str) and kid:
            needed.append((verifier.jwks.root, verifier.jwks.path, kid))
    return needed


def verify_declared(mode: str, verifiers: list[Verifier], request: WebhookRequest, scope: dict[str, Any], *,
                    now: float, max_skew_s: float, keys: KeySets | None = None) -> dict[str, str]:
    """The manifest's ``verifyMode``: ``all`` verifiers that apply must pass, or ``any`` one.
    Returns the headers the answer must carry."""
    check = verify_any if mode == "any" else verify
    return check(verifiers, request, scope, now=now, max_skew_s=max_skew_s, keys=keys)


def verify_any(verifiers: list[Verifier], request: WebhookRequest, scope: dict[str, Any], *,
               now: float, max_skew_s: float, keys: KeySets | None = None) -> dict[str, str]:
    """Raise ``SignatureError`` unless the delivery passes one of the verifiers that apply
    (``onlyIf``) and whose header or parameter it carries (a platform that signs with a new
    scheme or a legacy one). None applying is a refusal, never a pass."""
    applicable = [v for v in verifiers if not v.only_if or templates.render(v.only_if, scope)]
    if not applicable:
        raise SignatureError("no verification applies: is the signing key configured?")
    carried = [v for v in applicable if _presented_or_none(v, request)]
    if not carried:
        raise SignatureError(f"none of {', '.join(str(v.header or v.param) for v in applicable)} is present")
    failures: list[SignatureError] = []
    for verifier in carried:  # each applies and is carried: checked as it is
        answer: dict[str, str] = {}
        try:
            _check(verifier, request, scope, now=now, max_skew_s=max_skew_s, keys=keys, answer=answer)
            return answer
        except SignatureError as exc:
            failures.append(exc)
    raise failures[0]


def _presented_or_none(verifier: Verifier, request: WebhookRequest) -> str | None:
    return request.headers.get(verifier.header.lower()) if verifier.header else request.query.get(verifier.param or "")


