"""The sweeper: a scheduled task that re-enqueues whatever the task queue lost.

The queue is only the doorbell (DESIGN.md). Every minute the sweeper looks at the rows: `new` events
older than a minute, `processing` events whose lease expired (a worker died), and `error` events due
for retry, and rings again. It marks what it re-enqueued so a backlog the cluster is still draining
is not enqueued again every minute.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from events.models import Event
from events.services import WorkItem, enqueue_work

STALE_AFTER = timedelta(minutes=1)
MAX_PER_SWEEP = 20_000


def events_sweep() -> dict[str, int]:
    now = timezone.now()
    stale_new = Q(status=Event.Status.NEW, received_at__lt=now - STALE_AFTER) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    expired = Q(status=Event.Status.PROCESSING, lease_expires_at__lt=now)
    due_retry = Q(status=Event.Status.ERROR, next_attempt_at__lte=now)
    counts = {
        "new": Event.objects.filter(stale_new).count(),
        "expired_leases": Event.objects.filter(expired).count(),
        "due_retries": Event.objects.filter(due_retry).count(),
    }
    rows = list(
        Event.objects.filter(stale_new | expired | due_retry)
        .order_by("received_at")
        .values_list("pk", "type", "workspace_key", "status")[:MAX_PER_SWEEP]
    )
    if rows:
        # Not again before a lease has passed: the cluster may simply be busy with a backlog.
        Event.objects.filter(pk__in=[pk for pk, _, _, status in rows if status == Event.Status.NEW]).update(
            next_attempt_at=now + timedelta(seconds=settings.EVENT_LEASE_SECONDS)
        )
        enqueue_work(items=[WorkItem(type_, key, pk) for pk, type_, key, _ in rows])
    counts["enqueued"] = len(rows)
    return counts
