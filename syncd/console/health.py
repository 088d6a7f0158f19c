"""One integration's health in a colour and a few words, from its stored state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.models import Integration, SyncStatus
from syncd.store import Store


@dataclass
class Health:
    integration: Integration
    level: str  # ok, busy, warn, bad
    words: str
    phase: str
    chat_phases: dict[str, int]
    last_error: str | None
    last_message_at: datetime | None
    last_sync_at: datetime | None
    last_webhook_at: datetime | None
    last_hour: int
    failures: int


def judge(integration: Integration, top: SyncStatus | None, phases: dict[str, int],
          failures: int) -> tuple[str, str]:
    """``(level, words)``: the worst thing about the integration first."""
    if integration.status != "active":
        return "bad", f"{integration.status.capitalize()}: {integration.status_reason or 'no reason recorded'}"
    if phases.get("error") or (top is not None and top.phase == "error"):
        return "bad", "Import failing"
    if phases.get("importing") or phases.get("pending") or (top is not None and top.phase in ("pending", "importing")):
        return "busy", "Importing"
    if failures:
        return "warn", f"{failures} failed deliveries or events"
    if top is not None and top.last_error:
        return "warn", "Last sync had an error"
    return "ok", "Healthy"


async def health_of(store: Store, integrations: list[Integration], now: datetime | None = None) -> list[Health]:
    """The health of one page of integrations, in a fixed number of reads for the page."""
    ids = [i.id for i in integrations]
    if not ids:
        return []
    now = now or datetime.now(UTC)
    tops = await store.top_statuses(ids)
    phases = await store.chat_phases(ids)
    messages = await store.last_message_times(ids)
    webhooks = await store.last_webhook_times(ids)
    hour = await store.messages_since(ids, now - timedelta(hours=1))
    failures = await store.failure_counts(ids)
    found = []
    for integration in integrations:
        top, chat_phases = tops.get(integration.id), phases.get(integration.id, {})
        level, words = judge(integration, top, chat_phases, failures.get(integration.id, 0))
        found.append(Health(
            integration=integration, level=level, words=words,
            phase=_phase(top, chat_phases), chat_phases=chat_phases,
            last_error=top.last_error if top else None,
            last_message_at=messages.get(integration.id), last_sync_at=top.updated_at if top else None,
            last_webhook_at=webhooks.get(integration.id), last_hour=hour.get(integration.id, 0),
            failures=failures.get(integration.id, 0),
        ))
    return found


def _phase(top: SyncStatus | None, phases: dict[str, Any]) -> str:
    for phase in ("error", "importing", "pending"):
        if phases.get(phase):
            return phase
    if top is not None:
        return top.phase
    return "done" if phases else "pending"
