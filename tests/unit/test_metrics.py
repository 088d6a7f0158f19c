"""Metrics: counters count, and /metrics serves valid Prometheus text of syncd's own registry."""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from syncd import metrics


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    payload, _ = metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(payload.decode())
        for s in family.samples
    }


def _value(name: str, **labels: str) -> float:
    return _samples().get((name, tuple(sorted(labels.items()))), 0.0)


def test_an_ingested_message_increments_its_counter_by_platform_source_and_result():
    before = _value(
        "syncd_messages_ingested_total", platform="slack", source="webhook", result="created"
    )
    created = metrics.INGESTED.labels(platform="slack", source="webhook", result="created")
    created.inc()
    created.inc()
    after = _value(
        "syncd_messages_ingested_total", platform="slack", source="webhook", result="created"
    )
    assert after == before + 2


def test_every_counter_counts_under_its_documented_labels():
    cases = [
        (metrics.WEBHOOKS, "syncd_webhooks_received", {"platform": "gmail", "outcome": "duplicate"}),
        (metrics.OUTBOX_EVENTS, "syncd_outbox_events", {"type": "message.created", "outcome": "dead"}),
        (metrics.INBOX_ITEMS, "syncd_inbox_items", {"platform": "slack", "outcome": "retried"}),
        (metrics.PROVIDER_REQUESTS, "syncd_provider_requests", {"platform": "slack", "outcome": "ok"}),
        (metrics.APP_CALLBACKS, "syncd_app_callbacks", {"outcome": "sent"}),
    ]
    for counter, family, labels in cases:
        name = f"{family}_total"
        before = _value(name, **labels)
        counter.labels(**labels).inc()
        assert _value(name, **labels) == before + 1, name


def test_backlog_gauges_report_what_was_last_set():
    metrics.INBOX_PENDING.set(7)
    metrics.OUTBOX_PENDING.set(3)
    metrics.OUTBOX_DEAD.set(1)
    metrics.INBOX_FAILED.set(0)
    samples = _samples()
    assert samples[("syncd_inbox_pending", ())] == 7
    assert samples[("syncd_outbox_pending", ())] == 3
    assert samples[("syncd_outbox_dead", ())] == 1
    assert samples[("syncd_inbox_failed", ())] == 0


def test_import_page_durations_land_in_the_histogram():
    before = _value("syncd_import_page_seconds_count", platform="gmail")
    metrics.IMPORT_PAGE_SECONDS.labels(platform="gmail").observe(0.3)
    assert _value("syncd_import_page_seconds_count", platform="gmail") == before + 1
    assert _value("syncd_import_page_seconds_bucket", platform="gmail", le="0.5") >= 1


def test_render_is_prometheus_text_with_its_content_type_and_every_metric_described():
    payload, content_type = metrics.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(payload.decode())}
    expected = {
        "syncd_messages_ingested": "counter",
        "syncd_webhooks_received": "counter",
        "syncd_outbox_events": "counter",
        "syncd_inbox_items": "counter",
        "syncd_provider_requests": "counter",
        "syncd_app_callbacks": "counter",
        "syncd_inbox_pending": "gauge",
        "syncd_outbox_pending": "gauge",
        "syncd_outbox_dead": "gauge",
        "syncd_inbox_failed": "gauge",
        "syncd_import_page_seconds": "histogram",
    }
    assert {name: families[name].type for name in expected} == expected
    assert all(families[name].documentation for name in expected)


def test_syncd_metrics_stay_off_the_global_default_registry():
    # Several apps in one process (tests) must not collide on the process-wide registry.
    global_text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "syncd_" not in global_text


def test_the_process_metrics_prometheus_users_expect_are_served():
    families = {f.name: f for f in text_string_to_metric_families(metrics.render()[0].decode())}

    for name in ("process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"):
        assert families[name].type == "gauge" and families[name].samples[0].value > 0, name
    assert families["process_cpu_seconds"].type == "counter"
    assert families["process_cpu_seconds"].samples[0].value > 0
