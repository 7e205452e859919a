"""Payload retention: old payloads keep only what ordering and the fold read.

An event's payload is kept whole while it may still be needed as received (processing, retries,
review). Once the event is settled (`completed`, `ignored`, `rejected`) and older than
EVENT_PAYLOAD_RETENTION_DAYS, it is cut down to:

- lifecycle and billing events: the envelope (`type`, `timestamp`, the Stripe ids) and the `data`
  fields of the type's schema, minus personal fields nothing reads again (a billing event's
  `email`, a usage event's `user_email`). The fold reads validated data only, so re-folding the cut
  payload gives the same state (tests/privacy/test_retention.py checks it); the owner's email and
  names stay, because the fold writes them to the workspace record that still holds them;
- Marketo leads (applied once, never re-read): `lead_id`, `created_at`, `company`;
- anything never applied (ignored, rejected): `id`, `type`, `timestamp`, `created` only.

The cut is a projection: cutting a cut payload changes nothing, and a run only picks rows without
`payload_scrubbed_at`, so running twice equals running once, and one run after an outage does all
that is due without replaying the days missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from events.models import Event
from events.schemas import STORED_DATA_SCHEMAS
from events.services import MARKETO_TYPE

#: Settled statuses whose payload is no longer needed as received.
SETTLED = (Event.Status.COMPLETED, Event.Status.IGNORED, Event.Status.REJECTED)
#: Personal fields of a schema that nothing reads once the event is completed.
UNREAD_PERSONAL = {
    "billing.payment_failed": frozenset({"email"}),
    "billing.trial_will_end": frozenset({"email"}),
    "usage.recorded": frozenset({"user_email"}),
}
MARKETO_KEPT = ("lead_id", "created_at", "company")
ENVELOPE_KEPT = ("id", "type", "timestamp", "created")


@cache
def kept_data_fields(event_type: str) -> frozenset[str]:
    """The `data` keys a settled event of this type keeps: its schema's fields, less unread personal ones."""
    schema = STORED_DATA_SCHEMAS[event_type]
    return frozenset(schema().fields) - UNREAD_PERSONAL.get(event_type, frozenset())


def payload_retained(*, event_type: str, status: str, payload: Any) -> dict[str, Any]:
    """The payload cut down to what a settled event still needs (a pure projection)."""
    if not isinstance(payload, dict):
        return {}
    envelope = {key: payload[key] for key in ENVELOPE_KEPT if isinstance(payload.get(key), str | int | float)}
    if status == Event.Status.COMPLETED and event_type == MARKETO_TYPE:
        return {key: payload[key] for key in MARKETO_KEPT if key in payload}
    if status != Event.Status.COMPLETED or event_type not in STORED_DATA_SCHEMAS:
        return envelope
    data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
    kept = kept_data_fields(event_type)
    result = {**envelope, "data": {key: value for key, value in data.items() if key in kept}}
    if isinstance(payload.get("stripe"), dict):
        result["stripe"] = {k: v for k, v in payload["stripe"].items() if k in ("event_id", "type", "object_id")}
    return result


@dataclass
class RetentionReport:
    cutoff: datetime | None
    due: int = 0
    scrubbed: int = 0
    dry_run: bool = False


def retention_cutoff(now: datetime | None = None) -> datetime | None:
    """Events received before this are due; None when EVENT_PAYLOAD_RETENTION_DAYS keeps payloads forever."""
    days = settings.EVENT_PAYLOAD_RETENTION_DAYS
    if not days:
        return None
    return (now or timezone.now()) - timedelta(days=days)


def events_due(cutoff: datetime):
    return Event.objects.filter(status__in=SETTLED, received_at__lt=cutoff, payload_scrubbed_at__isnull=True)


def events_scrub_expired(
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int = 500,
    progress: Callable[[RetentionReport], None] | None = None,
) -> RetentionReport:
    """Cut the payloads of settled events past retention, batch by batch; return what was done."""
    cutoff = retention_cutoff(now)
    report = RetentionReport(cutoff=cutoff, dry_run=dry_run)
    if cutoff is None:
        return report
    report.due = events_due(cutoff).count()
    if dry_run or not report.due:
        return report
    last_pk = 0
    while True:
        with transaction.atomic():
            rows = list(
                events_due(cutoff)
                .filter(pk__gt=last_pk)
                .order_by("pk")
                .select_for_update()
                .only("pk", "type", "status", "payload")[:batch_size]
            )
            if not rows:
                break
            stamp = timezone.now()
            for row in rows:
                row.payload = payload_retained(event_type=row.type, status=row.status, payload=row.payload)
                row.payload_scrubbed_at = stamp
            # Bulk: the payload is excluded from the audit trail anyway (events/audit.py).
            Event.objects.bulk_update(rows, ["payload", "payload_scrubbed_at"])
        last_pk = rows[-1].pk
        report.scrubbed += len(rows)
        if progress:
            progress(report)
    return report
