"""Graph's timestamps: read, repaired when malformed (the docs' own sample has
``2021-03-1706:47:05.123Z``) or dropped instead of failing a whole page, and written in
Graph's form."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_LOOSE_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ]?(\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:?\d{2})?$")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def repair_time(value: str) -> str | None:
    """``value`` if ISO 8601, else its repair (a missing ``T``), else None."""
    if parse_time(value) is not None:
        return value
    match = _LOOSE_TIME.match(value.strip())
    fixed = f"{match[1]}T{match[2]}{match[3] or 'Z'}" if match else None
    return fixed if parse_time(fixed) is not None else None


def modified_at(raw: dict[str, Any]) -> datetime | None:
    return parse_time(repair_time(raw.get("lastModifiedDateTime") or ""))


def _repair(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.endswith("DateTime") and isinstance(value, str):
            out[key] = repair_time(value)
        elif isinstance(value, dict):
            out[key] = _repair(value)
        else:
            out[key] = value
    return out


def iso(when: float | datetime) -> str:
    """Graph's timestamp form: UTC, milliseconds, ``Z``."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, tz=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
