"""What can go wrong talking to a platform, by exception type; the engine decides retries.

    ProviderError                 anything a platform call can fail with
    ├── RetryableError            worth trying again later
    │   ├── RateLimited           429 or an in-body throttling code; ``retry_after`` seconds
    │   └── TransientError        5xx, timeouts, connection resets
    ├── PermanentError            the request itself is wrong (4xx, ``ok: false``); no retry
    │   ├── CursorExpired         a saved cursor/high-water mark is no longer valid: resync
    │   └── AlreadyDone           the effect is already there (deleting what is gone)
    └── AuthError                 credentials rejected or expired; the integration needs attention
    SignatureError                a webhook failed verification (answered with 401)
    └── HandshakeRefused          a handshake with the wrong verify token (403)
    MalformedDelivery             a verified webhook whose body is not what the platform sends (400)

Messages never contain credentials: connectors build them from status codes and the
platform's error code only.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A platform call failed."""

    retryable = False
    #: The manifest error rule's name for this kind of failure, for a platform module to act on.
    reason: str | None = None

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class RetryableError(ProviderError):
    retryable = True


class RateLimited(RetryableError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TransientError(RetryableError):
    pass


class PermanentError(ProviderError):
    pass


class CursorExpired(PermanentError):
    pass


class AuthError(ProviderError):
    pass


class SignatureError(Exception):
    """A webhook delivery whose signature, token or timestamp does not verify."""


class HandshakeRefused(SignatureError):
    """A verification handshake with the wrong verify token (answered with 403)."""


class AlreadyDone(PermanentError):
    """The operation's effect is already there (deleting what is gone): done, not failed."""


class MalformedDelivery(Exception):
    """A verified delivery whose body is not what the platform sends (answered with 400)."""
