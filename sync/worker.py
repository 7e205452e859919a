"""Draining the outbox into Salesforce, in dependency order, in batches of at most 200 records.

Order: Account, Lead, lead conversions, Contact, Workspace__c, so a lookup always points at a record
that exists. Upserts are by Lifecycle_Engine_ID__c, so a retried write never duplicates; a lead
conversion (not idempotent in Salesforce) re-reads the lead before any retry, so it happens once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from alerts.services import alert_raise
from linking.models import ReviewItem
from linking.services import review_item_raise
from sync.models import OutboxItem, SyncControl
from sync.outbox import EXTERNAL_ID
from sync.policy import Action, action_for, backoff
from sync.salesforce import Conversion, RecordResult, SalesforceCallError, SalesforceClient, shared_client
from workspaces.actors import acting_as_system
from workspaces.models import Account, Contact, Lead, Workspace

logger = logging.getLogger(__name__)

ORDER = ("Account", "Lead", "LeadConversion", "Contact", "Workspace__c")
LOCAL_MODELS = {"Account": Account, "Lead": Lead, "Contact": Contact}
LEASE = timedelta(minutes=5)


def _done_states() -> tuple[str, ...]:
    """States of a dependency that let its dependents go: only really synced ones when live."""
    if settings.SALESFORCE_SYNC == "live":
        return (OutboxItem.State.SYNCED, OutboxItem.State.HELD)
    return (OutboxItem.State.SYNCED, OutboxItem.State.DRY_RUN, OutboxItem.State.HELD)


@dataclass
class DrainReport:
    sent: int = 0
    synced: int = 0
    failed: int = 0
    recorded: int = 0
    calls: int = 0
    paused: str = ""
    by_type: dict[str, int] = field(default_factory=dict)


def sync_control() -> SyncControl:
    control, _ = SyncControl.objects.get_or_create(pk=1)
    return control


def in_pilot(workspace_key: str) -> bool:
    """Live for this workspace? Reps' accounts when SALESFORCE_PILOT_REPS is set, else a stable share."""
    if settings.SALESFORCE_PILOT_REPS:
        owner = (
            Workspace.objects.filter(workspace_id=workspace_key)
            .values_list("account__owner__username", flat=True)
            .first()
        )
        return owner in settings.SALESFORCE_PILOT_REPS
    percent = settings.SALESFORCE_PILOT_PERCENT
    if percent >= 100:
        return True
    bucket = int(hashlib.sha256(workspace_key.encode()).hexdigest()[:8], 16) % 100
    return bucket < percent


def outbox_drain(
    *, client_factory: Callable[[], SalesforceClient] = shared_client, max_rounds: int = 100
) -> DrainReport:
    """Send what is due, type by type, until nothing is due or the sync pauses."""
    report = DrainReport()
    mode = settings.SALESFORCE_SYNC
    if mode == "off":
        return report
    control = sync_control()
    if control.paused_until and control.paused_until > timezone.now():
        report.paused = control.pause_reason
        return report
    client = client_factory() if mode == "live" else None
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    with acting_as_system():
        # A second pass sends what the first unblocked (an account created by a lead conversion).
        for _ in range(3):
            before = report.sent + report.recorded
            for object_type in ORDER:
                for _ in range(max_rounds):
                    items = _claim(object_type, worker)
                    if not items:
                        break
                    _handle(object_type, items, client, report)
                    if report.paused:
                        return report
            if report.sent + report.recorded == before:
                break
    if client is not None:
        _track_usage(client)
    return report


def _claim(object_type: str, worker: str) -> list[OutboxItem]:
    now = timezone.now()
    states = [OutboxItem.State.PENDING, OutboxItem.State.RETRY]
    if settings.SALESFORCE_SYNC == "live":
        states.append(OutboxItem.State.DRY_RUN)  # recorded during a dry run: send them now
    due = (
        OutboxItem.objects.filter(object_type=object_type, state__in=states)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
        .filter(Q(depends_on__isnull=True) | Q(depends_on__state__in=_done_states()))
        .order_by("updated_at")
    )
    ids = list(due.values_list("pk", flat=True)[: settings.SALESFORCE_BATCH_SIZE])
    OutboxItem.objects.filter(pk__in=ids).filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)).update(
        lease_owner=worker, lease_expires_at=now + LEASE
    )
    return list(OutboxItem.objects.filter(pk__in=ids, lease_owner=worker).select_related("depends_on"))


