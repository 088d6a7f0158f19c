"""How a message the platform reports merges into the stored document (docs/architecture.md §2).

Pure functions, no I/O: the store reads the existing document, calls :func:`merge` and writes
what it returns. ``None`` in an incoming message means "not said", never "erase".

The rules, in the order they are applied:

- The platform never overwrites ``id``, ``origin``, ``appMessageId``, ``createdAt`` (nor the
  dedup key), and sets ``chatId`` only when the stored one is missing. An app-originated
  message stays ``outbound``.
- An older event never overwrites a newer edit: the version of a message is
  ``editedAt or sentAt``; when the incoming version is older than the stored one it may only
  fill fields that are still empty. Equal or newer versions apply every field they say.
- Deletes are tombstones: ``deletedAt`` is set (the earliest wins) and never cleared, and once
  deleted, later content may only fill empty fields, so a late webhook cannot resurrect it.
- ``deliveryState`` only moves forward (pending < sent < delivered < read); ``failed`` may
  replace pending or sent only, and any later success (delivered, read) replaces ``failed``.
- ``updatedAt`` is set on every real change; identical data is no change at all.

When the platform's echo of an app message is stored before the send returned, the app's
document absorbs the echo's platform fields (:func:`absorb_echo`, :func:`sent_changes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from syncd.models import Message, as_utc, utcnow

ChangeKind = Literal["created", "updated", "deleted"]

#: Fields only the first writer sets: identity, provenance and the dedup key.
_PROTECTED = frozenset(
    {"id", "origin", "appMessageId", "createdAt", "updatedAt", "customerId", "platform",
     "externalMessageId"}
)
#: Fields with a rule of their own below; every other field follows the version rule.
_SPECIAL = frozenset({"chatId", "direction", "deliveryState", "deletedAt", "sender", "extra",
                      "attachments"})

_DELIVERY_RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}


@dataclass(frozen=True)
class MergeOutcome:
    """``doc_changes`` is the ``$set`` for an update, or the full document for an insert
    (``existing`` was ``None``); empty means nothing changed. ``kind`` is what the app
    callback says, ``None`` when the app has nothing new to hear."""

    doc_changes: dict[str, Any] = field(default_factory=dict)
    kind: ChangeKind | None = None


def normalize(value: Any) -> Any:
    """Make a value comparable with what MongoDB hands back: aware UTC datetimes truncated to
    milliseconds (BSON precision), recursively through dicts and lists."""
    if isinstance(value, datetime):
        value = as_utc(value)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def version_of(doc: dict[str, Any]) -> datetime | None:
    """A message's version: when it was last edited, else when it was sent."""
    return normalize(doc.get("editedAt") or doc.get("sentAt"))


def is_older(incoming: dict[str, Any], existing: dict[str, Any]) -> bool:
    """True only when both versions are known and the incoming one is strictly older; an
    event that does not say its time cannot be proven stale. Versions compare at
    microseconds (``versionUs``) where known: BSON dates keep milliseconds, and a platform's
    create and its edit can fall in the same millisecond (some platforms' ids are microsecond timestamps)."""
    if incoming.get("editedAt") is None and existing.get("editedAt") is not None:
        return True  # the unedited message is older than any edit of it
    new, old = version_us(incoming), version_us(existing)
    return new is not None and old is not None and new < old


def version_us(doc: dict[str, Any]) -> int | None:
    """The exact version in microseconds: ``versionUs`` when stored, else from the dates."""
    if doc.get("versionUs") is not None:
        return doc["versionUs"]
    return _us(doc.get("editedAt") or doc.get("sentAt"))


def _us(value: datetime | None) -> int | None:
    if value is None:
        return None
    value = as_utc(value)
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def delivery_moves(current: str | None, proposed: str | None) -> bool:
    """Whether ``proposed`` may replace ``current`` (states only move forward)."""
    if proposed is None or proposed == current:
        return False
    if current is None:
        return True
    if proposed == "failed":
        return current in ("pending", "sent")
    if current == "failed":
        # A receipt proves the message arrived after all; a mere "sent" or "pending" does not.
        return proposed in ("delivered", "read")
    return _DELIVERY_RANK[proposed] > _DELIVERY_RANK[current]


