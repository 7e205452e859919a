"""Rolling telemetry up, exactly once: `usage.recorded` into daily usage rows, `support.ticket_*` into
tickets and `plan.limit_reached` into daily plan-limit hits (the types events/schemas.py marks rolled up).

Claiming the events, adding them to the rollup and marking them completed happen in one transaction:
a retried or duplicated task either finds the events already completed or waits for (PostgreSQL: skips)
the rows another worker holds, so nothing is counted twice and nothing is lost.

What a batch rolled up and what its re-evaluation changed go, inside its transaction, to the hooks layers
above registered (`after_batch_register`): the trigger engine, which usage may not import, evaluates them
there, so its firings commit with the batch or not at all.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import NotSupportedError, connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from events.jsonbody import PayloadInvalid
from events.models import Event
from events.schemas import ROLLED_UP_TYPES, validate_data
from events.services import enqueue_workspaces
from failures.services import error_record
from usage.metrics_rollups import (
    LIMIT_REACHED,
    TICKET_OPENED,
    TICKET_RESOLVED,
    RollupEvent,
    plan_limits_rollup,
    tickets_apply,
    zone_named,
)
from usage.models import UsageDaily, UsageDailyUser
from usage.services import Change, behaviour_refresh, workspace_records
from workspaces.models import Workspace

USAGE_TYPE = "usage.recorded"
DEFAULT_LIMIT = 5000
#: Rollups of disjoint workspaces run side by side (PostgreSQL). A batch takes the events of one partition of
#: the workspaces (a hash of the key) under a transaction-level advisory lock on it, so two workers never add
#: to the same daily rows nor lock the same workspaces. Claiming from one queue, the second worker waited on
#: the first's rows for its whole transaction, trigger evaluation included: two workers did the work of one
#: (bench/trigger_latency.py). One partition per worker that rolls up; settings.USAGE_ROLLUP_PARTITIONS.
DEFAULT_PARTITIONS = 2
_PARTITION_LOCK = 0x5553  # the advisory locks' first key ("US"); the second is the partition
#: `usage_rollup_batch(partition=EVERY_PARTITION)`: all partitions' locks, every event.
EVERY_PARTITION = -1
#: While the oldest waiting event is younger than this, the backlog is rolled up in one transaction over every
#: partition (the fewest statements an event: one worker keeps up); older, the rollup is behind and splits by
#: partition so idle workers help. Splitting every webhook batch of 100 in two cost 16 % more CPU an event with
#: profiles on (bench/usage_freshness.py); bench/trigger_latency.py, where one worker cannot keep up, needs two.
SPLIT_AFTER = timedelta(milliseconds=150)

_KEY_COLUMNS = ("workspace_key", "feature", "product", "day")
_SUM_COLUMNS = ("events", "count", "duration_seconds", "errors")
_COLUMNS = (*_KEY_COLUMNS, *_SUM_COLUMNS, "first_seen_at", "last_seen_at")
# Two-argument min/max: SQLite's scalar min()/max(), PostgreSQL's LEAST/GREATEST.
_MIN_MAX = {"postgresql": ("LEAST", "GREATEST"), "sqlite": ("min", "max")}


class UsageKey(NamedTuple):
    workspace_key: str
    feature: str
    product: str
    day: date


@dataclass(frozen=True)
class Usage:
    """One usage event, validated and reduced to what the rollup needs."""

    key: UsageKey
    count: int
    duration_seconds: float
    error: bool
    user_email: str
    occurred_at: datetime


@dataclass
class UsageTotals:
    first_seen_at: datetime
    last_seen_at: datetime
    events: int = 0
    count: int = 0
    duration_seconds: float = 0.0
    errors: int = 0

    def add(self, usage: Usage) -> None:
        self.events += 1
        self.count += usage.count
        self.duration_seconds += usage.duration_seconds
        self.errors += usage.error
        self.first_seen_at = min(self.first_seen_at, usage.occurred_at)
        self.last_seen_at = max(self.last_seen_at, usage.occurred_at)


@dataclass
class Rollup:
    """A claimed batch, aggregated in memory before anything is written."""

    totals: dict[UsageKey, UsageTotals] = field(default_factory=dict)
    users: set[tuple[UsageKey, str]] = field(default_factory=set)
    rolled_up: list[int] = field(default_factory=list)
    review: list[Event] = field(default_factory=list)
    tickets: list[RollupEvent] = field(default_factory=list)
    limits: list[RollupEvent] = field(default_factory=list)
    events: list[RolledUpEvent] = field(default_factory=list)  # what the hooks are told was rolled up
    zones: dict[str, str] = field(default_factory=dict)  # the batch's workspaces' zones, where known
    workspaces: dict[str, dict[str, Any]] = field(default_factory=dict)  # the batch's stored workspaces, by key

    @property
    def workspace_keys(self) -> list[str]:
        """The workspaces whose behaviour this batch changed."""
        keys = {key.workspace_key for key in self.totals}
        keys.update(event.workspace_key for event in (*self.tickets, *self.limits))
        return sorted(keys)

    def add(self, event_id: int, usage: Usage) -> None:
        totals = self.totals.get(usage.key)
        if totals is None:
            totals = self.totals[usage.key] = UsageTotals(usage.occurred_at, usage.occurred_at)
        totals.add(usage)
        if usage.user_email:
            self.users.add((usage.key, usage.user_email))
        self.rolled_up.append(event_id)
        self.events.append(RolledUpEvent(event_id, USAGE_TYPE, usage.key.workspace_key))


class RolledUpEvent(NamedTuple):
    id: int
    type: str
    workspace_key: str


@dataclass(frozen=True)
class Batch:
    """What one committed batch changed, for the hooks: the events it rolled up and the cohort and stage
    changes its re-evaluation (or a sweep chunk's) made."""

    events: tuple[RolledUpEvent, ...] = ()
    changes: tuple[Change, ...] = ()


AfterBatch = Callable[[Batch], None]
_after_batch: list[AfterBatch] = []


def after_batch_register(hook: AfterBatch) -> None:
    """Call `hook` inside every rollup batch's and behaviour sweep chunk's transaction, after its writes: what
    it writes commits with the batch. It contains its own failures (one that raises fails the batch, which is
    retried). Registered at a higher app's ready."""
    if hook not in _after_batch:
        _after_batch.append(hook)


def after_batch(batch: Batch) -> None:
    """Tell the registered hooks what this batch changed (nothing to tell: no call)."""
    if batch.events or batch.changes:
        for hook in _after_batch:
            hook(batch)


@dataclass(frozen=True)
class RollupResult:
    claimed: int
    rolled_up: int
    reviewed: int


def usage_rollup(*, event_ids: Sequence[int] | None = None, limit: int = DEFAULT_LIMIT) -> int:
    """Roll up new telemetry events (these ids, or the oldest `limit`); return how many were counted."""
    return usage_rollup_batch(event_ids=event_ids, limit=limit).rolled_up


def rollup_partitions() -> int:
    """How many partitions the rollup's work falls into: one on a database with one writer (SQLite)."""
    if connection.vendor != "postgresql":
        return 1
    return max(1, int(getattr(settings, "USAGE_ROLLUP_PARTITIONS", DEFAULT_PARTITIONS)))


def usage_rollup_drain() -> int:
    """Roll up every new telemetry event; return how many were counted.

    A backlog whose oldest event waited less than SPLIT_AFTER goes in one transaction over every partition
    (the fewest statements an event: one worker keeps up), after the worker rolling up now, if any. An older
    one goes one partition a batch, each in batches of DEFAULT_LIMIT until it is empty, so idle workers
    take the other partitions meanwhile. Partitions another worker holds are taken last, waiting for it: an
    event that worker had not claimed is then taken here, so none is left behind (each commit rings this task).
    """
    partitions = rollup_partitions()
    if partitions == 1 or not _behind(SPLIT_AFTER):  # waiting, if need be, for a worker rolling up now
        return _drain(EVERY_PARTITION, wait=True) or 0
    first = random.randrange(partitions)
    total, busy = 0, []
    for partition in [(first + n) % partitions for n in range(partitions)]:
        drained = _drain(partition, wait=False)
        if drained is None:
            busy.append(partition)
        else:
            total += drained
    for partition in busy:
        total += _drain(partition, wait=True) or 0
    return total


def _behind(after: timedelta) -> bool:
    """The oldest rolled-up event still waiting was received more than `after` ago (the index on
    (status, received_at) reads one row)."""
    waiting = Event.objects.filter(type__in=ROLLED_UP_TYPES, status=Event.Status.NEW).order_by("received_at")
    oldest = waiting.values_list("received_at", flat=True).first()
    return oldest is not None and oldest < timezone.now() - after


def _drain(partition: int, *, wait: bool) -> int | None:
    """Batches of one partition (or EVERY_PARTITION) until one claims less than DEFAULT_LIMIT; None when its
    lock was held at once. A lock lost between batches means another worker drains it now (it claims after
    this commit)."""
    total = 0
    while True:
        result = usage_rollup_batch(limit=DEFAULT_LIMIT, partition=partition, wait=wait)
        if result is None:
            return total or None
        total += result.rolled_up
        if result.claimed < DEFAULT_LIMIT:
            return total


def _partition_lock(partition: int, *, wait: bool) -> bool:
    """Hold this partition's advisory lock (EVERY_PARTITION: all of theirs) until the commit (always, with one
    writer); False if another transaction holds it already."""
    partitions = rollup_partitions()
    if partitions == 1:
        return True
    function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    which = range(partitions) if partition == EVERY_PARTITION else [partition]
    with connection.cursor() as cursor:
        for number in which:  # in order: two takers of several never hold one each and wait for the other
            cursor.execute(f"SELECT {function}(%s, %s)", [_PARTITION_LOCK, number])
            if not (wait or cursor.fetchone()[0]):
                return False
    return True


def usage_rollup_batch(
    *, event_ids: Sequence[int] | None = None, limit: int = DEFAULT_LIMIT, partition: int | None = None,
    wait: bool = True,
) -> RollupResult | None:  # fmt: skip
    """As `usage_rollup`, also saying how many were claimed, so a caller can tell a backlog remains. With a
    `partition` (0 … rollup_partitions() - 1): only its workspaces' events, under its lock (EVERY_PARTITION:
    every event, under all the locks); None when `wait` is False and another worker holds a lock it needs."""
    with transaction.atomic(durable=True):
        if partition is not None and not _partition_lock(partition, wait=wait):
            return None
        claimed = _claim(event_ids=event_ids, limit=limit, partition=partition)
        rollup = _aggregate(claimed)
        _upsert_daily(rollup.totals)
        _insert_users(rollup.users)
        tickets_apply(rollup.tickets)
        plan_limits_rollup(rollup.limits, zones=rollup.zones)
        _mark_completed(rollup.rolled_up)
        Event.objects.bulk_update(rollup.review, ["status", "notes"])
        changes: list[Change] = []
        if settings.BEHAVIOUR_PROFILES and (keys := rollup.workspace_keys):
            # cohorts and stages move with the telemetry, in the same transaction
            changes = behaviour_refresh(workspace_keys=keys, records=rollup.workspaces)
            stage_changes_record(changes)
        after_batch(Batch(tuple(rollup.events), tuple(changes)))
    return RollupResult(len(claimed), len(rollup.rolled_up), len(rollup.review))


def stage_changes_record(changes: Sequence[Change]) -> None:
    """Salesforce holds each workspace's stage: a changed one is re-recorded by a forced processing run
    after this commit (under the workspace's lock, so it never races the lifecycle's own writes)."""
    keys = sorted(change.workspace_key for change in changes if change.stage_changed)
    if keys and settings.SALESFORCE_SYNC != "off":
        transaction.on_commit(lambda: enqueue_workspaces(workspace_keys=keys, force=True), robust=True)


def _workspaces(workspace_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The batch's workspaces, read once: their zones (usage and plan-limit hits count per local day) and,
    when profiles are on, what their re-evaluation reads of them. A workspace not stored yet is absent."""
    keys = sorted(workspace_keys)
    if not keys:
        return {}
    if settings.BEHAVIOUR_PROFILES:
        return workspace_records(keys)
    rows = Workspace.objects.filter(workspace_id__in=keys).values("workspace_id", "timezone")
    return {row["workspace_id"]: row for row in rows}


Claimed = tuple[int, str, datetime | None, Any, str]


def _claim(*, event_ids: Sequence[int] | None, limit: int, partition: int | None = None) -> list[Claimed]:
    """Lock new rolled-up events for this transaction; on PostgreSQL, rows another worker holds are skipped."""
    events = Event.objects.filter(type__in=ROLLED_UP_TYPES, status=Event.Status.NEW)
    if partition not in (None, EVERY_PARTITION) and (partitions := rollup_partitions()) > 1:
        which = RawSQL("mod(hashtext(coalesce(workspace_key, '')) & 2147483647, %s)", [partitions])
        events = events.annotate(partition=which).filter(partition=partition)
    if event_ids is not None:
        events = events.filter(pk__in=list(event_ids)).order_by("id")
    else:
        # Oldest first; the (status, received_at) index serves this.
        events = events.order_by("received_at", "id")
    skip_locked = connection.features.has_select_for_update_skip_locked
    events = events.select_for_update(skip_locked=skip_locked)
    return list(events.values_list("id", "type", "occurred_at", "payload", "notes")[:limit])


def _aggregate(claimed: Iterable[Claimed]) -> Rollup:
    rollup = Rollup()
    usages: list[tuple[int, Usage]] = []
    for event_id, event_type, occurred_at, payload, notes in claimed:
        try:
            if event_type == USAGE_TYPE:
                usages.append((event_id, parse_usage(payload, occurred_at)))
                continue
            event = parse_rollup_event(event_type, payload, occurred_at)
            (rollup.limits if event_type == LIMIT_REACHED else rollup.tickets).append(event)
            rollup.rolled_up.append(event_id)
            rollup.events.append(RolledUpEvent(event_id, event_type, event.workspace_key))
        except PayloadInvalid as exc:
            note = f"Rollup: invalid stored payload, not counted ({_describe(exc)})."
            notes = f"{notes}\n{note}" if notes else note
            rollup.review.append(Event(pk=event_id, status=Event.Status.REVIEW, notes=notes))
            error_record(source="processing", kind="PayloadInvalid", message=note, obj=Event(pk=event_id))
    keys = {usage.key.workspace_key for _, usage in usages}
    keys.update(event.workspace_key for event in (*rollup.limits, *rollup.tickets))
    rollup.workspaces = _workspaces(keys)
    rollup.zones = {key: row["timezone"] for key, row in rollup.workspaces.items() if row["timezone"]}
    for event_id, usage in usages:
        rollup.add(event_id, _on_local_day(usage, rollup.zones))
    return rollup


def _on_local_day(usage: Usage, zones: dict[str, str]) -> Usage:
    """The usage counted on its day in the workspace's zone (UTC when none is known), the day its windows use."""
    name = zones.get(usage.key.workspace_key)
    if not name:
        return usage
    day = usage.occurred_at.astimezone(zone_named(name)).date()
    return usage if day == usage.key.day else replace(usage, key=usage.key._replace(day=day))


def parse_usage(payload: Any, occurred_at: datetime | None) -> Usage:
    """Validate a stored `usage.recorded` body against the contract; raise PayloadInvalid if it fails."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise PayloadInvalid({"data": ["Expected a JSON object."]})
    if occurred_at is None:
        raise PayloadInvalid({"timestamp": ["The event has no occurred_at."]})
    valid = validate_data(USAGE_TYPE, data)
    occurred_at = occurred_at.astimezone(UTC)
    return Usage(
        key=UsageKey(valid["workspace_id"], valid["feature"], valid.get("product") or "", occurred_at.date()),
        count=valid["count"],
        duration_seconds=float(valid.get("duration_seconds") or 0.0),
        error=valid.get("outcome") == "error",
        user_email=(valid.get("user_email") or "").lower(),
        occurred_at=occurred_at,
    )


def parse_rollup_event(event_type: str, payload: Any, occurred_at: datetime | None) -> RollupEvent:
    """A stored ticket or plan-limit event, validated against the contract, as the behaviour rollups take it."""
    if event_type not in (TICKET_OPENED, TICKET_RESOLVED, LIMIT_REACHED):
        raise PayloadInvalid({"type": [f"{event_type!r} is not rolled up here."]})
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise PayloadInvalid({"data": ["Expected a JSON object."]})
    if occurred_at is None:
        raise PayloadInvalid({"timestamp": ["The event has no occurred_at."]})
    valid = validate_data(event_type, data)
    return RollupEvent(valid["workspace_id"], occurred_at.astimezone(UTC), valid, event_type)


def _describe(exc: PayloadInvalid) -> str:
    return "; ".join(f"{name}: {' '.join(messages)}" for name, messages in sorted(exc.fields.items()))


def _upsert_daily(totals: dict[UsageKey, UsageTotals]) -> None:
    """Add the totals to their rows with multi-row INSERT … ON CONFLICT DO UPDATE.

    Keys go in sorted order so two workers adding to the same rows lock them in the same order and
    cannot deadlock. SQLite caps parameters per statement, hence the batches (one on PostgreSQL).
    """
    rows = [_row(key, totals[key]) for key in sorted(totals)]
    fields = [UsageDaily._meta.get_field(name) for name in _COLUMNS]
    size = max(connection.ops.bulk_batch_size(fields, rows), 1)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            cursor.execute(_upsert_sql(len(batch)), [value for row in batch for value in row])


def _row(key: UsageKey, totals: UsageTotals) -> list[Any]:
    ops = connection.ops
    return [
        key.workspace_key,
        key.feature,
        key.product,
        ops.adapt_datefield_value(key.day),
        totals.events,
        totals.count,
        totals.duration_seconds,
        totals.errors,
        ops.adapt_datetimefield_value(totals.first_seen_at),
        ops.adapt_datetimefield_value(totals.last_seen_at),
    ]


def _upsert_sql(rows: int) -> str:
    if connection.vendor not in _MIN_MAX:
        raise NotSupportedError(f"usage rollup upsert is not written for {connection.vendor}")
    least, greatest = _MIN_MAX[connection.vendor]
    qn = connection.ops.quote_name
    table = qn(UsageDaily._meta.db_table)
    values = ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * rows)
    updates = [f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in _SUM_COLUMNS]
    for column, function in (("first_seen_at", least), ("last_seen_at", greatest)):
        updates.append(f"{qn(column)} = {function}({table}.{qn(column)}, excluded.{qn(column)})")
    return (
        f"INSERT INTO {table} ({', '.join(qn(c) for c in _COLUMNS)}) VALUES {values} "  # noqa: S608 (names, not input)
        f"ON CONFLICT ({', '.join(qn(c) for c in _KEY_COLUMNS)}) DO UPDATE SET {', '.join(updates)}"
    )


def _insert_users(users: set[tuple[UsageKey, str]]) -> None:
    """Record who was active; a user already recorded for that key and day is left as it is."""
    rows = [UsageDailyUser(**key._asdict(), user_email=email) for key, email in sorted(users)]
    UsageDailyUser.objects.bulk_create(rows, ignore_conflicts=True)


def _mark_completed(event_ids: list[int]) -> None:
    # A queryset update: one statement for the batch (auditlog does not record it, by design here).
    if event_ids:
        completed = Event.objects.filter(pk__in=event_ids)
        completed.update(status=Event.Status.COMPLETED, completed_at=timezone.now())