def _handle(object_type: str, items: list[OutboxItem], client: SalesforceClient | None, report: DrainReport) -> None:
    live, recorded = [], []
    for item in items:
        (live if client is not None and in_pilot(item.workspace_key) else recorded).append(item)
    for item in recorded:
        state = OutboxItem.State.DRY_RUN if client is None else OutboxItem.State.HELD
        _finish(item, state=state)
        report.recorded += 1
    if not live:
        return
    report.sent += len(live)
    report.by_type[object_type] = report.by_type.get(object_type, 0) + len(live)
    try:
        if object_type == "LeadConversion":
            _convert(live, client, report)
        else:
            report.calls += 1
            results = client.upsert_collection(object_type, EXTERNAL_ID, [item.payload for item in live])
            for item, result in zip(live, results, strict=True):
                _record(item, result, report)
    except SalesforceCallError as exc:
        logger.warning("Salesforce %s batch of %d failed: %s", object_type, len(live), exc)
        for item in live:
            _fail(item, exc.code, exc.message, report)


def _record(item: OutboxItem, result: RecordResult, report: DrainReport) -> None:
    if result.success:
        _succeed(item, result.salesforce_id, report)
    else:
        _fail(item, result.error_code, result.error_message, report)


def _succeed(item: OutboxItem, salesforce_id: str, report: DrainReport) -> None:
    now = timezone.now()
    with transaction.atomic():
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
        _stamp_local(item.object_type, item.external_id, salesforce_id, now)
    SyncControl.objects.filter(pk=1).update(last_success_at=now)
    report.synced += 1


def _stamp_local(object_type: str, external_id: str, salesforce_id: str, now) -> None:
    """Mirror the Salesforce id (and the workspace's sync state) on the engine's own records."""
    if object_type == "Workspace__c":
        Workspace.objects.filter(workspace_id=external_id).update(
            salesforce_id=salesforce_id, salesforce_state=OutboxItem.State.SYNCED, salesforce_synced_at=now
        )
    elif object_type in LOCAL_MODELS:
        pk = external_id.rpartition("_")[2]
        LOCAL_MODELS[object_type].objects.filter(pk=pk).exclude(salesforce_id=salesforce_id).update(
            salesforce_id=salesforce_id
        )


def _finish(item: OutboxItem, *, state: str) -> None:
    OutboxItem.objects.filter(pk=item.pk, version=item.version).update(
        state=state, sent_version=item.version, lease_owner="", lease_expires_at=None
    )
    if item.object_type == "Workspace__c":
        Workspace.objects.filter(workspace_id=item.external_id).update(salesforce_state=state)


def _fail(item: OutboxItem, code: str, message: str, report: DrainReport) -> None:
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
    elif action is Action.RETRY:
        fields.update(state=OutboxItem.State.RETRY, next_attempt_at=now + backoff(attempts))
    else:
        fields.update(state=OutboxItem.State.DEAD, next_attempt_at=None)
    OutboxItem.objects.filter(pk=item.pk).update(**fields)
    if item.object_type == "Workspace__c":
        Workspace.objects.filter(workspace_id=item.external_id).update(salesforce_state=fields["state"])
    if action is Action.DEAD_LETTER:
        _dead_letter(item, code, message)


