"""Webhook verification and handshakes as a manifest declares them.

``verify`` checks every declared verifier (an HMAC over a payload template, a shared token, an
HS256 JWT, an OIDC token signed with a published key); the first that fails raises
``SignatureError``, which the API answers with 401.
``handshake`` answers a platform's verification request (an echoed query parameter, a JSON
challenge, a hashed CRC response token) or returns ``None`` for an ordinary delivery. Nothing
here does I/O: the keys an ``oidc`` verifier needs are fetched before, by ``signing_keys_needed``
and ``syncd.kit.jwks.KeySets.ensure``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jwt

from syncd.kit import templates
from syncd.kit.errors import HandshakeRefused, SignatureError
from syncd.kit.manifest import Handshake, Verifier
from syncd.universal import WebhookAccepted, WebhookAnswer, WebhookRequest

if TYPE_CHECKING:
    from syncd.kit.jwks import KeySets

#: Payload elements that are bytes, not text: the raw body, and its raw SHA-256 digest (a
#: scheme that signs the digest's 32 bytes rather than its hex).
_RAW = re.compile(r"\{(body|bodySha256)\}")


def request_values(request: WebhookRequest) -> dict[str, str]:
    """What payload templates read of the request itself: ``urlQuery`` (``?`` and the query
    exactly as received, or nothing; after ``{webhookUrl}`` it makes the public URL that was
    called) and ``querySorted`` (the query's parameters sorted by name, form-encoded)."""
    query = urlsplit(request.url).query if "?" in request.url else ""
    return {"urlQuery": f"?{query}" if query else "", "querySorted": urlencode(sorted(request.query.items()))}


def payload_bytes(template: str, request: WebhookRequest, scope: dict[str, Any]) -> bytes:
    """The signed bytes: ``template`` rendered, with ``{body}`` as the raw body's bytes and
    ``{bodySha256}`` as its raw SHA-256 digest."""
    if "{urlQuery}" in template or "{querySorted}" in template:
        scope = {**request_values(request), **scope}
    pieces = _RAW.split(template)  # literal text and raw element names alternate
    out = b""
    for i, piece in enumerate(pieces):
        if i % 2:
            out += request.body if piece == "body" else hashlib.sha256(request.body).digest()
            continue
        rendered = templates.render(piece, scope) if piece else ""
        if rendered is None:
            raise SignatureError("a part of the signed payload is missing")
        out += str(rendered).encode()
    return out


def is_form(request: WebhookRequest) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def form_sorted(request: WebhookRequest) -> str:
    """A form body as signers concatenate it: names sorted, each name's values sorted without
    repeats, ``name + value`` each; empty for a body that is not a form."""
    if not is_form(request):
        return ""
    pairs = parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return "".join(k + v for k, v in sorted(set(pairs)))


def public_url(webhook_url: str | None, request: WebhookRequest) -> str | None:
    """The URL the platform was given (the integration's public webhook URL) with the query the
    delivery arrived with: what a platform that signs its URL signed, whatever proxy is between."""
    if not webhook_url:
        return None
    query = urlsplit(request.url).query if request.query else ""
    return webhook_url + (f"?{query}" if query else "")


def port_toggled(url: str) -> str:
    """``url`` with its scheme's default port removed if written, added if not."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if default is None or parts.hostname is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    userinfo = parts.netloc[: len(parts.netloc) - len(host)]
    if parts.port == default:
        netloc = userinfo + host.rsplit(":", 1)[0]
    elif parts.port is None:
        netloc = f"{userinfo}{host}:{default}"
    else:
        return url
    return urlunsplit(parts._replace(netloc=netloc))


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
    if not value:
        raise SignatureError(f"{_name(verifier)} is missing")
    if verifier.prefix:
        if not value.startswith(verifier.prefix):
            raise SignatureError(f"{_name(verifier)} has no {verifier.prefix!r} prefix")
        value = value[len(verifier.prefix):]
    return value


def _fresh(verifier: Verifier, request: WebhookRequest, now: float, max_skew_s: float,
           scope: dict[str, Any] | None = None) -> None:
    if verifier.timestamp_path:
        raw = templates.lookup((scope or {}).get("delivery"), verifier.timestamp_path)
    elif verifier.timestamp_header:
        raw = request.headers.get(verifier.timestamp_header.lower(), "")
    else:
        return
    try:
        stamp = float(raw)
    except (TypeError, ValueError):
        raise SignatureError(f"no valid {verifier.timestamp_header or verifier.timestamp_path}") from None
    if abs(now - stamp) > max_skew_s:
        raise SignatureError("the delivery is outside the replay window")


def _hmac(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], key: str) -> None:
    presented = _presented(verifier, request, scope).strip()
    presented = presented.lower() if verifier.encoding == "hex" else presented
    for variant in _variants(verifier, scope):
        digest = hmac.new(key.encode(), payload_bytes(verifier.payload, request, variant),
                          getattr(hashlib, verifier.algorithm)).digest()
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


def verify(verifiers: list[Verifier], request: WebhookRequest, scope: dict[str, Any], *,
           now: float, max_skew_s: float, keys: KeySets | None = None) -> None:
    """Raise ``SignatureError`` unless the delivery passes every verifier that applies (and,
    where verifiers apply only when present, at least one). ``keys``: the fetched key sets."""
    checked = 0
    for verifier in verifiers:
        if not _applies(verifier, request, scope):
            continue
        checked += 1
        key = templates.render(verifier.key, scope) if verifier.key else None
        if verifier.type == "hmac":
            _fresh(verifier, request, now, max_skew_s, scope)
            _hmac(verifier, request, scope, str(key or ""))
        elif verifier.type == "token":
            expected = str(templates.render(verifier.value, scope) or "")
            if not expected or not hmac.compare_digest(_presented(verifier, request).encode(), expected.encode()):
                raise SignatureError(f"{_name(verifier)} does not match")
        elif verifier.type == "oidc":
            _oidc(verifier, request, scope, now, keys)
        else:
            _jwt(verifier, request, scope, str(key or ""), now)
    if not checked and any(v.if_present for v in verifiers):
        ways = ", ".join((v.header or f"?{v.param}") + (f" (needs {v.only_if.strip('{}')})" if v.only_if else "")
                         for v in verifiers)
        raise SignatureError(f"the delivery is not authenticated in a way this integration is set up to check: {ways}")


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
                    now: float, max_skew_s: float, keys: KeySets | None = None) -> None:
    """The manifest's ``verifyMode``: ``all`` verifiers that apply must pass, or ``any`` one."""
    check = verify_any if mode == "any" else verify
    check(verifiers, request, scope, now=now, max_skew_s=max_skew_s, keys=keys)


def verify_any(verifiers: list[Verifier], request: WebhookRequest, scope: dict[str, Any], *,
               now: float, max_skew_s: float, keys: KeySets | None = None) -> None:
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
    for verifier in carried:
        try:
            return verify([verifier.model_copy(update={"only_if": None})], request, scope, now=now,
                          max_skew_s=max_skew_s, keys=keys)
        except SignatureError as exc:
            failures.append(exc)
    raise failures[0]


def _presented_or_none(verifier: Verifier, request: WebhookRequest) -> str | None:
    return request.headers.get(verifier.header.lower()) if verifier.header else request.query.get(verifier.param or "")


def _jwt(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], key: str, now: float) -> None:
    try:
        # Times are checked below against syncd's clock, not the library's.
        claims = jwt.decode(_presented(verifier, request, scope), key, algorithms=verifier.accepted_algorithms(),
                            options=_unchecked(verifier.require))
    except jwt.PyJWTError as exc:
        raise SignatureError(f"JWT rejected ({type(exc).__name__})") from None
    _times(claims, verifier.leeway_s, now, "JWT")
    for name, claim in verifier.claims.items():
        _claim(name, claim, claims.get(name), request, scope)


