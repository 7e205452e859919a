"""Failed processing runs: the events' backoff, and after EVENT_MAX_ATTEMPTS a review item and one admin alert."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alerts.services import alert_raise
from events.models import Event
from failures.retry import backoff
from workspaces.actors import acting_as_system
from workspaces.models import ReviewItem
from workspaces.review import review_item_raise

logger = logging.getLogger(__name__)


def retry_delay(attempt: int) -> timedelta:
    """Events' parameters of the one backoff rule (failures/retry.py): base·2^(n-1), capped, 50–100 %."""
    return backoff(attempt, base=settings.EVENT_RETRY_BASE_SECONDS, cap=settings.EVENT_RETRY_MAX_SECONDS, spread=0.5)


def events_record_failure(*, event_ids: list[int], worker: str, error: Exception) -> None:
    """Put claimed events in `error` with a next attempt, or in `review` once attempts run out."""
    now = timezone.now()
    message = f"{type(error).__name__}: {error}"[:500]
    with transaction.atomic(), acting_as_system():
        events = list(Event.objects.select_for_update().filter(pk__in=event_ids, lease_owner=worker))
        exhausted = []
        for event in events:
            event.retry_count += 1
            event.lease_owner, event.lease_expires_at = "", None
            event.notes = f"{now:%Y-%m-%d %H:%M:%S}Z attempt {event.retry_count}: {message}"
            if event.retry_count >= settings.EVENT_MAX_ATTEMPTS:
                event.status, event.next_attempt_at = Event.Status.REVIEW, None
                exhausted.append(event)
            else:
                event.status, event.next_attempt_at = Event.Status.ERROR, now + retry_delay(event.retry_count)
            event.save(
                update_fields=[
                    "retry_count",
                    "lease_owner",
                    "lease_expires_at",
                    "notes",
                    "status",
                    "next_attempt_at",
                ]
            )
        if exhausted:
            events_escalate(exhausted, message)


def events_escalate(events: list[Event], message: str) -> None:
    """Events out of attempts: one review item and exactly one admin alert for them."""
    workspace_key = events[0].workspace_key
    first = min(event.pk for event in events)
    review_item_raise(
        kind=ReviewItem.Kind.PROCESSING_FAILED,
        dedupe_key=f"processing_failed:{workspace_key}:{first}",
        reason=f"Workspace {workspace_key}: {len(events)} event(s) failed {settings.EVENT_MAX_ATTEMPTS} times. "
        f"Last error: {message}",
        event_pks=[event.pk for event in events],
    )
    alert_raise(
        rule="event_failed",
        dedupe_key=f"event_failed:{workspace_key}:{first}",
        title=f"Events for workspace {workspace_key} need review",
        reason=f"{len(events)} event(s) failed {settings.EVENT_MAX_ATTEMPTS} attempts. Last error: {message}",
        workspace_key=workspace_key,
        context={"event_ids": [event.external_id for event in events], "error": message},
    )
