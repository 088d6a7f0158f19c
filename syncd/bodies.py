"""What a request body may hold before any parser sees it.

Python's ``json`` recurses once per nesting level: a body of 100,000 ``[`` raises
``RecursionError`` in whatever module parses it (the API, a connector, the inbox worker). The
API refuses such a body up front with 400, once, for every endpoint, rather than each parser
guarding itself.
"""

from __future__ import annotations

import re

#: Deeper than any platform's payload (Slack blocks, Graph batches nest a few dozen levels).
MAX_JSON_DEPTH = 256

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``body`` (JSON or not) opens more than ``limit`` brackets at once; brackets
    inside JSON strings do not count. Most bodies are decided by counting alone."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub(b"", body)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth = max(0, depth - 1)
    return False
