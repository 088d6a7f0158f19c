"""What the connect flow signs: the OAuth ``state`` (signed by itsdangerous, with a key derived
from ``SYNCD_SECRET_KEY``, or from the admin token when that is unset) and the links an app
signs to let one customer start a flow."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from itsdangerous import BadPayload, BadSignature, URLSafeSerializer

from syncd.config import Settings

_STATE_CONTEXT = b"syncd/connect-state/v1"


class StateError(ValueError):
    """A state that cannot be trusted: tampered, malformed, expired or for another platform."""


def state_key(settings: Settings) -> bytes | None:
    """The state-signing key, derived (not reused) from SYNCD_SECRET_KEY or the admin token."""
    secret = settings.secret_key or settings.admin_token
    if secret is None:
        return None
    return hmac.new(secret.get_secret_value().encode(), _STATE_CONTEXT, hashlib.sha256).digest()


def _serializer(key: bytes) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt=_STATE_CONTEXT, signer_kwargs={"digest_method": hashlib.sha256})


def sign_state(key: bytes, claims: dict[str, Any]) -> str:
    """A URL-safe signed token of ``claims``; the claims are readable, not secret."""
    return str(_serializer(key).dumps(claims))


def read_state(key: bytes, state: str, *, platform: str, now: float) -> dict[str, Any]:
    """The claims of a state this daemon signed for ``platform``, still unexpired."""
    try:
        claims = _serializer(key).loads(state)
    except BadPayload:  # signed by us, yet unreadable: only a bug could make one
        raise StateError("state is malformed") from None
    except BadSignature:
        raise StateError("state signature does not match (tampered, malformed, or signed with another key)") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), (int, float)):
        raise StateError("state is malformed")
    if claims.get("p") != platform:
        raise StateError(f"state was issued for another platform, not {platform}")
    if claims["exp"] <= now:
        raise StateError("state has expired; start the connection again")
    return claims


def link_signature(secret: str, platform: str, customer_id: str, expires: int) -> str:
    """What the app puts in ``signature`` to let one customer start a flow until ``expires``."""
    message = f"{platform}:{customer_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def resolve_url(settings: Settings, url: str, default_key: str) -> tuple[str, str]:
    """``(absolute URL, root key)`` of an ``OAuthSpec`` URL: absolute as is, ``{key}/path``
    against that root, anything else against ``default_key``'s root."""
    if url.startswith("{") and "}" in url:
        key, _, path = url[1:].partition("}")
        return settings.base_url(key) + path, key
    if "://" in url:
        return url, default_key
    return settings.base_url(default_key) + "/" + url.lstrip("/"), default_key
