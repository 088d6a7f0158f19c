"""The HTTP API (docs/architecture.md, README "HTTP API"): admin endpoints behind a bearer token, provider webhooks
authenticated by each platform's own signature, and app events signed with HMAC.

Every error is ``{"error": {"code", "message"}}`` with a fitting status (``errors``). Each
area is a module with its own router; ``create_app`` includes one line per area (``app.py``), so a new
area (a console, lifecycle endpoints) is a module and one more line.
"""

from __future__ import annotations

from typing import Any

from syncd.api.errors import ApiError, error_body
from syncd.api.limits import BodyLimit

__all__ = ["ApiError", "BodyLimit", "create_app", "error_body"]


def __getattr__(name: str) -> Any:
    """``create_app`` (in ``app.py``) on first use: it includes every area, the console among
    them, and the console uses this package's parts, so either can be imported first."""
    if name == "create_app":
        from syncd.api.app import create_app

        return create_app
    raise AttributeError(name)
