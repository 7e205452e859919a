"""Reads for the ops page and the Prometheus gauges: each a few grouped queries over indexed columns.

Percentiles are computed in the database: `percentile_disc` on PostgreSQL, and elsewhere a count
plus one ORDER BY … OFFSET per percentile. Both give the nearest-rank percentile, so the figures
agree whichever database runs the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum

from alerts.models import Delivery
from events.models import Event
from failures.models import ErrorKind
from salesforce.models import OutboxItem, SyncControl
from salesforce.pilot import PilotStatus, pilot_status
from workspaces.models import ReviewItem

#: Everything but `completed`, which only grows (counted over the window instead).
BACKLOG_STATUSES = tuple(status for status in Event.Status.values if status != Event.Status.COMPLETED)
OUTBOX_WAITING = (OutboxItem.State.PENDING, OutboxItem.State.RETRY)


@dataclass(frozen=True)
class Lag:
    completed: int
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class ErrorRate:
    received: int
    failed: int

    @property
    def share(self) -> float | None:
        return self.failed / self.received if self.received else None


def event_counts_by_status() -> dict[str, int]:
    rows = Event.objects.filter(status__in=BACKLOG_STATUSES).values("status").annotate(n=Count("id")).order_by()
    counts = dict.fromkeys(BACKLOG_STATUSES, 0)
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def oldest_open_event_received_at() -> datetime | None:
    return Event.objects.filter(status__in=Event.OPEN_STATUSES).aggregate(oldest=Min("received_at"))["oldest"]


def processing_lag(*, since: datetime) -> Lag:
    """Received → completed, in seconds, of the events received since `since` that have completed."""
    if connection.vendor == "postgresql":
        return _lag_postgresql(since)
    done = Event.objects.filter(status=Event.Status.COMPLETED, received_at__gte=since, completed_at__isnull=False)
    total = done.count()
    if not total:
        return Lag(0, None, None)
    ordered = done.annotate(
        lag=ExpressionWrapper(F("completed_at") - F("received_at"), output_field=DurationField())
    ).order_by("lag")

    def at(share: float) -> float:
        rank = max(math.ceil(share * total), 1) - 1
        return ordered.values_list("lag", flat=True)[rank].total_seconds()

    return Lag(total, at(0.5), at(0.95))


def _lag_postgresql(since: datetime) -> Lag:
    table = Event._meta.db_table
    lag = "EXTRACT(EPOCH FROM completed_at - received_at)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY {lag}), "  # noqa: S608 (constants only)
            f"percentile_disc(0.95) WITHIN GROUP (ORDER BY {lag}) FROM {table} "
            "WHERE status = %s AND received_at >= %s AND completed_at IS NOT NULL",
            [Event.Status.COMPLETED, since],
        )
        total, p50, p95 = cursor.fetchone()
    return Lag(total, float(p50) if p50 is not None else None, float(p95) if p95 is not None else None)


def event_error_rate(*, since: datetime) -> ErrorRate:
    """Of the events received since `since`, how many failed processing at least once (retry_count > 0,
    the same filter the ops page links to; payloads parked unreadable are counted under review instead)."""
    failed = Q(retry_count__gt=0)
    # Every status named: the (status, received_at) index then serves the time range.
    recent = Event.objects.filter(status__in=Event.Status.values, received_at__gte=since)
    row = recent.aggregate(received=Count("id"), failed=Count("id", filter=failed))
    return ErrorRate(row["received"], row["failed"])


def completed_since(*, since: datetime) -> int:
    return Event.objects.filter(status=Event.Status.COMPLETED, received_at__gte=since).count()


def review_open_count() -> int:
    return ReviewItem.objects.filter(status=ReviewItem.Status.OPEN).count()


def outbox_counts_by_state() -> dict[str, int]:
    rows = OutboxItem.objects.values("state").annotate(n=Count("id")).order_by()
    counts = dict.fromkeys(OutboxItem.State.values, 0)
    counts.update({row["state"]: row["n"] for row in rows})
    return counts


def oldest_waiting_write() -> datetime | None:
    """When the oldest unsent Salesforce write was recorded (its row's last change)."""
    return OutboxItem.objects.filter(state__in=OUTBOX_WAITING).aggregate(oldest=Min("updated_at"))["oldest"]


def sync_control_row() -> SyncControl | None:
    return SyncControl.objects.filter(pk=1).first()


def salesforce_pilot() -> PilotStatus:
    """The pilot in force, what it holds, and the release after a widening."""
    return pilot_status()


@dataclass(frozen=True)
class DeliveryQueue:
    """Unsent alert deliveries by when they are due: a backlog is late, a scheduled row is not."""

    backlog: int  # pending or failed, due now or earlier (or never given a time): should go out on the next sweep
    oldest_due: datetime | None
    digests: int  # pending daily digests waiting for their hour
    next_digest: datetime | None
    instant: int  # pending instant rows due later: the recipient's quiet hours (or leased while being sent)
    next_instant: datetime | None


def delivery_queue(*, now: datetime) -> DeliveryQueue:
    """One grouped query over the unsent rows (the `delivery_due` partial index covers them)."""
    due = Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True)
    later = Q(status=Delivery.Status.PENDING, next_attempt_at__gt=now)
    digest, instant = later & Q(mode=Delivery.Mode.DIGEST), later & Q(mode=Delivery.Mode.INSTANT)
    row = Delivery.objects.filter(status__in=(Delivery.Status.PENDING, Delivery.Status.FAILED)).aggregate(
        backlog=Count("id", filter=due),
        oldest_due=Min("next_attempt_at", filter=due),
        digests=Count("id", filter=digest),
        next_digest=Min("next_attempt_at", filter=digest),
        instant=Count("id", filter=instant),
        next_instant=Min("next_attempt_at", filter=instant),
    )
    return DeliveryQueue(**row)


def delivery_counts_by_status() -> dict[str, int]:
    rows = Delivery.objects.values("status").annotate(n=Count("id")).order_by()
    counts = dict.fromkeys(Delivery.Status.values, 0)
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def errors_total_by_source() -> dict[str, int]:
    rows = ErrorKind.objects.values("source").annotate(n=Sum("count")).order_by()
    totals = dict.fromkeys(ErrorKind.Source.values, 0)
    totals.update({row["source"]: row["n"] or 0 for row in rows})
    return totals


def error_kinds_recent(*, since: datetime, limit: int = 10) -> list[ErrorKind]:
    return list(ErrorKind.objects.filter(last_seen__gte=since).select_related("last_object_type")[:limit])
