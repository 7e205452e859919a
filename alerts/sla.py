"""Delivery SLAs, checked by a schedule: each breach raises one admin alert with the figures behind it.

- Events: any event still open SLA_EVENT_SECONDS after it was received, or one that completed
  later than that within the alert window (a breach the cluster recovered from between two checks).
- Salesforce: writes waiting (pending or retrying) longer than SLA_SALESFORCE_MINUTES since the
  change was recorded. Not checked while the sync is off.
- Sources: a webhook source whose last event is older than SLA_SOURCE_SILENCE_FACTOR × its mean
  gap between events over the lookback (and at least SLA_SOURCE_SILENCE_MIN_MINUTES), read from
  per-source daily counts kept up to date incrementally (the lookback is whole UTC days).

Event and Salesforce breaches are deduplicated per SLA_ALERT_WINDOW_MINUTES window; a silence by the
last event seen, so one silence alerts once however long it lasts, and the next silence again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Min, Sum, Value
from django.db.models.functions import Greatest, Least, TruncDate
from django.utils import timezone

from alerts.services import alert_raise
from events.models import Event, RollupCursor, SourceDay
from salesforce.models import OutboxItem

EXAMPLES = 10
TRAFFIC_CURSOR = "source_traffic"
ROLLUP_CHUNK = 200_000


@dataclass(frozen=True)
class Breach:
    rule: str
    dedupe_key: str
    title: str
    reason: str
    context: dict[str, Any] = field(default_factory=dict)


def alert_window(now: datetime) -> str:
    seconds = settings.SLA_ALERT_WINDOW_MINUTES * 60
    epoch = int(now.timestamp())
    return f"{datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC):%Y%m%dT%H%M}"


def event_delay_breach(*, now: datetime) -> Breach | None:
    sla = timedelta(seconds=settings.SLA_EVENT_SECONDS)
    waiting = Event.objects.filter(status__in=Event.OPEN_STATUSES, received_at__lt=now - sla)
    count = waiting.count()
    window = timedelta(minutes=settings.SLA_ALERT_WINDOW_MINUTES)
    late = Event.objects.filter(
        status=Event.Status.COMPLETED,
        # Bounded to the status/received index: anything received earlier was open, and alerted, before.
        received_at__gte=now - 2 * window,
        completed_at__gte=now - window,
        completed_at__gt=F("received_at") + sla,
    ).count()
    if not count and not late:
        return None
    oldest = waiting.order_by("received_at").values("received_at", "external_id", "status", "workspace_key").first()
    figures = [f"{count} event(s) not completed {settings.SLA_EVENT_SECONDS} s after receipt"]
    if oldest:
        figures.append(f"oldest waiting {(now - oldest['received_at']).total_seconds():.0f} s ({oldest['status']})")
    if late:
        figures.append(f"{late} completed late in the last {settings.SLA_ALERT_WINDOW_MINUTES} min")
    return Breach(
        rule="sla_event_delay",
        dedupe_key=f"sla_event_delay:{alert_window(now)}",
        title=f"Event processing behind its SLA ({settings.SLA_EVENT_SECONDS} s)",
        reason="; ".join(figures) + ".",
        context={
            "waiting": count,
            "completed_late": late,
            "sla_seconds": settings.SLA_EVENT_SECONDS,
            "oldest": {**oldest, "received_at": oldest["received_at"].isoformat()} if oldest else None,
            "event_ids": list(waiting.order_by("received_at").values_list("external_id", flat=True)[:EXAMPLES]),
        },
    )


def salesforce_delay_breach(*, now: datetime) -> Breach | None:
    if settings.SALESFORCE_SYNC == "off":
        return None
    sla = timedelta(minutes=settings.SLA_SALESFORCE_MINUTES)
    waiting = OutboxItem.objects.filter(
        state__in=[OutboxItem.State.PENDING, OutboxItem.State.RETRY], updated_at__lt=now - sla
    )
    by_type = dict(waiting.values("object_type").annotate(n=Count("id")).order_by().values_list("object_type", "n"))
    if not by_type:
        return None
    total = sum(by_type.values())
    oldest = waiting.order_by("updated_at").values("updated_at", "object_type", "external_id", "error_code").first()
    age = (now - oldest["updated_at"]).total_seconds() / 60
    kinds = ", ".join(f"{n} {object_type}" for object_type, n in sorted(by_type.items()))
    return Breach(
        rule="sla_salesforce_delay",
        dedupe_key=f"sla_salesforce_delay:{alert_window(now)}",
        title=f"Salesforce writes behind their SLA ({settings.SLA_SALESFORCE_MINUTES} min)",
        reason=(
            f"{total} write(s) waiting longer than {settings.SLA_SALESFORCE_MINUTES} min ({kinds}); "
            f"oldest {age:.0f} min: {oldest['object_type']} {oldest['external_id']}"
            + (f", last error {oldest['error_code']}" if oldest["error_code"] else "")
            + "."
        ),
        context={
            "waiting": total,
            "by_type": by_type,
            "sla_minutes": settings.SLA_SALESFORCE_MINUTES,
            "oldest_minutes": round(age, 1),
            "outbox_ids": list(waiting.order_by("updated_at").values_list("pk", flat=True)[:EXAMPLES]),
        },
    )


def source_traffic_rollup(*, chunk: int = ROLLUP_CHUNK) -> int:
    """Add events received since the last run to the per-source daily counts; return how many.

    Reads by primary key from where the last run stopped (an index range, not a scan of the table),
    at most `chunk` ids a run, under the cursor's row lock. A row committed after a higher id was
    already read is not counted: these are statistics for "usual traffic", not records.
    """
    with transaction.atomic():
        RollupCursor.objects.get_or_create(name=TRAFFIC_CURSOR)
        cursor = RollupCursor.objects.select_for_update().get(name=TRAFFIC_CURSOR)
        newest = Event.objects.aggregate(newest=Max("pk"))["newest"] or 0
        upto = min(newest, cursor.position + chunk)
        if upto <= cursor.position:
            return 0
        rows = (
            Event.objects.filter(pk__gt=cursor.position, pk__lte=upto)
            .annotate(day=TruncDate("received_at"))
            .values("source", "day")
            .annotate(n=Count("id"), first=Min("received_at"), last=Max("received_at"))
            .order_by()
        )
        added = 0
        for row in rows:
            day, created = SourceDay.objects.get_or_create(
                source=row["source"],
                day=row["day"],
                defaults={"count": row["n"], "first_at": row["first"], "last_at": row["last"]},
            )
            if not created:
                SourceDay.objects.filter(pk=day.pk).update(
                    count=F("count") + row["n"],
                    first_at=Least("first_at", Value(row["first"])),
                    last_at=Greatest("last_at", Value(row["last"])),
                )
            added += row["n"]
        RollupCursor.objects.filter(name=TRAFFIC_CURSOR).update(position=upto)
    return added


def silent_source_breaches(*, now: datetime) -> list[Breach]:
    source_traffic_rollup()
    return [breach for source in Event.Source.values if (breach := _silent(source, now)) is not None]


def _silent(source: str, now: datetime) -> Breach | None:
    days = SourceDay.objects.filter(source=source)
    last = days.aggregate(last=Max("last_at"))["last"]
    if last is None:
        return None
    since = (last - timedelta(days=settings.SLA_SOURCE_LOOKBACK_DAYS)).date()
    stats = days.filter(day__gte=since).aggregate(n=Sum("count"), first=Min("first_at"))
    if stats["n"] < max(settings.SLA_SOURCE_MIN_EVENTS, 2):
        return None  # too little traffic to say what is usual
    usual_gap = (last - stats["first"]) / (stats["n"] - 1)
    allowed = max(
        usual_gap * settings.SLA_SOURCE_SILENCE_FACTOR, timedelta(minutes=settings.SLA_SOURCE_SILENCE_MIN_MINUTES)
    )
    silence = now - last
    if silence <= allowed:
        return None
    return Breach(
        rule="sla_source_silent",
        dedupe_key=f"sla_source_silent:{source}:{last.timestamp():.6f}",
        title=f"No {source} webhooks for {_minutes(silence)}",
        reason=(
            f"The last {source} event arrived {_minutes(silence)} ago ({last:%Y-%m-%d %H:%M:%S} UTC); "
            f"over the {settings.SLA_SOURCE_LOOKBACK_DAYS} days before it, {stats['n']} events arrived, "
            f"one every {_minutes(usual_gap)} on average. Alerting after {_minutes(allowed)} "
            f"({settings.SLA_SOURCE_SILENCE_FACTOR:g}× the usual gap, at least "
            f"{settings.SLA_SOURCE_SILENCE_MIN_MINUTES} min)."
        ),
        context={
            "source": source,
            "last_received_at": last.isoformat(),
            "silence_seconds": round(silence.total_seconds()),
            "usual_gap_seconds": round(usual_gap.total_seconds(), 1),
            "allowed_seconds": round(allowed.total_seconds()),
            "events_in_lookback": stats["n"],
        },
    )


def _minutes(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def sla_evaluate(*, now: datetime | None = None) -> dict[str, int]:
    """Check every SLA; raise an admin alert per breach (deduplicated). Returns breaches and new alerts."""
    now = now or timezone.now()
    breaches = [event_delay_breach(now=now), salesforce_delay_breach(now=now), *silent_source_breaches(now=now)]
    found = [breach for breach in breaches if breach is not None]
    raised = 0
    for breach in found:
        _, created = alert_raise(
            rule=breach.rule,
            dedupe_key=breach.dedupe_key,
            title=breach.title,
            reason=breach.reason,
            context=breach.context,
        )
        raised += created
    return {"breaches": len(found), "raised": raised}
