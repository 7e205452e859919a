"""Sending dispatches: due rows go out through their channel's transport, after the planner's commit.

A sender claims a row with a conditional UPDATE (its due time moved forward by a lease) and sends only
when that UPDATE changed exactly one row: two workers never send the same row, and a worker that dies
mid-send leaves a row that is due again once the lease is over. A failure is retried with the one
backoff rule (failures/retry.py) and recorded in the error ledger; after DISPATCH_MAX_ATTEMPTS, or at
once for a permanent refusal, the row is `dead`. A channel that is off sends nothing, nor does a message
its transport refuses outright (a marketing email to an address that unsubscribed): the row is `skipped`
with the reason, never retried by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from failures.retry import backoff
from failures.services import error_record
from messaging.models import Dispatch
from messaging.registry import Message, TransportError, transport_for

#: A claim holds its row this long (DISPATCH_LEASE_SECONDS may override it): longer than any send takes.
LEASE_SECONDS = 300.0
DUE = (Dispatch.Status.PENDING, Dispatch.Status.FAILED)
SEND_TASK = "messaging.tasks.send_dispatches"
#: Retries: base·2^(n-1) seconds up to the cap, at most MAX_ATTEMPTS tries (settings may override each).
MAX_ATTEMPTS = 6
RETRY_BASE_SECONDS = 60.0
RETRY_MAX_SECONDS = 6 * 3600.0


def _setting(name: str, default: float) -> float:
    return getattr(settings, f"DISPATCH_{name}", default)


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0


def dispatches_create(rows: Sequence[Dispatch]) -> list[str]:
    """Insert the rows in the caller's transaction (one per key: a repeat adds nothing) and send the due
    ones after its commit; returns the keys. The every-minute sweep sends what a lost task leaves."""
    if not rows:
        return []
    Dispatch.objects.bulk_create(rows, ignore_conflicts=True)
    keys = [row.key for row in rows if row.status == Dispatch.Status.PENDING]
    if keys:
        _ring_on_commit(keys)
    return [row.key for row in rows]


class _Ring:
    """The one send task of a transaction: the keys of all its dispatches, enqueued on its commit."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self) -> None:
        from django_q.tasks import async_task

        async_task(SEND_TASK, sorted(set(self.keys)), q_options={"group": "messaging"})


def _ring_on_commit(keys: list[str]) -> None:
    """One send task per commit, whatever the number of firings in it: a queued task costs ~15 ms of CPU
    of its own, which one per firing made a processing run pay many times (bench/triggers_processing.py).
    The ring is the transaction's own on-commit callback, so a rollback drops it with its keys."""
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        for _, callback, *_ in connection.run_on_commit:
            if isinstance(callback, _Ring):
                callback.keys += keys
                return
    ring = _Ring()
    ring.keys += keys
    transaction.on_commit(ring, robust=True)  # outside a transaction: now


def dispatches_send_due(
    *, keys: Sequence[str] | None = None, now: datetime | None = None, limit: int = 200
) -> SendReport:
    """Send the due rows (of these keys, or any), oldest due first; each claimed alone, so this is safe
    beside other senders."""
    now = now or timezone.now()
    due = Dispatch.objects.filter(status__in=DUE, next_attempt_at__lte=now)
    if keys is not None:
        due = due.filter(key__in=list(keys))
    report = SendReport()
    for pk in due.order_by("next_attempt_at", "id").values_list("pk", flat=True)[:limit]:
        status = dispatch_send(pk, now=now)
        if status is not None:
            setattr(report, status, getattr(report, status) + 1)
    return report


def _claim(pk: int, now: datetime) -> bool:
    """Take the row for the lease; False when another sender has it or it is not due."""
    lease = timedelta(seconds=_setting("LEASE_SECONDS", LEASE_SECONDS))
    return (
        Dispatch.objects.filter(pk=pk, status__in=DUE, next_attempt_at__lte=now).update(
            next_attempt_at=now + lease, updated_at=now
        )
        == 1
    )


def dispatch_send(pk: int, *, now: datetime | None = None) -> str | None:
    """Claim and send one row; its new status ("sent", "failed", "dead", "skipped"), None if not claimed."""
    now = now or timezone.now()
    if not _claim(pk, now):
        return None
    row = Dispatch.objects.get(pk=pk)
    transport = transport_for(row.channel)
    message = Message(
        recipient=row.recipient, subject=row.subject, text=row.text, html=row.html, key=row.key, data=row.data
    )
    off = transport.off_reason() or ("" if row.recipient else "no address for this channel")
    off = off or transport.skip_reason(message)  # e.g. a marketing email to an address that unsubscribed
    if off:
        _finish(row, Dispatch.Status.SKIPPED, last_error=off)
        return Dispatch.Status.SKIPPED
    try:
        transport.send(message)
    except Exception as exc:  # a transport's refusal or its bug: recorded on the row, never raised
        return _failed(row, exc, now)
    _finish(row, Dispatch.Status.SENT, attempts=row.attempts + 1, sent_at=timezone.now(), last_error="")
    return Dispatch.Status.SENT


def _failed(row: Dispatch, exc: Exception, now: datetime) -> str:
    """Back the row off (or give up on it) and count the failure in the error ledger."""
    attempts = row.attempts + 1
    retryable = exc.retryable if isinstance(exc, TransportError) else True
    give_up = not retryable or attempts >= _setting("MAX_ATTEMPTS", MAX_ATTEMPTS)
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if give_up:
        _finish(row, Dispatch.Status.DEAD, attempts=attempts, last_error=error)
    else:
        base, cap = _setting("RETRY_BASE_SECONDS", RETRY_BASE_SECONDS), _setting("RETRY_MAX_SECONDS", RETRY_MAX_SECONDS)
        delay = backoff(attempts, base=base, cap=cap)
        _finish(row, Dispatch.Status.FAILED, attempts=attempts, last_error=error, next_attempt_at=now + delay)
    error_record(source="delivery", kind=f"{row.channel}: {type(exc).__name__}", message=str(exc), obj=row, now=now)
    return Dispatch.Status.DEAD if give_up else Dispatch.Status.FAILED


def _finish(row: Dispatch, status: str, *, next_attempt_at: datetime | None = None, **fields: object) -> None:
    Dispatch.objects.filter(pk=row.pk).update(status=status, next_attempt_at=next_attempt_at, **fields)


def dispatch_retry(*, dispatch: Dispatch, now: datetime | None = None) -> None:
    """An admin's retry of a dead or skipped row: due now, its attempts kept."""
    now = now or timezone.now()
    Dispatch.objects.filter(pk=dispatch.pk).update(status=Dispatch.Status.PENDING, next_attempt_at=now)