def _dead_letter(item: OutboxItem, code: str, message: str) -> None:
    """A write that needs a person: the review queue, with Salesforce's own message, and one alert."""
    review_item_raise(
        kind=ReviewItem.Kind.SYNC_FAILED,
        dedupe_key=f"sync_failed:{item.object_type}:{item.external_id}:{item.version}",
        reason=f"Salesforce refused {item.object_type} {item.external_id}: {code}: {message}",
        workspace=Workspace.objects.filter(workspace_id=item.workspace_key).first(),
    )
    alert_raise(
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
    alert_raise(
        rule="sync_paused",
        dedupe_key=f"sync_paused:{until:%Y%m%d%H}",
        title="Salesforce sync paused",
        reason=f"{reason}. Sending resumes by itself at {until:%H:%M} UTC.",
        context={"paused_until": until.isoformat()},
    )


def _track_usage(client: SalesforceClient) -> None:
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


# --- lead conversion --------------------------------------------------------------------------


def _convert(items: list[OutboxItem], client: SalesforceClient, report: DrainReport) -> None:
    """convertLead for each item, exactly once: a lead Salesforce already converted is not converted again."""
    items = _without_waiting(items)
    if not items:
        return
    leads = {item.pk: item.depends_on.salesforce_id for item in items}
    already = _converted_in_salesforce(client, [leads[i.pk] for i in items if i.attempts > 0], report)
    to_convert = [item for item in items if leads[item.pk] not in already]
    results: dict[int, Conversion] = {item.pk: already[leads[item.pk]] for item in items if leads[item.pk] in already}
    if to_convert:
        report.calls += 1
        accounts = [_existing_account_id(item) for item in to_convert]
        converted = client.convert_leads([(leads[i.pk], a) for i, a in zip(to_convert, accounts, strict=True)])
        for item, conversion in zip(to_convert, converted, strict=True):
            if not conversion.success and conversion.error_code == "CANNOT_UPDATE_CONVERTED_LEAD":
                conversion = _converted_in_salesforce(client, [leads[item.pk]], report).get(leads[item.pk], conversion)
            results[item.pk] = conversion
    stamped = _stamp_converted(client, items, results, report)
    for item in items:
        conversion = results[item.pk]
        if conversion.success and stamped:
            _succeed(item, conversion.contact_id, report)
        elif not conversion.success:
            _fail(item, conversion.error_code, conversion.error_message, report)


def _without_waiting(items: list[OutboxItem]) -> list[OutboxItem]:
    """Hold back conversions onto an account another conversion is about to create.

    Two colleagues paying at once share one new account: only the conversion that account row
    depends on may let convertLead create it; the others go once it has its Salesforce id, or there
    would be two accounts in Salesforce for one in the engine.
    """
    ready = []
    for item in items:
        row = OutboxItem.objects.filter(object_type="Account", external_id=item.payload["account"]).first()
        if row is not None and row.depends_on_id not in (None, item.pk) and not row.salesforce_id:
            OutboxItem.objects.filter(pk=item.pk).update(lease_owner="", lease_expires_at=None)
        else:
            ready.append(item)
    return ready


def _existing_account_id(item: OutboxItem) -> str | None:
    """Convert onto the account when Salesforce already has it; otherwise convertLead creates it."""
    row = OutboxItem.objects.filter(object_type="Account", external_id=item.payload["account"]).first()
    if row is None or row.depends_on_id == item.pk:
        return None
    return row.salesforce_id or None


def _converted_in_salesforce(
    client: SalesforceClient, lead_ids: list[str], report: DrainReport
) -> dict[str, Conversion]:
    """Re-read leads whose conversion may already have happened (a retry after a lost response)."""
    if not lead_ids:
        return {}
    report.calls += 1
    quoted = ", ".join(f"'{lead_id}'" for lead_id in lead_ids if lead_id.isalnum())  # Salesforce ids only
    rows = client.query(
        f"SELECT Id, IsConverted, ConvertedAccountId, ConvertedContactId FROM Lead WHERE Id IN ({quoted})"  # noqa: S608
    )
    return {
        row["Id"]: Conversion(True, row["Id"], row["ConvertedAccountId"], row["ConvertedContactId"])
        for row in rows
        if row.get("IsConverted")
    }


def _stamp_converted(
    client: SalesforceClient, items: list[OutboxItem], results: dict[int, Conversion], report: DrainReport
) -> bool:
    """Write the engine's state, external id included, onto the account and contact convertLead made.

    One collection update per object type stamps them and sets their fields, so their outbox rows
    are synced in the same step and no second upsert is needed.
    """
    stamps: dict[str, list[tuple[OutboxItem, str]]] = {"Account": [], "Contact": []}
    for item in items:
        conversion = results[item.pk]
        if not conversion.success:
            continue
        targets = [("Contact", item.payload["contact"], conversion.contact_id)]
        if _existing_account_id(item) is None:
            targets.append(("Account", item.payload["account"], conversion.account_id))
        for object_type, external_id, salesforce_id in targets:
            row = OutboxItem.objects.filter(object_type=object_type, external_id=external_id).first()
            if row is not None:
                stamps[object_type].append((row, salesforce_id))
    pairs = [(object_type, row, sf_id) for object_type, rows in stamps.items() for row, sf_id in rows]
    if not pairs:
        return True
    try:
        report.calls += 1
        results = client.update_collection([(t, {**row.payload, "Id": sf_id}) for t, row, sf_id in pairs])
    except SalesforceCallError as exc:
        for item in items:
            _fail(item, exc.code, exc.message, report)
        return False
    for (_, row, sf_id), result in zip(pairs, results, strict=True):
        if result.success:
            _succeed(row, result.salesforce_id or sf_id, report)
        else:
            _fail(row, result.error_code, result.error_message, report)
    return True


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
