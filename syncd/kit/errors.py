"""What can go wrong talking to a platform, by exception type; the engine decides retries.

    ProviderError                 anything a platform call can fail with
    ├── RetryableError            worth trying again later
    │   ├── RateLimited           429 or an in-body throttling code; ``retry_after`` seconds
    │   └── TransientError        5xx, timeouts, connection resets
    │       └── OutcomeUnknown    sent, answer lost: a POST is reconciled, not resent blindly
    ├── PermanentError            the request itself is wrong (4xx, ``ok: false``); no retry
    │   ├── CursorExpired         a saved cursor/high-water mark is no longer valid: resync
    │   └── AlreadyDone           the effect is already there (deleting what is gone)
    └── AuthError                 credentials rejected or expired; the integration needs attention
    SignatureError                a webhook failed verification (answered with 401)
    └── HandshakeRefused          a handshake with the wrong verify token (403)
    MalformedDelivery             a verified webhook whose body is not what the platform sends (400)

Messages never contain credentials: a platform's own text (an error description that quotes
the token it was sent) is scrubbed of every secret value of the integration by
:func:`scrub_exception`, which the HTTP layer and the engine apply where errors leave a
connector, before anything stores, logs or answers them.
"""

from __future__ import annotations

from syncd.logs import SecretValues


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


class OutcomeUnknown(TransientError):
    """The request was sent and its answer lost (a read timeout, a dropped connection): the
    platform may have acted on it. A POST is then not retried inline; the engine finds out
    first (``Connector.reconcile_send``)."""


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


def scrub_exception(exc: BaseException, secrets: SecretValues) -> BaseException:
    """Mask ``secrets`` in ``exc``'s text (its args, its notes, and the exceptions it was
    raised from or during), in place, so every later ``str()`` or traceback is clean."""
    seen: set[int] = set()
    current: BaseException | None = exc
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.args = tuple(secrets.scrub(a) if isinstance(a, str) else a for a in current.args)
        notes = getattr(current, "__notes__", None)
        if notes:
            current.__notes__ = [secrets.scrub(n) if isinstance(n, str) else n for n in notes]
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return exc
