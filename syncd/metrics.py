"""Prometheus metrics of the sync, served at ``GET /metrics``.

Every metric lives on the module's own :data:`REGISTRY` rather than prometheus-client's global
default one: an app (or a test) may build several FastAPI apps in one process, and each
``Counter(...)`` is created exactly once here, so nothing is registered twice. The engine
increments these directly (``INGESTED.labels(platform, "webhook", "created").inc()``); the
backlog gauges are set from the store's inbox/outbox counts when ``/metrics`` is scraped.

The registry also carries prometheus-client's process collector (``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``process_open_fds``, ``process_start_time_seconds``...), read
from ``/proc`` at each scrape; where there is no ``/proc`` it reports nothing.

Label values are small closed sets (platform names, the outcomes listed on each metric);
never put ids, chat names or error texts in a label.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = [
    "APP_CALLBACKS",
    "CONTENT_TYPE",
    "IMPORT_PAGE_SECONDS",
    "INBOX_FAILED",
    "INBOX_ITEMS",
    "INBOX_PENDING",
    "INGESTED",
    "OUTBOX_DEAD",
    "OUTBOX_EVENTS",
    "OUTBOX_PENDING",
    "PROVIDER_REQUESTS",
    "REGISTRY",
    "WEBHOOKS",
    "render",
]

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

#: The classic text format, which ``generate_latest`` writes for our (plain ASCII) names and
#: every Prometheus version scrapes; newer clients advertise ``version=1.0.0`` instead.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

INGESTED = Counter(
    "syncd_messages_ingested_total",
    "Messages written by the ingest path; source is webhook, poll, import or resync; "
    "result is created, updated, unchanged or deleted.",
    ["platform", "source", "result"],
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "syncd_webhooks_received_total",
    "Provider webhook requests; outcome is accepted, duplicate, rejected or handshake.",
    ["platform", "outcome"],
    registry=REGISTRY,
)
OUTBOX_EVENTS = Counter(
    "syncd_outbox_events_total",
    "App events delivered to platforms; outcome is sent, retried or dead.",
    ["type", "outcome"],
    registry=REGISTRY,
)
INBOX_ITEMS = Counter(
    "syncd_inbox_items_total",
    "Inbox items processed by the worker; outcome is done, retried or failed.",
    ["platform", "outcome"],
    registry=REGISTRY,
)
PROVIDER_REQUESTS = Counter(
    "syncd_provider_requests_total",
    "HTTP requests to platform APIs by outcome (ok, rate_limited, transient, auth, permanent).",
    ["platform", "outcome"],
    registry=REGISTRY,
)
APP_CALLBACKS = Counter(
    "syncd_app_callbacks_total",
    "Change notifications POSTed to the app's callback URL; outcome is sent, retried or dead.",
    ["outcome"],
    registry=REGISTRY,
)
FULL_SYNCS = Counter(
    "syncd_full_syncs_total",
    "Periodic full syncs of an integration; event is started or finished.",
    ["platform", "event"],
    registry=REGISTRY,
)
FULL_SYNC_CHANGES = Counter(
    "syncd_full_sync_changes_total",
    "What periodic full syncs found that no event had announced; change is inserted, updated or deleted.",
    ["platform", "change"],
    registry=REGISTRY,
)
DISCONNECTS = Counter(
    "syncd_disconnects_total",
    "Undoing at the platform what an integration set up there, when it is deleted; outcome is "
    "done, retrying or given_up.",
    ["platform", "outcome"],
    registry=REGISTRY,
)

INBOX_PENDING = Gauge(
    "syncd_inbox_pending", "Inbox items waiting to be processed.", registry=REGISTRY
)
OUTBOX_PENDING = Gauge(
    "syncd_outbox_pending", "Outbox events waiting to be delivered.", registry=REGISTRY
)
OUTBOX_DEAD = Gauge(
    "syncd_outbox_dead", "Outbox events that exhausted their retries.", registry=REGISTRY
)
INBOX_FAILED = Gauge(
    "syncd_inbox_failed", "Inbox items that exhausted their retries.", registry=REGISTRY
)

IMPORT_PAGE_SECONDS = Histogram(
    "syncd_import_page_seconds",
    "Time to fetch, map and store one history page during an import or resync.",
    ["platform"],
    # Pages wait out rate limits (some APIs allow ~50 calls a minute), so the tail is long.
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The registry in Prometheus text exposition format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE
