"""Draining the outbox into Salesforce, in dependency order, in batches of at most 200 records.

Order: Account, Lead, lead conversions, Contact, Workspace__c, Task, so a lookup always points at a record
that exists. Upserts are by Lifecycle_Engine_ID__c, so a retried write never duplicates; a lead
conversion (not idempotent in Salesforce) re-reads the lead before any retry, so it happens once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from salesforce.activities import TASK, tasks_send
from salesforce.adapter import (
    SalesforceCallError,
    SalesforceClient,
    shared_client,
)
from salesforce.claiming import claim_batch, rows_let_go
from salesforce.conversion import leads_convert
from salesforce.deletion import DELETION, deletions_send
from salesforce.models import OutboxItem, SyncControl
from salesforce.outbox import EXTERNAL_ID
from salesforce.pilot import held_dependencies, pilot_in_force, rows_in_pilot, rows_release
from salesforce.sending import DrainReport, failure_record, results_record, row_finish, sync_paused, track_usage
from workspaces.actors import acting_as_system

logger = logging.getLogger(__name__)

#: Deletions (privacy erasure, salesforce/deletion.py) go last: after whatever they depend on.
#: A rep's Task (salesforce/activities.py) goes after the records it hangs on.
ORDER = ("Account", "Lead", "LeadConversion", "Contact", "Workspace__c", TASK, DELETION)


def outbox_drain(
    *, client_factory: Callable[[], SalesforceClient] = shared_client, max_rounds: int = 100
) -> DrainReport:
    """Send what is due, type by type, until nothing is due or the sync pauses (one pass after another
    while a pass unblocks more: a lead conversion lets its contact and workspace go)."""
    report = DrainReport()
    mode = settings.SALESFORCE_SYNC
    if mode == "off":
        return report
    if sync_paused(report):
        return report
    client = client_factory() if mode == "live" else None
    worker = drainer_name()
    with acting_as_system():
        for _ in range(3):
            before = report.sent + report.recorded + report.released
            for object_type in ORDER:
                for _ in range(max_rounds):
                    if not outbox_drain_step(object_type, client, worker, report):
                        break
                    if report.paused:
                        return report
            if report.sent + report.recorded + report.released == before:
                break
    if client is not None:
        track_usage(client)
    return report


def drainer_name() -> str:
    """host:pid:random, short enough for a lane suffix within lease_owner's 64 characters."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def outbox_drain_step(object_type: str, client: SalesforceClient | None, worker: str, report: DrainReport) -> int:
    """Claim one batch of this type that may go now and send it; return how many rows it claimed."""
    report.jitter = random.random()  # one for the batch: what failed together is retried together
    items = claimed = claim_batch(object_type, worker)
    if not claimed:
        return 0
    synced = report.synced
    try:
        if client is not None:
            items = _pilot_gate(items, report)
        if items and client is not None:
            items = _without_held(items, client, worker, report)
        if items:
            _handle(object_type, items, client, report)
    except Exception:  # a database error, say: let go of what this step still holds, then fail loudly
        OutboxItem.objects.filter(pk__in=[item.pk for item in claimed], lease_owner=worker).update(
            lease_owner="", lease_expires_at=None
        )
        raise
    if report.synced > synced:  # once a batch: processing rings the drain through the same row
        SyncControl.objects.filter(pk=1).update(last_success_at=timezone.now())
    return len(claimed)


def _pilot_gate(items: list[OutboxItem], report: DrainReport) -> list[OutboxItem]:
    """Of rows claimed to be sent, hold those outside the pilot (salesforce/pilot.py) and return those to send.

    A pilot record that depends on a held record (a shared account a colleague outside the pilot made, the
    lead of a conversion) takes it with it: the held record is released and the row let go until it is in
    Salesforce. The claim lets rows go past held dependencies because a row outside the pilot must be
    claimed to be held itself.
    """
    live = rows_in_pilot(items, pilot=pilot_in_force())
    for item in items:
        if item.pk not in live:
            row_finish(item, state=OutboxItem.State.HELD)
            report.recorded += 1
    going = [item for item in items if item.pk in live]
    waiting = held_dependencies(going)
    if waiting:
        released = rows_release([row for rows in waiting.values() for row in rows])
        report.released += len(released)
        report.released_types.update(row.object_type for row in released)
        rows_let_go([item for item in going if item.pk in waiting])
    return [item for item in going if item.pk not in waiting]


def _without_held(
    items: list[OutboxItem], client: SalesforceClient, worker: str, report: DrainReport
) -> list[OutboxItem]:
    """Let go, until it has given up at the latest, of each row whose earlier write may still land (the
    slower copy of a hedged call): a newer version sent meanwhile could be overwritten by that older one."""
    held = client.held_until(items[0].object_type, [item.external_id for item in items])
    by_until: dict[datetime, list[int]] = {}
    for item in items:
        if item.external_id in held:
            by_until.setdefault(held[item.external_id], []).append(item.pk)
    now = timezone.now()
    for until, pks in by_until.items():  # one UPDATE per deadline
        OutboxItem.objects.filter(pk__in=pks, lease_owner=worker).update(lease_owner="", lease_expires_at=until)
        report.retry_due_in(until - now)
    return [item for item in items if item.external_id not in held]


def _handle(object_type: str, items: list[OutboxItem], client: SalesforceClient | None, report: DrainReport) -> None:
    """Send the rows (the pilot's gate has passed them), or record them as a dry run's."""
    if client is None:
        for item in items:
            row_finish(item, state=OutboxItem.State.DRY_RUN)
        report.recorded += len(items)
        return
    report.sent += len(items)
    report.by_type[object_type] = report.by_type.get(object_type, 0) + len(items)
    try:
        if object_type == "LeadConversion":
            leads_convert(items, client, report)
        elif object_type == DELETION:
            report.calls += 1
            answers = deletions_send(client, items)
            results_record(list(zip(items, [answers[item.pk] for item in items], strict=True)), report)
        elif object_type == TASK:
            report.calls += 2  # the owners' query, then the upsert
            answers = tasks_send(client, items)
            results_record(list(zip(items, [answers[item.pk] for item in items], strict=True)), report)
        else:
            report.calls += 1
            results = client.upsert_collection(object_type, EXTERNAL_ID, [item.payload for item in items])
            results_record(list(zip(items, results, strict=True)), report)
    except SalesforceCallError as exc:
        ids = {"outbox_ids": [item.pk for item in items], "workspace_ids": sorted({i.workspace_key for i in items})}
        logger.warning("Salesforce %s batch of %d failed: %s", object_type, len(items), exc, extra=ids)
        for item in items:
            failure_record(item, exc.code, exc.message, report)


def outbox_retry(*, item_ids: list[int]) -> int:
    """Send these again now: dead letters, retries, or synced records that drifted in Salesforce."""
    return OutboxItem.objects.filter(pk__in=item_ids).update(
        state=OutboxItem.State.PENDING,
        next_attempt_at=None,
        attempts=0,
        lease_owner="",
        lease_expires_at=None,
        version=F("version") + 1,
    )


def outbox_dead_letter(*, item_ids: list[int]) -> int:
    """Admin action: stop trying these."""
    return (
        OutboxItem.objects.filter(pk__in=item_ids)
        .exclude(state=OutboxItem.State.SYNCED)
        .update(state=OutboxItem.State.DEAD, next_attempt_at=None, lease_owner="", lease_expires_at=None)
    )
