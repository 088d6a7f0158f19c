"""Paginators: where the next page's token is in an answer, and where it goes in the request.

Every kind reduces its state to one string, the cursor the engine checkpoints after each page:
a token, a next-page URL, an offset or a page number. ``next_cursor`` refuses a cursor equal
to the one just used (the caller's ``Pages`` guard refuses any repeat in a whole walk), so a
buggy API cannot loop forever.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from syncd.kit import templates
from syncd.kit.errors import PermanentError
from syncd.kit.manifest import Paginator

_NEXT_LINK = re.compile(r'<([^>]+)>\s*;[^,]*rel="?next"?')


def next_cursor(spec: Paginator | None, response: httpx.Response, body: Any, records: int,
                current: str | None, name: str) -> str | None:
    """The cursor of the page after this one; ``None`` on the last page."""
    if spec is None:
        return None
    if spec.type == "cursor" or spec.type == "next_url":
        value = templates.lookup(body, spec.path or "")
        found = str(value) if value not in (None, "", False) else None
    elif spec.type == "link_header":
        match = _NEXT_LINK.search(response.headers.get("link", ""))
        found = match.group(1) if match else None
    elif spec.type == "offset":
        found = str(int(current or 0) + records) if records else None
    else:
        found = str(int(current or spec.start) + 1) if records else None
    if found is not None and found == current:
        raise PermanentError(f"{name}: pagination token repeated; stopping")
    return found


def apply(spec: Paginator | None, cursor: str | None, params: dict[str, Any],
          body: dict[str, Any] | None) -> str | None:
    """Put ``cursor`` into ``params`` or ``body`` (in place); a whole next-page URL is returned
    instead, for the caller to request as it is."""
    if spec is None or cursor is None:
        if spec is not None and spec.type == "page" and spec.param:
            params[spec.param] = spec.start
        return None
    if spec.type in ("next_url", "link_header"):
        return cursor
    target = body if spec.into == "body" and body is not None else params
    target[spec.param or ""] = cursor
    return None