def merge(existing: dict[str, Any] | None, incoming: Message, *,
          now: datetime | None = None) -> MergeOutcome:
    """Merge ``incoming`` into the stored camelCase document ``existing`` (or ``None``)."""
    now = now or utcnow()
    exact = _us(incoming.edited_at or incoming.sent_at)
    new = normalize(incoming.doc())
    if existing is None:
        new["updatedAt"] = normalize(now)
        if exact is not None:
            new["versionUs"] = exact
        return MergeOutcome(new, "deleted" if new.get("deletedAt") else "created")
    new_versioned = {**new, "versionUs": exact}

    old = normalize({k: v for k, v in existing.items() if k not in ("_id", "rev")})
    was_deleted = old.get("deletedAt") is not None
    fill_only = was_deleted or is_older(new_versioned, old)
    changes: dict[str, Any] = {}

    def offer(name: str, value: Any, empty: Any = None) -> None:
        if value is None or value == empty:
            return
        current = old.get(name)
        if fill_only and current is not None and current != empty:
            return
        if value != current:
            changes[name] = value

    for name, value in new.items():
        if name not in _PROTECTED and name not in _SPECIAL:
            offer(name, value)

    if old.get("chatId") is None and new.get("chatId") is not None:
        changes["chatId"] = new["chatId"]
    if old.get("origin") != "app":
        offer("direction", new.get("direction"))
    offer("attachments", new.get("attachments"), empty=[])

    for name in ("sender", "extra"):
        merged = _merge_map(old.get(name) or {}, new.get(name) or {}, fill_only)
        if merged is not None:
            changes[name] = merged

    if delivery_moves(old.get("deliveryState"), new.get("deliveryState")):
        changes["deliveryState"] = new["deliveryState"]

    kind: ChangeKind | None = None
    deleted_at = new.get("deletedAt")
    if deleted_at is not None:
        if not was_deleted:
            changes["deletedAt"] = deleted_at
            kind = "deleted"
        elif deleted_at < old["deletedAt"]:
            changes["deletedAt"] = deleted_at

    if not changes:
        return MergeOutcome({}, None)
    old_exact = version_us(old)
    if not fill_only and exact is not None and (old_exact is None or exact > old_exact):
        changes["versionUs"] = exact
    if kind is None and not was_deleted:
        kind = "updated"
    changes["updatedAt"] = normalize(now)
    return MergeOutcome(changes, kind)


def _merge_map(old: dict[str, Any], new: dict[str, Any],
               fill_only: bool) -> dict[str, Any] | None:
    """Key-by-key merge of a sub-document (sender, extra); the whole merged map so the write
    stays one ``$set`` per field, or ``None`` when nothing changed."""
    merged = dict(old)
    for key, value in new.items():
        if value is None:
            continue
        if fill_only and merged.get(key) is not None:
            continue
        merged[key] = value
    return merged if merged != old else None


def absorb_echo(absorbed: dict[str, Any], echo: dict[str, Any]) -> dict[str, Any]:
    """Add the platform fields of a stored echo document to ``absorbed`` (what the app's
    document takes over when its send is recorded after the echo arrived)."""
    out = dict(absorbed)
    for name in ("sentAt", "editedAt", "externalThreadId", "chatId", "deliveryState"):
        if echo.get(name) is not None:
            out[name] = echo[name]
    if echo.get("deletedAt") is not None:
        out["deletedAt"] = min(d for d in (normalize(echo["deletedAt"]),
                                           out.get("deletedAt")) if d is not None)
    out["sender"] = {**out.get("sender", {}),
                     **{k: v for k, v in (echo.get("sender") or {}).items() if v is not None}}
    out["extra"] = {**out.get("extra", {}), **(echo.get("extra") or {})}
    return out


def sent_changes(doc: dict[str, Any], external_message_id: str, sent_at: datetime | None,
                 external_thread_id: str | None, extra: dict | None,
                 absorbed: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The ``$set`` that turns the pending app document ``doc`` into the sent one: it gets the
    platform's id, is at least "sent", and takes the echo's platform fields (its sentAt,
    sender, edit and delete times, thread, extra); the app's id, origin and text stay."""
    sets: dict[str, Any] = {"externalMessageId": external_message_id, "updatedAt": now}
    if sent_at is not None:
        sets["sentAt"] = sent_at
    if external_thread_id is not None:
        sets["externalThreadId"] = external_thread_id
    state = doc.get("deliveryState")
    if state in (None, "pending", "failed"):
        sets["deliveryState"] = "sent"
    sets["extra"] = {**(doc.get("extra") or {}), **(extra or {})}
    if absorbed:
        sets["extra"] = {**sets["extra"], **absorbed.get("extra", {})}
        sets["sender"] = {**(doc.get("sender") or {}), **absorbed.get("sender", {})}
        for name in ("sentAt", "editedAt", "externalThreadId"):
            if name in absorbed:
                sets[name] = absorbed[name]
        if doc.get("chatId") is None and "chatId" in absorbed:
            sets["chatId"] = absorbed["chatId"]
        if "deletedAt" in absorbed:
            current = normalize(doc.get("deletedAt"))
            sets["deletedAt"] = min(d for d in (current, absorbed["deletedAt"]) if d is not None)
        if delivery_moves(sets.get("deliveryState", state), absorbed.get("deliveryState")):
            sets["deliveryState"] = absorbed["deliveryState"]
    return sets
