"""Token verifiers: an HMAC-signed JWT, and an OpenID Connect ID token signed with a key the
platform publishes. Times are checked against syncd's clock, claims as the manifest declares."""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

import jwt
from jwt.algorithms import HMACAlgorithm

from syncd.kit import templates
from syncd.kit.errors import SignatureError
from syncd.kit.manifest_webhook import Verifier
from syncd.kit.signed import payload_bytes
from syncd.universal import WebhookRequest

if TYPE_CHECKING:
    from syncd.kit.jwks import KeySets


class _KnownKeyHMAC(HMACAlgorithm):
    """PyJWT's HMAC algorithm, with a key's checks (not empty, not a PEM, SSH or DER key, which
    parses it as each) made once per key rather than on every token: a platform signs every
    delivery with the same few secrets."""

    def prepare_key(self, key: str | bytes) -> bytes:
        return _prepared(self.hash_alg, key)


@functools.lru_cache(maxsize=256)
def _prepared(hash_alg: Any, key: str | bytes) -> bytes:
    # A refused key raises here, and is not cached: it is refused again next time.
    return HMACAlgorithm(hash_alg).prepare_key(key)


def _hmac_jwt() -> jwt.PyJWT:
    decoder = jwt.PyJWT()
    jws = getattr(decoder, "_jws", None)
    if jws is None:  # another PyJWT's layout: its own checks on every token, as correct
        return decoder
    for name, hash_alg in (("HS256", HMACAlgorithm.SHA256), ("HS384", HMACAlgorithm.SHA384),
                           ("HS512", HMACAlgorithm.SHA512)):
        jws.unregister_algorithm(name)  # PyJWT's own module wires its global decoder so
        jws.register_algorithm(name, _KnownKeyHMAC(hash_alg))
    return decoder


#: Decodes the HMAC-signed JWTs of ``check_jwt`` (only the algorithms a verifier accepts).
_HMAC_JWT = _hmac_jwt()


def check_jwt(verifier: Verifier, token: str, request: WebhookRequest, scope: dict[str, Any], key: str,
              now: float) -> None:
    """An HMAC-signed JWT: its signature with ``key``, its times against syncd's clock, and the
    claims the verifier declares."""
    try:
        # Times are checked below against syncd's clock, not the library's.
        claims = _HMAC_JWT.decode(token, key, algorithms=verifier.accepted_algorithms(),
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


def check_oidc(verifier: Verifier, token: str, request: WebhookRequest, scope: dict[str, Any], now: float,
               keys: KeySets | None) -> None:
    """An OpenID Connect ID token: signed with a key the platform publishes (already fetched
    into ``keys``), issued by one of ``issuers`` for one of ``audiences``, with its claims."""
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
