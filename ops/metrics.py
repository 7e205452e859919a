"""Engine gauges for Prometheus, read from the database at scrape time.

django-prometheus counts requests and queries per process; these figures live in the database, so
any web process answers them the same way. They are collected into a registry of their own, made
per scrape, so nothing queries the database unless /metrics is asked. The only module that imports
prometheus_client (django-prometheus itself is wired in settings).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import prometheus_client
from django.conf import settings
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ops import selectors
from ops.health import heartbeat_report


class EngineCollector:
    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self._events(now)
        yield from self._sync()
        yield from self._alerts_and_errors()
        heartbeat = GaugeMetricFamily(
            "lifecycle_heartbeat_age_seconds", "Seconds since the heartbeat was stamped (-1: never).", labels=["name"]
        )
        for name, beat in heartbeat_report(now=now).items():
            heartbeat.add_metric([name], -1 if beat["age_seconds"] is None else beat["age_seconds"])
        yield heartbeat

    def _events(self, now) -> Iterator[Metric]:
        backlog = GaugeMetricFamily("lifecycle_events", "Events by status (completed excluded).", labels=["status"])
        for status, count in selectors.event_counts_by_status().items():
            backlog.add_metric([status], count)
        yield backlog
        oldest = selectors.oldest_open_event_received_at()
        yield GaugeMetricFamily(
            "lifecycle_event_oldest_open_age_seconds",
            "Age of the oldest event still new, processing or in error.",
            value=(now - oldest).total_seconds() if oldest else 0,
        )
        lag = selectors.processing_lag(since=now - timedelta(minutes=settings.OPS_WINDOW_MINUTES))
        gauge = GaugeMetricFamily(
            "lifecycle_processing_lag_seconds",
            f"Received → completed of events received in the last {settings.OPS_WINDOW_MINUTES} min.",
            labels=["quantile"],
        )
        for quantile, value in (("0.5", lag.p50), ("0.95", lag.p95)):
            if value is not None:
                gauge.add_metric([quantile], value)
        yield gauge
        yield GaugeMetricFamily(
            "lifecycle_review_open", "Open items in the review queue.", value=selectors.review_open_count()
        )

    def _sync(self) -> Iterator[Metric]:
        outbox = GaugeMetricFamily("lifecycle_outbox_items", "Salesforce outbox rows by state.", labels=["state"])
        for state, count in selectors.outbox_counts_by_state().items():
            outbox.add_metric([state], count)
        yield outbox
        control = selectors.sync_control_row()
        if control and control.api_max:
            yield GaugeMetricFamily(
                "lifecycle_salesforce_api_used", "Salesforce API calls used today.", control.api_used
            )
            yield GaugeMetricFamily("lifecycle_salesforce_api_max", "Salesforce daily API allocation.", control.api_max)
        if control and control.last_success_at:
            yield GaugeMetricFamily(
                "lifecycle_salesforce_last_success_timestamp_seconds",
                "When a Salesforce write last succeeded (Unix time).",
                value=control.last_success_at.timestamp(),
            )

    def _alerts_and_errors(self) -> Iterator[Metric]:
        deliveries = GaugeMetricFamily("lifecycle_alert_deliveries", "Alert deliveries by status.", labels=["status"])
        for status, count in selectors.delivery_counts_by_status().items():
            deliveries.add_metric([status], count)
        yield deliveries
        errors = CounterMetricFamily(
            "lifecycle_errors", "Failures recorded by error tracking, by source.", labels=["source"]
        )
        for source, total in selectors.errors_total_by_source().items():
            errors.add_metric([source], total)
        yield errors


def process_registry() -> CollectorRegistry:
    """This process's django-prometheus metrics, or every process's in prometheus_client multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


def metrics_page() -> tuple[bytes, str]:
    """The exposition text (request and database metrics, then the engine's) and its content type."""
    engine = CollectorRegistry(auto_describe=False)
    engine.register(EngineCollector())
    return generate_latest(process_registry()) + generate_latest(engine), CONTENT_TYPE_LATEST
