"""Why the engine refuses a request, by exception type. The engine knows nothing of HTTP: the
API layer decides which status each kind answers with.

    EngineError          a request the engine cannot carry out (``code``, message, ``details``)
    ├── NotFound         what the request names does not exist
    ├── Invalid          the request itself cannot be accepted as given
    ├── Conflict         it exists, but its state does not allow this now
    └── Unavailable      a platform or another dependency cannot answer now
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """A request the engine cannot carry out. ``code`` is a stable word for programs."""

    def __init__(self, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.code, self.details = code, details


class NotFound(EngineError):
    """What the request names does not exist (an integration, a chat, a dead letter)."""


class Invalid(EngineError):
    """The request cannot be accepted as given (credentials, settings, an unsupported change)."""


class Conflict(EngineError):
    """The thing exists but its state does not allow the request now."""


class Unavailable(EngineError):
    """A platform or another dependency cannot answer now; asking again later may work."""
