"""Receiving events: store durably and idempotently, then ring the doorbell for processing."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from events.groupcommit import Doorbell, GroupCommitWriter
from events.intake import intake_filtered
from events.models import Event, WebhookBatch
from events.schemas import EVENT_TYPES, Handling
from events.schemas import MARKETO_TYPE as MARKETO_TYPE  # where its readers import it from
from events.store import NewEvent, holdable, insert_events

_brokers: dict[int, object] = {}


def async_task(func: str, *args: object, **kwargs: object) -> str:
    """django-q2's async_task with one broker per process.

    django-q2 builds a new broker (for Redis: a new connection) on every call unless one is passed;
    reusing it takes a connect off every enqueue. Imported late so this module needs no app registry.
    """
    from django_q.brokers import get_broker
    from django_q.tasks import async_task as enqueue

    broker = _brokers.get(os.getpid())
    if broker is None:
        _brokers.clear()
        broker = _brokers[os.getpid()] = get_broker()
    return enqueue(func, *args, broker=broker, **kwargs)


def events_store(
    events: Sequence[NewEvent],
    on_committed: Callable[[list[bool]], None] | None = None,
    ring: Callable[[list[WorkItem]], None] | None = None,
) -> list[bool]:
    """Store events in one transaction; for each, True if it is new, False if seen before.

    `on_committed(results)` runs right after the commit; processing of the new events is enqueued
    after that (`ring`, default enqueue_work), also on commit, so a task can never run before its rows
    are visible.
    """
    with transaction.atomic():
        # An event naming an erased person is stored suppressed and scrubbed (docs/privacy.md).
        events = intake_filtered(events)
        inserted = insert_events(events)
        claimed: set[tuple[str, str]] = set()
        results = []
        for event in events:
            key = (event.source, event.external_id)
            results.append(key in inserted and key not in claimed)
            claimed.add(key)
        if on_committed is not None:
            transaction.on_commit(lambda: on_committed(results))
        fresh = [
            WorkItem(event.type, event.workspace_key, inserted[(event.source, event.external_id)])
            for event, new in zip(events, results, strict=True)
            if new and event.status == Event.Status.NEW
        ]
        if fresh:
            transaction.on_commit(lambda: (ring or _ring_now)(fresh), robust=True)
    return results


class WorkItem(NamedTuple):
    type: str
    workspace_key: str
    pk: int


def enqueue_work(*, items: Sequence[WorkItem]) -> None:
    """Ring the doorbell for events to process: one task per kind of work, never one per event.

    Each type goes where its registry entry says (events/schemas.py EVENT_TYPES): folded types to their
    workspace's processing, rolled-up types (usage, tickets, plan limits) to the rollup task, so a flood of
    telemetry never delays lifecycle work. Losing this call loses nothing: the rows stay where they are and
    the sweeper re-enqueues them (DESIGN.md: the queue is only the doorbell).
    """
    by_handling: dict[Handling | None, list[WorkItem]] = {}
    for item in items:
        event_type = EVENT_TYPES.get(item.type)
        by_handling.setdefault(event_type.handling if event_type else None, []).append(item)
    workspaces = sorted({item.workspace_key for item in by_handling.get(Handling.FOLDED, []) if item.workspace_key})
    rolled_up = [item.pk for item in by_handling.get(Handling.ROLLED_UP, [])]
    marketo = [item.pk for item in by_handling.get(Handling.MARKETO, [])]
    if workspaces:
        enqueue_workspaces(workspace_keys=workspaces)
    if rolled_up:
        async_task("usage.tasks.rollup_usage", rolled_up, q_options={"group": "usage"})
    if marketo:
        async_task("processing.tasks.process_marketo_leads", marketo, q_options={"group": "marketo"})


def enqueue_workspaces(*, workspace_keys: Sequence[str], force: bool = False, chunk: int = 100) -> None:
    """Queue workspace processing in coarse tasks (PITFALLS: tasks cost several queries each)."""
    keys = list(workspace_keys)
    for start in range(0, len(keys), chunk):
        async_task(
            "processing.tasks.process_workspaces",
            keys[start : start + chunk],
            force,
            q_options={"group": "process"},
        )


def _ring_now(items: list[WorkItem]) -> None:
    enqueue_work(items=items)


# The group-commit writer holds what its commits enqueue for WEBHOOK_DOORBELL_SECONDS (events/groupcommit.py).
_doorbell = Doorbell(_ring_now, window=settings.WEBHOOK_DOORBELL_SECONDS)
group_commit_writer = GroupCommitWriter(
    lambda events, on_committed: events_store(events, on_committed, ring=_doorbell.hold),
    max_batch=settings.WEBHOOK_GROUP_COMMIT_MAX_BATCH,
    doorbell=_doorbell,
)


def event_receive(*, event: NewEvent) -> bool:
    """Store one received event durably; True if new, False if its id was seen before.

    Returns only after the commit. With WEBHOOK_GROUP_COMMIT the commit is shared with whatever
    other requests arrived meanwhile.
    """
    if settings.WEBHOOK_GROUP_COMMIT:
        return bool(group_commit_writer.submit(event, timeout=settings.WEBHOOK_STORE_TIMEOUT_SECONDS))
    return events_store([event])[0]


class BatchCounts(NamedTuple):
    accepted: int
    duplicates: int
    ignored: int
    rejected: int


def batch_receive(*, webhook_id: str, events: Sequence[NewEvent]) -> list[bool] | None:
    """Store a batch's events (CONTRACT §2b) in one transaction; for each, True if new, False if its id was
    seen before; None if the batch's own webhook-id was (nothing is written then).

    The batch row goes first: a second delivery of the batch waits for the first's commit on its unique key
    and then finds it. The events are one multi-row INSERT (events_store) and their processing is enqueued
    once, on commit.
    """
    with transaction.atomic():
        if not _batch_claim(webhook_id, len(events)):
            return None
        results = events_store(events)
        counts = batch_counts(events, results)
        WebhookBatch.objects.filter(webhook_id=webhook_id).update(**counts._asdict())
    return results


def batch_counts(events: Sequence[NewEvent], results: Sequence[bool]) -> BatchCounts:
    """Each event in exactly one count: rejected (malformed), else duplicate (seen), else ignored or accepted."""
    accepted = duplicates = ignored = rejected = 0
    for event, new in zip(events, results, strict=True):
        if event.status == Event.Status.REJECTED:
            rejected += 1
        elif not new:
            duplicates += 1
        elif event.status == Event.Status.IGNORED:
            ignored += 1
        else:
            accepted += 1
    return BatchCounts(accepted, duplicates, ignored, rejected)


def _batch_claim(webhook_id: str, size: int) -> bool:
    """Record the batch's webhook-id; False if it was recorded before. One INSERT … ON CONFLICT DO NOTHING."""
    quote = connection.ops.quote_name
    table = quote(WebhookBatch._meta.db_table)
    received_at = WebhookBatch._meta.get_field("received_at").get_db_prep_save(timezone.now(), connection)
    sql = (
        f"INSERT INTO {table} ({quote('webhook_id')}, {quote('received_at')}, {quote('events')}, "  # noqa: S608
        f"{quote('accepted')}, {quote('duplicates')}, {quote('ignored')}, {quote('rejected')}) "
        f"VALUES (%s, %s, %s, 0, 0, 0, 0) ON CONFLICT ({quote('webhook_id')}) DO NOTHING RETURNING {quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [holdable(webhook_id), received_at, size])
        return cursor.fetchone() is not None


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
        items = [WorkItem(event.type, event.workspace_key, event.pk) for event in events]
        if items:
            transaction.on_commit(lambda: enqueue_work(items=items), robust=True)
    return len(events)


def review_items_reprocess(*, item_ids: Sequence[int]) -> int:
    """Admin action "reprocess": retry the items' events and re-fold their workspaces; return how
    many workspaces were queued. Items stay open: a re-fold that no longer sees the problem closes
    its question by itself."""
    from workspaces.models import ReviewItem

    items = ReviewItem.objects.filter(pk__in=item_ids).select_related("workspace").prefetch_related("events")
    keys: set[str] = set()
    event_ids: list[int] = []
    for item in items:
        if item.workspace is not None:
            keys.add(item.workspace.workspace_id)
        for event in item.events.all():
            event_ids.append(event.pk)
            if event.workspace_key:
                keys.add(event.workspace_key)
    events_retry(event_ids=event_ids)
    if keys:
        transaction.on_commit(lambda: enqueue_workspaces(workspace_keys=sorted(keys), force=True), robust=True)
    return len(keys)
