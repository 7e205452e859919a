"""Receiving events: store durably and idempotently, then ring the doorbell for processing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from django.conf import settings
from django.db import transaction

from events.groupcommit import GroupCommitWriter
from events.models import Event
from events.store import NewEvent, insert_events

logger = logging.getLogger(__name__)


def events_store(
    events: Sequence[NewEvent], on_committed: Callable[[list[bool]], None] | None = None
) -> list[bool]:
    """Store events in one transaction; for each, True if it is new, False if seen before.

    `on_committed(results)` runs right after the commit; processing of the new events is enqueued
    after that, also on commit, so a task can never run before its rows are visible.
    """
    with transaction.atomic():
        inserted = insert_events(events)
        claimed: set[tuple[str, str]] = set()
        results = []
        for event in events:
            key = (event.source, event.external_id)
            results.append(key in inserted and key not in claimed)
            claimed.add(key)
        if on_committed is not None:
            transaction.on_commit(partial(on_committed, results))
        due = sorted(
            {
                event.workspace_key
                for event, new in zip(events, results, strict=True)
                if new and event.status == Event.Status.NEW and event.workspace_key
            }
        )
        if due:
            transaction.on_commit(partial(enqueue_processing, workspace_keys=due), robust=True)
    return results


def enqueue_processing(*, workspace_keys: list[str]) -> None:
    """Ask the task queue to process these workspaces. Losing this call loses nothing: the event
    rows stay `new` and the sweeper re-enqueues them (DESIGN.md: the queue is only the doorbell)."""
    from django_q.tasks import async_task

    async_task("events.tasks.process_workspaces", workspace_keys, q_options={"group": "process"})


group_commit_writer = GroupCommitWriter(events_store, max_batch=settings.WEBHOOK_GROUP_COMMIT_MAX_BATCH)


def event_receive(*, event: NewEvent) -> bool:
    """Store one received event durably; True if new, False if its id was seen before.

    Returns only after the commit. With WEBHOOK_GROUP_COMMIT the commit is shared with whatever
    other requests arrived meanwhile.
    """
    if settings.WEBHOOK_GROUP_COMMIT:
        return bool(group_commit_writer.submit(event, timeout=settings.WEBHOOK_STORE_TIMEOUT_SECONDS))
    return events_store([event])[0]


def events_retry(*, event_ids: Sequence[int]) -> int:
    """Put events back in the queue now (admin action "retry selected events"); return how many.

    Only events that can still be applied are retried: `ignored` and `rejected` stay as they are.
    Saved one by one so the audit trail records each status change and its actor.
    """
    retryable = (Event.Status.NEW, Event.Status.ERROR, Event.Status.REVIEW, Event.Status.PROCESSING)
    with transaction.atomic():
        events = list(Event.objects.select_for_update().filter(pk__in=event_ids, status__in=retryable))
        for event in events:
            event.status = Event.Status.NEW
            event.next_attempt_at = None
            event.lease_owner = ""
            event.lease_expires_at = None
            event.save(update_fields=["status", "next_attempt_at", "lease_owner", "lease_expires_at"])
        keys = sorted({event.workspace_key for event in events if event.workspace_key})
        if keys:
            transaction.on_commit(partial(enqueue_processing, workspace_keys=keys), robust=True)
    return len(events)
