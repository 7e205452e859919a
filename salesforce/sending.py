"""Recording what Salesforce answered: successes stamped on the engine's records and the outbox rows,
refusals retried with backoff or dead-lettered with a review item and an admin notice; pauses on the API
allocation."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from failures.notices import notice_raise
from failures.services import error_record
from salesforce.adapter import (
    RecordResult,
    SalesforceClient,
)
from salesforce.models import OutboxItem, SyncControl
from salesforce.outbox import pk_of
from salesforce.policy import Action, action_for, backoff
from salesforce.stamping import outbox_rows_synced, salesforce_ids_stamp, workspaces_stamp
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace
from workspaces.review import review_item_raise

logger = logging.getLogger(__name__)


LOCAL_MODELS = {"Account": Account, "Lead": Lead, "Contact": Contact}


@dataclass
class DrainReport:
    sent: int = 0
    synced: int = 0
    failed: int = 0
    recorded: int = 0
    released: int = 0  # held rows a pilot record depends on, released to go first (`_pilot_gate`)
    released_types: set[str] = field(default_factory=set)
    calls: int = 0
    paused: str = ""
    by_type: dict[str, int] = field(default_factory=dict)
    retry_at: float | None = None  # time.monotonic() when the soonest retry this report saw comes due
    jitter: float = field(default_factory=random.random)  # this step's place in each backoff range (policy)

    def retry_due_in(self, delay: timedelta) -> None:
        at = time.monotonic() + delay.total_seconds()
        self.retry_at = at if self.retry_at is None else min(self.retry_at, at)


def sync_control() -> SyncControl:
    control, _ = SyncControl.objects.get_or_create(pk=1)
    return control


def sync_paused(report: DrainReport) -> bool:
    control = sync_control()
    if control.paused_until and control.paused_until > timezone.now():
        report.paused = control.pause_reason or "paused"
        return True
    return False


def results_record(outcomes: list[tuple[OutboxItem, RecordResult]], report: DrainReport) -> None:
    """One call's results: its successes together, then each refusal (rare) on its own."""
    successes_record([(item, result.salesforce_id) for item, result in outcomes if result.success], report)
    for item, result in outcomes:
        if not result.success:
            ids = {"outbox_id": item.pk, "workspace_id": item.workspace_key, "error_code": result.error_code}
            logger.warning(
                "Salesforce refused %s %s: %s", item.object_type, item.external_id, result.error_code, extra=ids
            )
            failure_record(item, result.error_code, result.error_message, report)


def successes_record(successes: list[tuple[OutboxItem, str]], report: DrainReport) -> None:
    """Record one call's successes in a few statements (`_succeed`'s writes, each for all rows at once):
    the engine's records of each type, then the outbox rows.

    They run in autocommit and never wait for a row lock (salesforce/stamping.py): a row processing holds
    right now is left out and recorded alone afterwards by `_succeed`, which may wait for it but holds
    nothing else meanwhile. A record whose engine row was left out keeps its outbox row out too, so
    the outbox row is never marked synced before its record carries the Salesforce id.
    """
    if not successes:
        return
    now = timezone.now()
    latest = {item.pk: (item, salesforce_id) for item, salesforce_id in successes}  # one row twice: the last
    by_type: dict[str, list[tuple[OutboxItem, str]]] = {}
    for item, salesforce_id in latest.values():
        by_type.setdefault(item.object_type, []).append((item, salesforce_id))
    alone, together = [], []
    for object_type, pairs in by_type.items():
        skipped = _stamp_locals(object_type, {item.external_id: salesforce_id for item, salesforce_id in pairs}, now)
        for pair in pairs:
            (alone if pair[0].external_id in skipped else together).append(pair)
    skipped = outbox_rows_synced([(item.pk, item.version, sf_id) for item, sf_id in together], now=now)
    for item, salesforce_id in together:
        if item.pk in skipped:
            with transaction.atomic():
                _outbox_synced(item, salesforce_id, now)
    for item, salesforce_id in alone:
        _succeed(item, salesforce_id, report)
    report.synced += len(successes) - len(alone)


def _stamp_locals(object_type: str, stamps: dict[str, str], now) -> set[str]:
    """`_stamp_local` for many records of one type (external id -> Salesforce id); returns the external
    ids of those left alone because another transaction holds them."""
    if object_type == "Workspace__c":
        return workspaces_stamp(stamps, state=OutboxItem.State.SYNCED, now=now)
    if object_type not in LOCAL_MODELS:
        return set()
    keys = {pk_of(external_id): external_id for external_id in stamps}
    skipped = salesforce_ids_stamp(LOCAL_MODELS[object_type], {pk: stamps[key] for pk, key in keys.items()})
    return {keys[pk] for pk in skipped}


def _succeed(item: OutboxItem, salesforce_id: str, report: DrainReport) -> None:
    now = timezone.now()
    with transaction.atomic():
        # The engine's record first, then the outbox row: the order processing locks them in, so the
        # two never wait on each other in a cycle.
        _stamp_local(item.object_type, item.external_id, salesforce_id, now)
        _outbox_synced(item, salesforce_id, now)
    report.synced += 1


def _outbox_synced(item: OutboxItem, salesforce_id: str, now) -> None:
    updated = OutboxItem.objects.filter(pk=item.pk, version=item.version).update(
        state=OutboxItem.State.SYNCED,
        sent_version=item.version,
        salesforce_id=salesforce_id,
        synced_at=now,
        attempts=0,
        error_code="",
        error_message="",
        next_attempt_at=None,
        lease_owner="",
        lease_expires_at=None,
    )
    if not updated:  # changed while in flight: the newer version goes next
        OutboxItem.objects.filter(pk=item.pk).update(
            salesforce_id=salesforce_id, lease_owner="", lease_expires_at=None, sent_version=item.version
        )


def _stamp_local(object_type: str, external_id: str, salesforce_id: str, now) -> None:
    """Mirror the Salesforce id (and the workspace's sync state) on the engine's own records."""
    if object_type == "Workspace__c":
        Workspace.objects.filter(workspace_id=external_id).update(
            salesforce_id=salesforce_id, salesforce_state=OutboxItem.State.SYNCED, salesforce_synced_at=now
        )
    elif object_type in LOCAL_MODELS:
        pk = pk_of(external_id)
        LOCAL_MODELS[object_type].objects.filter(pk=pk).exclude(salesforce_id=salesforce_id).update(
            salesforce_id=salesforce_id
        )


def row_finish(item: OutboxItem, *, state: str) -> None:
    OutboxItem.objects.filter(pk=item.pk, version=item.version).update(
        state=state, sent_version=item.version, lease_owner="", lease_expires_at=None
    )
    if item.object_type == "Workspace__c":
        Workspace.objects.filter(workspace_id=item.external_id).update(salesforce_state=state)


def failure_record(item: OutboxItem, code: str, message: str, report: DrainReport) -> None:
    report.failed += 1
    action = action_for(code, previous_code=item.error_code)
    attempts = item.attempts + (0 if action is Action.PAUSE else 1)
    if action is Action.RETRY and attempts >= settings.SALESFORCE_MAX_ATTEMPTS:
        action = Action.DEAD_LETTER
    now = timezone.now()
    fields = {
        "error_code": code,
        "error_message": message[:2000],
        "attempts": attempts,
        "lease_owner": "",
        "lease_expires_at": None,
    }
    if action is Action.PAUSE:
        sync_pause(reason=f"{code}: {message}"[:255], minutes=settings.SALESFORCE_LIMIT_PAUSE_MINUTES)
        report.paused = code
        fields.update(state=OutboxItem.State.PENDING, next_attempt_at=None)
    elif action is Action.REREAD_ONCE:
        fields.update(state=OutboxItem.State.RETRY, next_attempt_at=now)
        report.retry_due_in(timedelta(0))
    elif action is Action.RETRY:
        delay = backoff(attempts, jitter=report.jitter)
        fields.update(state=OutboxItem.State.RETRY, next_attempt_at=now + delay)
        report.retry_due_in(delay)
    else:
        fields.update(state=OutboxItem.State.DEAD, next_attempt_at=None)
    OutboxItem.objects.filter(pk=item.pk).update(**fields)
    if item.object_type == "Workspace__c":
        Workspace.objects.filter(workspace_id=item.external_id).update(salesforce_state=fields["state"])
    if action is Action.DEAD_LETTER:
        _dead_letter(item, code, message)
    error_record(source="sync", kind=code or "UNKNOWN", message=message, obj=item, workspace_key=item.workspace_key)


def _dead_letter(item: OutboxItem, code: str, message: str) -> None:
    """A write that needs a person: the review queue, with Salesforce's own message, and one alert."""
    review_item_raise(
        kind=ReviewItem.Kind.SYNC_FAILED,
        dedupe_key=f"sync_failed:{item.object_type}:{item.external_id}:{item.version}",
        reason=f"Salesforce refused {item.object_type} {item.external_id}: {code}: {message}",
        workspace=Workspace.objects.filter(workspace_id=item.workspace_key).first(),
    )
    notice_raise(
        rule="sync_dead_letter",
        dedupe_key=f"sync_dead_letter:{item.object_type}:{item.external_id}:{item.version}",
        title=f"Salesforce refused {item.object_type} {item.external_id}",
        reason=f"{code}: {message}",
        workspace_key=item.workspace_key,
        context={"outbox_id": item.pk, "error_code": code, "payload": item.payload},
    )


def sync_pause(*, reason: str, minutes: int) -> None:
    """Pause all sending until a time; the drain resumes by itself after it. Alerts admins once."""
    until = timezone.now() + timedelta(minutes=minutes)
    control = sync_control()
    SyncControl.objects.filter(pk=control.pk).update(paused_until=until, pause_reason=reason)
    notice_raise(
        rule="sync_paused",
        dedupe_key=f"sync_paused:{until:%Y%m%d%H}",
        title="Salesforce sync paused",
        reason=f"{reason}. Sending resumes by itself at {until:%H:%M} UTC.",
        context={"paused_until": until.isoformat()},
    )


def track_usage(client: SalesforceClient) -> None:
    """Record API usage and pause below the allowed share of the daily allocation."""
    usage = client.api_usage
    if usage is None:
        return
    used, maximum = usage
    SyncControl.objects.filter(pk=1).update(api_used=used, api_max=maximum, api_checked_at=timezone.now())
    if maximum and used / maximum >= settings.SALESFORCE_MAX_API_SHARE:
        sync_pause(
            reason=f"API usage {used}/{maximum} reached {settings.SALESFORCE_MAX_API_SHARE:.0%} of the daily limit",
            minutes=settings.SALESFORCE_LIMIT_PAUSE_MINUTES,
        )
