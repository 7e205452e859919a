"""Claiming outbox rows to send: a batch of one type whose dependencies are in Salesforce, leased to one
drainer (so two drainers never send one row), in one statement per batch; and letting rows go again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.utils import timezone

from salesforce.deletion import DELETION
from salesforce.models import OutboxItem
from salesforce.outbox import EXTERNAL_ID, LOOKUPS, RELATIONSHIPS, keyed


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


def open_states() -> list[str]:
    states = [OutboxItem.State.PENDING, OutboxItem.State.RETRY]
    if settings.SALESFORCE_SYNC == "live":
        states.append(OutboxItem.State.DRY_RUN)  # recorded during a dry run: send them now
    return states


def _due(object_type: str | None, now) -> QuerySet[OutboxItem]:
    rows = OutboxItem.objects.filter(object_type=object_type) if object_type else OutboxItem.objects.all()
    return (
        rows.filter(state__in=open_states())
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
    )


def due_types() -> set[str]:
    """The types with rows due now (one indexed query): the drainer wakes only their stages."""
    return set(_due(None, timezone.now()).values_list("object_type", flat=True).distinct())


def claim_batch(object_type: str, worker: str) -> list[OutboxItem]:
    """Lease up to a batch of due rows whose dependencies are in Salesforce (oldest change first).

    The lease is taken by one UPDATE that re-checks state, due time and lease on each row, so a row
    another drainer finished meanwhile is never sent again (`lease_rows`).
    """
    now = timezone.now()
    batch = settings.SALESFORCE_BATCH_SIZE
    live = settings.SALESFORCE_SYNC == "live"
    checked: dict[int, int | None]  # id -> the version whose lookups were checked (None: not by version)
    if live and object_type in ("LeadConversion", DELETION):
        checked = dict.fromkeys(_ready_ids(object_type, candidate_rows(object_type, now), batch))
    else:
        checked = dict(_ready_ids_plain(object_type, now, batch, live))
    return lease_rows(object_type, checked, worker, now) if checked else []


def lease_rows(object_type: str, checked: dict[int, int | None], worker: str, now) -> list[OutboxItem]:
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
    rows_let_go(changed)
    return [item for item in items if item not in changed]


#: Compiled statements of the plain claim query, by everything that shapes it: (database vendor, type,
#: open states, done states, batch, live) -> (SQL, parameters, positions of "now" in the parameters).
_PLAIN_CLAIMS: dict[tuple, tuple[str, list, list[int]]] = {}


_PROBES = (datetime(2001, 1, 1, 1, 1, 1, 111111, tzinfo=UTC), datetime(2002, 2, 2, 2, 2, 2, 222222, tzinfo=UTC))


def candidate_rows(object_type: str, now) -> QuerySet[OutboxItem]:
    """Due rows of this type whose outbox dependency (a conversion, say) is done, oldest change first."""
    return (
        _due(object_type, now)
        .filter(Q(depends_on__isnull=True) | Q(depends_on__state__in=_done_states()))
        .order_by("updated_at", "pk")
    )


def _plain_candidates(object_type: str, now, batch: int, live: bool) -> QuerySet:
    candidates = candidate_rows(object_type, now)
    if live and object_type in LOOKUPS:
        candidates = _lookups_in_salesforce(object_type, candidates)
    return candidates.values_list("pk", "version")[:batch]


def _ready_ids_plain(object_type: str, now, batch: int, live: bool) -> list[tuple[int, int]]:
    """The (id, version) of up to `batch` rows of this type that may go now (claim_batch's query for every
    type but conversions and deletions).

    A stage asks this many times a second, and most of its cost was Django building the same statement
    (its lookups' NOT EXISTS probes and JSON paths) again: it is compiled once per shape, with two probe
    times to find where "now" goes in its parameters, and then only executed.
    """
    key = (connection.vendor, object_type, tuple(open_states()), _done_states(), batch, live)
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
            state__in=open_states(),
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
            roles = account_roles([(pk, payload["account"]) for pk, payload in rows])
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
        .filter(Q(state__in=open_states()) | Q(lease_expires_at__gt=now))
        .values_list("object_type", "external_id")
    )


ONTO, MAKE, WAIT = "onto", "make", "wait"


def account_roles(conversions: list[tuple[int, str]]) -> dict[int, str]:
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
            mine = row.state not in open_states()  # held or dead: nobody else will send it
        else:
            mine = maker.pk == pk or maker.state in (OutboxItem.State.DEAD, OutboxItem.State.HELD)
        roles[pk] = MAKE if mine and key not in makers else WAIT
        if roles[pk] == MAKE:
            makers.add(key)
    return roles


def rows_let_go(items: list[OutboxItem]) -> None:
    """Release rows claimed but not sent (or not theirs to answer for), without spending an attempt.

    One row a statement: processing may hold some of them, and a statement holding one row while it
    waits for another could close a cycle with it (see salesforce/stamping.py). They are few (riders, a
    conversion that waits, a row changed since its claim was checked).
    """
    for item in items:
        OutboxItem.objects.filter(pk=item.pk, lease_owner=item.lease_owner).update(
            lease_owner="", lease_expires_at=None
        )