def _unchecked(require: list[str]) -> Any:
    return {"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
            "verify_iss": False, "require": require}


def _times(claims: dict[str, Any], leeway: float, now: float, what: str) -> None:
    not_before, expires = _number(claims, "nbf"), _number(claims, "exp")
    if not_before is not None and now + leeway < not_before:
        raise SignatureError(f"{what} rejected (not valid yet)")
    if expires is not None and now - leeway >= expires:
        raise SignatureError(f"{what} rejected (expired)")


def _oidc(verifier: Verifier, request: WebhookRequest, scope: dict[str, Any], now: float,
          keys: KeySets | None) -> None:
    token = _presented(verifier, request)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SignatureError("OIDC token rejected (not a JWT)") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in verifier.accepted_algorithms():
        raise SignatureError("OIDC token rejected (its algorithm is not accepted)")
    jwks = verifier.jwks
    key = keys.key(jwks.root, jwks.path, kid) if keys is not None and jwks and isinstance(kid, str) else None
    if key is None:
        raise SignatureError("OIDC token rejected (signed with a key the platform does not publish)")
    try:
        claims = jwt.decode(token, key, algorithms=[str(algorithm)],
                            options=_unchecked(["exp", "iss", "aud", *verifier.require]))
    except jwt.InvalidSignatureError:
        raise SignatureError("OIDC token rejected (bad signature)") from None
    except jwt.PyJWTError as exc:
        raise SignatureError(f"OIDC token rejected ({type(exc).__name__})") from None
    _times(claims, verifier.leeway_s, now, "OIDC token")
    if claims.get("iss") not in verifier.issuers:
        raise SignatureError("OIDC token rejected (not issued by " + " or ".join(verifier.issuers) + ")")
    audiences = [str(a) for a in (templates.render(t, scope) for t in verifier.audiences) if a]
    given = claims.get("aud")
    if not any(a in audiences for a in (given if isinstance(given, list) else [given])):
        raise SignatureError("OIDC token rejected (its audience is not this endpoint)")
    for name, claim in verifier.claims.items():
        _claim(name, claim, claims.get(name), request, scope, "OIDC token")
    for name in verifier.true_claims:
        if claims.get(name) is not True:
            raise SignatureError(f"OIDC token rejected ({name} is not true)")


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise SignatureError(f"JWT rejected ({name} is not a number)")
    return float(value)


def _claim(name: str, claim: Any, value: Any, request: WebhookRequest, scope: dict[str, Any],
           what: str = "JWT") -> None:
    if claim.sha256 is not None:
        payload = payload_bytes(claim.sha256, request, scope)
        if claim.absent_if_empty and not payload:
            if value is not None:
                raise SignatureError(f"{what} rejected ({name} given for an empty payload)")
            return
        expected = hashlib.sha256(payload).hexdigest()
    else:
        expected = str(templates.render(claim.equals, scope) or "")
    if not isinstance(value, str) or not hmac.compare_digest(value.encode(), expected.encode()):
        raise SignatureError(f"{what} rejected ({name} does not match)")


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
