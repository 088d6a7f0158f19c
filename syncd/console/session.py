"""The console's login session and its protection against cross-site requests.

Logging in with the admin token gives a cookie signed with itsdangerous (HttpOnly,
SameSite=Strict, Secure behind HTTPS) that names a random session id and a fingerprint of the
admin token: rotating the token ends every session. Each form carries a CSRF token derived
from the session id, and a POST whose Origin (or Referer) is another site is refused, since
SameSite alone lets a page on another port of the same host through.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from syncd.config import Settings

COOKIE = "syncd_console"
#: How long a login lasts.
MAX_AGE_S = 12 * 3600
_CONTEXT = b"syncd/console-session/v1"


class Sessions:
    def __init__(self, settings: Settings):
        self.settings = settings

    def _tokens(self) -> list[str]:
        token = self.settings.admin_token
        if token is None:
            return []
        return [t.strip() for t in token.get_secret_value().split(",") if t.strip()]

    def _key(self) -> bytes:
        secret = self.settings.secret_key or self.settings.admin_token
        raw = secret.get_secret_value() if secret is not None else ""
        return hmac.new(raw.encode(), _CONTEXT, hashlib.sha256).digest()

    def _fingerprint(self) -> str:
        joined = "\n".join(sorted(self._tokens())).encode()
        return hmac.new(self._key(), b"admin:" + joined, hashlib.sha256).hexdigest()[:32]

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._key(), salt="console-session")

    @property
    def enabled(self) -> bool:
        return bool(self._tokens())

    def token_ok(self, given: str) -> bool:
        """Whether ``given`` is one of the admin tokens, every candidate compared in constant time."""
        matched = False
        for candidate in self._tokens():
            matched |= hmac.compare_digest(given.encode(), candidate.encode())
        return matched

    def issue(self) -> str:
        """A new session's cookie value."""
        return self._serializer().dumps({"sid": secrets.token_urlsafe(18), "fp": self._fingerprint()})

    def session_id(self, request: Request) -> str | None:
        """The id of the request's valid session, else None."""
        value = request.cookies.get(COOKIE)
        if not value or not self.enabled:
            return None
        try:
            data = self._serializer().loads(value, max_age=MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not hmac.compare_digest(str(data.get("fp")), self._fingerprint()):
            return None
        sid = data.get("sid")
        return sid if isinstance(sid, str) else None

    def csrf_token(self, sid: str) -> str:
        return hmac.new(self._key(), b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_token(sid))

    def same_origin(self, request: Request) -> bool:
        """False when the browser says the form came from another origin (scheme, host and port)."""
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            referer = request.headers.get("referer")
            if referer is None:
                return origin is None  # a client that names no origin is not a browser form
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        own = {f"{request.url.scheme}://{request.headers.get('host', '')}",
               self.settings.public_base()}
        return origin.rstrip("/") in own

    def cookie_options(self, request: Request) -> dict:
        return {"httponly": True, "samesite": "strict", "path": "/ui",
                "secure": request.url.scheme == "https"}
