"""Claiming a workspace's events for one processing run, and the per-workspace lock it runs under."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from events.models import Event
from workspaces.lifecycle import LIFECYCLE_TYPES
from workspaces.models import WorkspaceLock

logger = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def due_filter(now: datetime) -> Q:
    """Events that may be (re)claimed now: new, due for retry, or abandoned by a dead worker."""
    return (
        Q(status=Event.Status.NEW)
        | Q(status=Event.Status.ERROR, next_attempt_at__lte=now)
        | Q(status=Event.Status.PROCESSING, lease_expires_at__lt=now)
    )


def events_claim(*, workspace_key: str, worker: str) -> list[int]:
    """Mark the workspace's due lifecycle events `processing` under a lease; return their ids.

    Committed on its own, before the work: if the worker dies, the lease is what tells the sweeper.
    """
    return events_claim_many(workspace_keys=[workspace_key], worker=worker).get(workspace_key, [])


def events_claim_many(*, workspace_keys: Sequence[str], worker: str) -> dict[str, list[int]]:
    """events_claim for several workspaces in two statements: {workspace key: claimed event ids}."""
    now = timezone.now()
    lifecycle = Event.objects.filter(workspace_key__in=sorted(set(workspace_keys)), type__in=LIFECYCLE_TYPES)
    lifecycle.filter(due_filter(now)).update(
        status=Event.Status.PROCESSING,
        lease_owner=worker,
        lease_expires_at=now + timedelta(seconds=settings.EVENT_LEASE_SECONDS),
    )
    claimed: dict[str, list[int]] = {}
    mine = lifecycle.filter(status=Event.Status.PROCESSING, lease_owner=worker).order_by("pk")
    for pk, key in mine.values_list("pk", "workspace_key"):
        claimed.setdefault(key, []).append(pk)
    return claimed


def workspaces_waiting(*, besides: Sequence[str], limit: int) -> list[str]:
    """Up to `limit` other workspaces with new lifecycle events, oldest first: their tasks are still in
    the queue (or lost), so a task running now may as well take them along. Their own task then finds
    nothing due. One query on the (status, received_at) index."""
    if limit <= 0:
        return []
    skip = set(besides)
    waiting: list[str] = []
    rows = Event.objects.filter(status=Event.Status.NEW, type__in=LIFECYCLE_TYPES).order_by("received_at")
    for key in rows.values_list("workspace_key", flat=True)[: 4 * limit]:
        if key not in skip:
            skip.add(key)
            waiting.append(key)
            if len(waiting) == limit:
                break
    return waiting


def workspace_lock(workspace_key: str) -> None:
    """Take the workspace's lock row, creating it on first use: one INSERT … ON CONFLICT DO UPDATE, which
    waits for (and then holds) the row lock like SELECT … FOR UPDATE, without a savepoint."""
    workspaces_lock([workspace_key])


def workspaces_lock(workspace_keys: Sequence[str]) -> None:
    """workspace_lock for several workspaces in one statement, in key order: two tasks sharing workspaces take
    their locks in the same order, so they wait for each other instead of deadlocking."""
    now = timezone.now()
    WorkspaceLock.objects.bulk_create(
        [WorkspaceLock(workspace_key=key, processed_at=now) for key in sorted(set(workspace_keys))],
        update_conflicts=True,
        unique_fields=["workspace_key"],
        update_fields=["processed_at"],
    )
