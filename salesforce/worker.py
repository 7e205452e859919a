"""Draining the outbox into Salesforce, in dependency order, in batches of at most 200 records.

Order: Account, Lead, lead conversions, Contact, Workspace__c, so a lookup always points at a record
that exists. Upserts are by Lifecycle_Engine_ID__c, so a retried write never duplicates; a lead
conversion (not idempotent in Salesforce) re-reads the lead before any retry, so it happens once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.utils import timezone

from failures.notices import notice_raise
from failures.services import error_record
from salesforce.adapter import (
    ANSWER_LOST,
    CollectionWrite,
    Conversion,
    RecordResult,
    SalesforceCallError,
    SalesforceClient,
    shared_client,
)
from salesforce.deletion import DELETION, deletions_send
from salesforce.models import OutboxItem, SyncControl
from salesforce.outbox import EXTERNAL_ID, LOOKUPS, RELATIONSHIPS, keyed, lookup_keys, pk_of
from salesforce.pilot import held_dependencies, pilot_in_force, rows_in_pilot, rows_release, workspaces_in_pilot
from salesforce.policy import Action, action_for, backoff
from salesforce.stamping import outbox_rows_synced, salesforce_ids_stamp, workspaces_stamp
from workspaces.actors import acting_as_system
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace
from workspaces.review import review_item_raise

logger = logging.getLogger(__name__)

#: Deletions (privacy erasure, salesforce/deletion.py) go last: after whatever they depend on.
ORDER = ("Account", "Lead", "LeadConversion", "Contact", "Workspace__c", DELETION)
LOCAL_MODELS = {"Account": Account, "Lead": Lead, "Contact": Contact}


def row_lease() -> timedelta:
    """How long claimed rows stay claimed: one call's worst case (its timeout) several times over, at
    least a minute. A drainer killed mid-call holds its rows no longer than this (the chaos test)."""
    return timedelta(seconds=max(60.0, 4 * settings.SALESFORCE_TIMEOUT_SECONDS))


def _done_states() -> tuple[str, ...]:
    """States of a dependency that let its dependents be claimed: only really synced ones when live, and
    held ones (a dependent outside the pilot is claimed to be held too; one in it releases the held
    dependency and waits for it: `_pilot_gate`)."""
    if settings.SALESFORCE_SYNC == "live":
        return (OutboxItem.State.SYNCED, OutboxItem.State.HELD)
    return (OutboxItem.State.SYNCED, OutboxItem.State.DRY_RUN, OutboxItem.State.HELD)


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


def sync_paused(report: DrainReport) -> bool:
    control = sync_control()
    if control.paused_until and control.paused_until > timezone.now():
        report.paused = control.pause_reason or "paused"
        return True
    return False


def outbox_drain_step(object_type: str, client: SalesforceClient | None, worker: str, report: DrainReport) -> int:
    """Claim one batch of this type that may go now and send it; return how many rows it claimed."""
    report.jitter = random.random()  # one for the batch: what failed together is retried together
    items = claimed = _claim(object_type, worker)
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
            _finish(item, state=OutboxItem.State.HELD)
            report.recorded += 1
    going = [item for item in items if item.pk in live]
    waiting = held_dependencies(going)
    if waiting:
        released = rows_release([row for rows in waiting.values() for row in rows])
        report.released += len(released)
        report.released_types.update(row.object_type for row in released)
        _let_go([item for item in going if item.pk in waiting])
    return [item for item in going if item.pk not in waiting]


def _open_states() -> list[str]:
    states = [OutboxItem.State.PENDING, OutboxItem.State.RETRY]
    if settings.SALESFORCE_SYNC == "live":
        states.append(OutboxItem.State.DRY_RUN)  # recorded during a dry run: send them now
    return states


def _due(object_type: str | None, now) -> QuerySet[OutboxItem]:
    rows = OutboxItem.objects.filter(object_type=object_type) if object_type else OutboxItem.objects.all()
    return (
        rows.filter(state__in=_open_states())
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    )


def due_types() -> set[str]:
    """The types with rows due now (one indexed query): the drainer wakes only their stages."""
    return set(_due(None, timezone.now()).values_list("object_type", flat=True).distinct())


def _claim(object_type: str, worker: str) -> list[OutboxItem]:
    """Lease up to a batch of due rows whose dependencies are in Salesforce (oldest change first).

    The lease is taken by one UPDATE that re-checks state, due time and lease on each row, so a row
    another drainer finished meanwhile is never sent again (`_lease`).
    """
    now = timezone.now()
    batch = settings.SALESFORCE_BATCH_SIZE
    live = settings.SALESFORCE_SYNC == "live"
    checked: dict[int, int | None]  # id -> the version whose lookups were checked (None: not by version)
    if live and object_type in ("LeadConversion", DELETION):
        checked = dict.fromkeys(_ready_ids(object_type, _candidates(object_type, now), batch))
    else:
        checked = dict(_ready_ids_plain(object_type, now, batch, live))
    return _lease(object_type, checked, worker, now) if checked else []


def _lease(object_type: str, checked: dict[int, int | None], worker: str, now) -> list[OutboxItem]:
    """Lease those of these rows (id -> the version whose lookups were checked; None: nothing checked) that
    are still due and free right now, in one UPDATE; return the rows leased.

    Only rows it can lock at once (FOR UPDATE SKIP LOCKED, PostgreSQL): processing holds outbox rows in
    long transactions, and a statement holding one row while it waits for another could close a cycle
    with it (see salesforce/stamping.py). A row skipped is being changed; the next look takes its new version.
    So does a row processing changed after its lookups were checked: it may point at a record not yet in
    Salesforce (a new contact, say: INVALID_FIELD), so it is let go.
    """
    with transaction.atomic():
        free = _due(object_type, now).filter(pk__in=list(checked)).select_for_update(skip_locked=True).values("pk")
        OutboxItem.objects.filter(pk__in=free).update(lease_owner=worker, lease_expires_at=now + row_lease())
    items = list(OutboxItem.objects.filter(pk__in=list(checked), lease_owner=worker).select_related("depends_on"))
    changed = [item for item in items if checked[item.pk] not in (None, item.version)]
    _let_go(changed)
    return [item for item in items if item not in changed]


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


#: Compiled statements of the plain claim query, by everything that shapes it: (database vendor, type,
#: open states, done states, batch, live) -> (SQL, parameters, positions of "now" in the parameters).
_PLAIN_CLAIMS: dict[tuple, tuple[str, list, list[int]]] = {}
_PROBES = (datetime(2001, 1, 1, 1, 1, 1, 111111, tzinfo=UTC), datetime(2002, 2, 2, 2, 2, 2, 222222, tzinfo=UTC))


def _candidates(object_type: str, now) -> QuerySet[OutboxItem]:
    """Due rows of this type whose outbox dependency (a conversion, say) is done, oldest change first."""
    return (
        _due(object_type, now)
        .filter(Q(depends_on__isnull=True) | Q(depends_on__state__in=_done_states()))
        .order_by("updated_at", "pk")
    )


def _plain_candidates(object_type: str, now, batch: int, live: bool) -> QuerySet:
    candidates = _candidates(object_type, now)
    if live and object_type in LOOKUPS:
        candidates = _lookups_in_salesforce(object_type, candidates)
    return candidates.values_list("pk", "version")[:batch]


def _ready_ids_plain(object_type: str, now, batch: int, live: bool) -> list[tuple[int, int]]:
    """The (id, version) of up to `batch` rows of this type that may go now (_claim's query for every
    type but conversions and deletions).

    A stage asks this many times a second, and most of its cost was Django building the same statement
    (its lookups' NOT EXISTS probes and JSON paths) again: it is compiled once per shape, with two probe
    times to find where "now" goes in its parameters, and then only executed.
    """
    key = (connection.vendor, object_type, tuple(_open_states()), _done_states(), batch, live)
    compiled = _PLAIN_CLAIMS.get(key)
    if compiled is None:
        first, second = (
            _plain_candidates(object_type, probe, batch, live).query.sql_with_params() for probe in _PROBES
        )
        if first[0] != second[0] or len(first[1]) != len(second[1]):  # never expected: build it every time
            return list(_plain_candidates(object_type, now, batch, live))
        slots = [i for i, (a, b) in enumerate(zip(first[1], second[1], strict=True)) if a != b]
        compiled = _PLAIN_CLAIMS[key] = (first[0], list(first[1]), slots)
    sql, params, slots = compiled
    at = connection.ops.adapt_datetimefield_value(now)
    bound = [at if i in slots else value for i, value in enumerate(params)]
    with connection.cursor() as cursor:
        cursor.execute(sql, bound)
        return [(row[0], row[1]) for row in cursor.fetchall()]


def _lookups_in_salesforce(object_type: str, candidates: QuerySet[OutboxItem]) -> QuerySet[OutboxItem]:
    """Only candidates none of whose lookups points at a record the outbox has yet to send a first time.

    In SQL (one NOT EXISTS probe of the unique index per lookup), so a claim costs the same however many
    rows wait behind a lead or a conversion.
    """
    for relationship in LOOKUPS[object_type]:
        alias = f"ref_{relationship.lower()}"
        unsent = OutboxItem.objects.filter(
            object_type=RELATIONSHIPS[relationship],
            external_id=OuterRef(alias),
            salesforce_id="",
            state__in=_open_states(),
        )
        candidates = candidates.alias(
            **{alias: KeyTextTransform(EXTERNAL_ID, KeyTransform(relationship, "payload"))}
        ).filter(~Exists(unsent))
    return candidates


def _ready_ids(object_type: str, candidates: QuerySet[OutboxItem], batch: int) -> list[int]:
    """Conversions whose account exists or is theirs to make; deletions whose target is not being sent."""
    ready: list[int] = []
    window = 2 * batch
    for offset in range(0, 10 * window, window):
        rows = list(candidates.values_list("pk", "payload")[offset : offset + window])
        if object_type == "LeadConversion":
            roles = _account_roles([(pk, payload["account"]) for pk, payload in rows])
            ready += [pk for pk, _ in rows if roles[pk] != WAIT]
        else:
            busy = _being_sent({(payload["object_type"], payload["external_id"]) for _, payload in rows})
            ready += [pk for pk, payload in rows if (payload["object_type"], payload["external_id"]) not in busy]
        if len(ready) >= batch or len(rows) < window:
            break
    return ready[:batch]


def _being_sent(targets: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these (type, external id), the ones still to be sent or in flight: a deletion waits for them,
    or the upsert could land after it (the drainer's stages run side by side)."""
    if not targets:
        return set()
    now = timezone.now()
    return set(
        OutboxItem.objects.filter(keyed(targets))
        .filter(Q(state__in=_open_states()) | Q(lease_expires_at__gt=now))
        .values_list("object_type", "external_id")
    )


ONTO, MAKE, WAIT = "onto", "make", "wait"


def _account_roles(conversions: list[tuple[int, str]]) -> dict[int, str]:
    """For each (conversion row id, account key): convert ONTO the account Salesforce has, MAKE it (let
    convertLead create it), or WAIT.

    An account Salesforce does not have yet is made by exactly one conversion: the one its row depends
    on, or — when that one is dead or outside the pilot — the first that asks. Every other conversion
    onto it waits until it has its Salesforce id; so does one onto an account the outbox is about to
    upsert (its answer may have been lost after Salesforce created it).
    """
    keys = {key for _, key in conversions}
    rows = {
        row.external_id: row
        for row in OutboxItem.objects.filter(object_type="Account", external_id__in=keys).select_related("depends_on")
    }
    roles, makers = {}, set()
    for pk, key in conversions:
        row = rows.get(key)
        if row is None or row.salesforce_id:
            roles[pk] = ONTO if row is not None else MAKE
            continue
        maker = row.depends_on
        if maker is None:
            mine = row.state not in _open_states()  # held or dead: nobody else will send it
        else:
            mine = maker.pk == pk or maker.state in (OutboxItem.State.DEAD, OutboxItem.State.HELD)
        roles[pk] = MAKE if mine and key not in makers else WAIT
        if roles[pk] == MAKE:
            makers.add(key)
    return roles


def _handle(object_type: str, items: list[OutboxItem], client: SalesforceClient | None, report: DrainReport) -> None:
    """Send the rows (the pilot's gate has passed them), or record them as a dry run's."""
    if client is None:
        for item in items:
            _finish(item, state=OutboxItem.State.DRY_RUN)
        report.recorded += len(items)
        return
    report.sent += len(items)
    report.by_type[object_type] = report.by_type.get(object_type, 0) + len(items)
    try:
        if object_type == "LeadConversion":
            _convert(items, client, report)
        elif object_type == DELETION:
            report.calls += 1
            answers = deletions_send(client, items)
            _record(list(zip(items, [answers[item.pk] for item in items], strict=True)), report)
        else:
            report.calls += 1
            results = client.upsert_collection(object_type, EXTERNAL_ID, [item.payload for item in items])
            _record(list(zip(items, results, strict=True)), report)
    except SalesforceCallError as exc:
        ids = {"outbox_ids": [item.pk for item in items], "workspace_ids": sorted({i.workspace_key for i in items})}
        logger.warning("Salesforce %s batch of %d failed: %s", object_type, len(items), exc, extra=ids)
        for item in items:
            _fail(item, exc.code, exc.message, report)


def _record(outcomes: list[tuple[OutboxItem, RecordResult]], report: DrainReport) -> None:
    """One call's results: its successes together, then each refusal (rare) on its own."""
    _succeed_all([(item, result.salesforce_id) for item, result in outcomes if result.success], report)
    for item, result in outcomes:
        if not result.success:
            ids = {"outbox_id": item.pk, "workspace_id": item.workspace_key, "error_code": result.error_code}
            logger.warning(
                "Salesforce refused %s %s: %s", item.object_type, item.external_id, result.error_code, extra=ids
            )
            _fail(item, result.error_code, result.error_message, report)


def _succeed_all(successes: list[tuple[OutboxItem, str]], report: DrainReport) -> None:
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


# --- lead conversion --------------------------------------------------------------------------


@dataclass
class _Plan:
    """One lead conversion as it will be sent: onto which account and contact, and what came back."""

    item: OutboxItem
    lead_id: str
    account_id: str | None  # None: convertLead makes the account, which is then stamped
    contact_id: str | None  # the person's contact when Salesforce already has it (merged, not duplicated)
    result: Conversion | None = None


def _convert(items: list[OutboxItem], client: SalesforceClient, report: DrainReport) -> None:
    """convertLead for each item, exactly once, then stamp what it made with the engine's external ids.

    A retried conversion may follow a lost answer (a timeout, a dropped connection): its lead is re-read
    first and not converted again. So is one known converted (its stamps failed: the row keeps the contact
    convertLead made), which resumes at the stamps. After an answer to convertLead (a 5xx, a lock) nothing
    was converted, so it converts at once; were the lead converted after all, Salesforce refuses
    (CANNOT_UPDATE_CONVERTED_LEAD) and the lead is re-read then.
    A conversion counts as synced only once its contact (and the account it made) carry their external
    ids; until then their own rows wait for it, so neither is ever upserted into a second record.
    """
    plans = _plans(items, report)
    if not plans:
        return
    retried = [
        plan
        for plan in plans
        if plan.item.salesforce_id or (plan.item.attempts > 0 and plan.item.error_code in ANSWER_LOST)
    ]
    already = _converted_in_salesforce(client, [plan.lead_id for plan in retried], report)
    for plan in plans:
        plan.result = already.get(plan.lead_id)
    to_convert = [plan for plan in plans if plan.result is None]
    if to_convert:
        report.calls += 1
        results = client.convert_leads([(p.lead_id, p.account_id, p.contact_id) for p in to_convert])
        for plan, result in zip(to_convert, results, strict=True):
            plan.result = result
        lost = [p.lead_id for p in to_convert if p.result.error_code == "CANNOT_UPDATE_CONVERTED_LEAD"]
        reread = _converted_in_salesforce(client, lost, report)
        for plan in to_convert:
            plan.result = reread.get(plan.lead_id, plan.result)
    for plan in plans:
        if not plan.result.success:
            _fail(plan.item, plan.result.error_code, plan.result.error_message, report)
    _stamp_converted(client, [plan for plan in plans if plan.result.success], report)


def _plans(items: list[OutboxItem], report: DrainReport) -> list[_Plan]:
    """How to convert each item; items that must wait (see `_account_roles`) are let go for later."""
    roles = _account_roles([(item.pk, item.payload["account"]) for item in items])
    rows = _rows("Account", [item.payload["account"] for item in items])
    contacts = _rows("Contact", [item.payload["contact"] for item in items])
    plans = []
    for item in items:
        lead_id = item.depends_on.salesforce_id if item.depends_on else ""
        row = rows.get(item.payload["account"])
        if roles[item.pk] == MAKE and row is not None and row.depends_on_id != item.pk:
            # Taken over from a dead or held maker, only if no other conversion took it meanwhile.
            taken = OutboxItem.objects.filter(pk=row.pk, depends_on_id=row.depends_on_id, salesforce_id="")
            roles[item.pk] = MAKE if taken.update(depends_on=item) else WAIT
        if roles[item.pk] == WAIT:
            _let_go([item])
            continue
        if not lead_id:
            _fail(item, "LEAD_NOT_IN_SALESFORCE", "The lead to convert has no Salesforce id.", report)
            continue
        account_id = None if roles[item.pk] == MAKE else row.salesforce_id
        contact = contacts.get(item.payload["contact"])
        contact_id = contact.salesforce_id if contact is not None and contact.salesforce_id and account_id else None
        plans.append(_Plan(item, lead_id, account_id, contact_id))
    return plans


def _rows(object_type: str, keys: list[str]) -> dict[str, OutboxItem]:
    return {row.external_id: row for row in OutboxItem.objects.filter(object_type=object_type, external_id__in=keys)}


def _converted_in_salesforce(
    client: SalesforceClient, lead_ids: list[str], report: DrainReport
) -> dict[str, Conversion]:
    """Re-read leads whose conversion may already have happened (a retry after a lost response)."""
    quoted = ", ".join(f"'{lead_id}'" for lead_id in lead_ids if lead_id.isalnum())  # Salesforce ids only
    if not quoted:
        return {}
    report.calls += 1
    rows = client.query(
        f"SELECT Id, IsConverted, ConvertedAccountId, ConvertedContactId FROM Lead WHERE Id IN ({quoted})"  # noqa: S608
    )
    return {
        row["Id"]: Conversion(True, row["Id"], row["ConvertedAccountId"], row["ConvertedContactId"])
        for row in rows
        if row.get("IsConverted")
    }


@dataclass
class _Stamp:
    plan: _Plan
    row: OutboxItem
    salesforce_id: str
    error: tuple[str, str] | None = None


def _stamp_converted(client: SalesforceClient, plans: list[_Plan], report: DrainReport) -> None:
    """Write the engine's state, external id included, onto the contact and account convertLead made.

    Collection updates by Id (types mixed, ≤ 200 records a call) stamp them and set their fields, so
    their rows are synced in the same step. A conversion whose stamps all succeeded is synced; one
    with a failed stamp is retried (its lead is re-read, the stamp sent again), never upserted anew.
    The workspaces that waited only for these stamps ride in the same call (`_riders`), right after them.
    """
    stamps: list[_Stamp] = []
    contacts = _rows("Contact", [plan.item.payload["contact"] for plan in plans])
    accounts = _rows("Account", [plan.item.payload["account"] for plan in plans if plan.account_id is None])
    for plan in plans:
        contact = contacts.get(plan.item.payload["contact"])
        if contact is not None:
            stamps.append(_Stamp(plan, contact, plan.result.contact_id))
        if plan.account_id is None:
            account = accounts.get(plan.item.payload["account"])
            if account is not None and account.salesforce_id in ("", plan.result.account_id):
                stamps.append(_Stamp(plan, account, plan.result.account_id))
            else:  # never expected: say so loudly rather than leave a second account unexplained
                logger.error(
                    "convertLead made account %s for %s, which the outbox cannot stamp (row: %s)",
                    plan.result.account_id,
                    plan.item.payload["account"],
                    account,
                )
    stamps.sort(key=lambda stamp: stamp.row.object_type != "Account")  # a contact's account is stamped first
    size = settings.SALESFORCE_BATCH_SIZE
    rode: list[tuple[OutboxItem, RecordResult, set[tuple[str, str]]]] = []
    for start in range(0, len(stamps), size):
        chunk = stamps[start : start + size]
        riders = _riders(chunk, client, report)
        update = [(stamp.row.object_type, {**stamp.row.payload, "Id": stamp.salesforce_id}) for stamp in chunk]
        try:
            report.calls += 1
            if riders:
                results, rider_results = client.write_collections(
                    [
                        CollectionWrite(update),
                        CollectionWrite([("Workspace__c", rider.payload) for rider in riders], "Workspace__c"),
                    ],
                    external_field=EXTERNAL_ID,
                )
            else:
                results, rider_results = client.update_collection(update, external_field=EXTERNAL_ID), []
        except SalesforceCallError as exc:
            for stamp in chunk:
                stamp.error = (exc.code, exc.message)
            _let_go(riders)  # not their failure: they go once the stamps are retried
            continue
        for stamp, result in zip(chunk, results, strict=True):
            if not result.success:
                stamp.error = (result.error_code, result.error_message)
        failed = {(stamp.row.object_type, stamp.row.external_id) for stamp in chunk if stamp.error}
        rode += [(rider, result, failed) for rider, result in zip(riders, rider_results, strict=True)]
    stamped, converted = [], []
    for plan in plans:
        mine = [stamp for stamp in stamps if stamp.plan is plan]
        failed = next((stamp.error for stamp in mine if stamp.error), None)
        if failed:  # converted all the same: its retry re-reads the lead (one call), never converts again
            OutboxItem.objects.filter(pk=plan.item.pk).update(salesforce_id=plan.result.contact_id)
            _fail(plan.item, *failed, report)
            continue
        stamped += [(stamp.row, stamp.salesforce_id) for stamp in mine]
        converted.append((plan.item, plan.result.contact_id))
    # The stamped rows before their conversions, as one by one: a synced conversion lets its dependents go.
    _succeed_all(stamped, report)
    _succeed_all(converted, report)
    # A rider refused because a stamp it looks up failed goes again once that stamp is in: no attempt spent.
    waiting = [rider for rider, result, lost in rode if not result.success and _lookup_keys_of(rider.payload) & lost]
    _let_go(waiting)
    _record([(rider, result) for rider, result, _ in rode if rider not in waiting], report)


def _riders(stamps: list[_Stamp], client: SalesforceClient, report: DrainReport) -> list[OutboxItem]:
    """Claim the Workspace__c rows that wait for nothing but these stamps: they are upserted in the same
    call, right after them, instead of one call later (a paying customer's workspace shows in Salesforce
    a round trip sooner; so does a colleague's trial that waited for the account the conversion made).

    Candidates are the converted workspaces and the other workspaces of the contacts and accounts stamped.
    A rider is due, each of its lookups is in Salesforce or among these stamps, it is in the pilot, and no
    earlier copy of it is still in flight.
    """
    stamped = {(stamp.row.object_type, stamp.row.external_id) for stamp in stamps}
    now = timezone.now()
    pks = {
        object_type: [pk_of(key) for t, key in stamped if t == object_type] for object_type in ("Account", "Contact")
    }
    theirs = Workspace.objects.filter(Q(account_id__in=pks["Account"]) | Q(contact_id__in=pks["Contact"]))
    converted = [stamp.plan.item.workspace_key for stamp in stamps]
    rows = list(
        _candidates("Workspace__c", now)
        .filter(Q(external_id__in=converted) | Q(external_id__in=theirs.values("workspace_id")))
        .values_list("pk", "version", "external_id", "workspace_key", "payload")[: settings.SALESFORCE_BATCH_SIZE]
    )
    looked_up = {key for *_, payload in rows for key in _lookup_keys_of(payload)}
    unsent = _unsent(looked_up - stamped)
    held = client.held_until("Workspace__c", [external_id for _, _, external_id, _, _ in rows])
    pilot = workspaces_in_pilot({workspace_key for _, _, _, workspace_key, _ in rows})
    ready = {
        pk: version
        for pk, version, external_id, workspace_key, payload in rows
        if not (_lookup_keys_of(payload) & unsent) and external_id not in held and workspace_key in pilot
    }
    if not ready:
        return []
    riders = _lease("Workspace__c", ready, stamps[0].plan.item.lease_owner, now)  # its conversion's lane
    report.sent += len(riders)
    report.by_type["Workspace__c"] = report.by_type.get("Workspace__c", 0) + len(riders)
    return riders


def _lookup_keys_of(payload: dict) -> set[tuple[str, str]]:
    """(type, external id) of each record a Workspace__c payload looks up."""
    return lookup_keys("Workspace__c", payload)


def _unsent(keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these (type, external id), the records the outbox has yet to send a first time (held ones too:
    a rider pointing at one waits for its own claim, which releases it)."""
    if not keys:
        return set()
    states = [*_open_states(), OutboxItem.State.HELD]
    rows = OutboxItem.objects.filter(keyed(keys), salesforce_id="", state__in=states)
    return set(rows.values_list("object_type", "external_id"))


def _let_go(items: list[OutboxItem]) -> None:
    """Release rows claimed but not sent (or not theirs to answer for), without spending an attempt.

    One row a statement: processing may hold some of them, and a statement holding one row while it
    waits for another could close a cycle with it (see salesforce/stamping.py). They are few (riders, a
    conversion that waits, a row changed since its claim was checked).
    """
    for item in items:
        OutboxItem.objects.filter(pk=item.pk, lease_owner=item.lease_owner).update(
            lease_owner="", lease_expires_at=None
        )


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
