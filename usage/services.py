"""Profiles, cohorts and stages re-evaluated for workspaces, with their history, in the caller's transaction.

`behaviour_refresh` is called where usage or lifecycle state changed (the rollup batch, the processing
run), once per workspace per batch, in the same transaction as the change, so cohorts never lag the
events. `behaviour_sweep` handles what time alone changes (a window moving past the last active day, a
"silent for 14 days" threshold crossed): each profile carries the moment its windows can next change
(`next_due_at`), and the sweep visits only profiles that are due.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import orjson
from django.db import connection, transaction
from django.db import connections as db_connections
from django.db.models import BooleanField, F, OuterRef, Q, Subquery, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone

from usage.conditions import (
    FIELDS,
    GROUPS,
    NUMERIC_OPS,
    PLAIN_NUMBERS,
    Facts,
    condition_explain,
    condition_holds,
    condition_nodes,
    product_metric,
)
from usage.metrics import data_ahead, profiles_for, windows_hold_data, zone_named
from usage.metrics_rollups import execute_batches, insert_sql
from usage.metrics_sql import array_literal, keys_array
from usage.models import Cohort, CohortMembership, Profile, Stage, StagePeriod
from workspaces.locks import workspace_locks_take
from workspaces.models import Workspace

#: Metrics that grow by one a day while nothing happens: a threshold on them is crossed on a known day.
GROWING_PREFIX = "days_since_"
#: Workspaces a sweep chunk reads and writes in one transaction. 2,000 rather than 1,000: half the statements
#: and their planning, 5 % off a daily pass (bench/behaviour.py, two pairs of runs); a chunk's locks are held
#: for at most about a fifth of a second (the writer's whole turn: 7.9 s over a daily pass's 37 chunks),
#: which a usage batch touching one of its workspaces waits out.
SWEEP_CHUNK = 2000
#: Threads reading the next chunks of a sweep on PostgreSQL, each on its own connection.
SWEEP_READERS = 2
#: Values remembered per condition leaf (a leaf's verdict depends on its one value only).
LEAF_CACHE = 4096
#: Explanations remembered per definition, by the values its leaves read (see compile_explanation).
EXPLANATION_CACHE = 4096


@dataclass(frozen=True)
class Change:
    """What one evaluation changed for a workspace (triggers and the outbox react to these)."""

    workspace_key: str
    entered: tuple[str, ...] = ()
    exited: tuple[str, ...] = ()
    stage_from: str | None = None
    stage_to: str | None = None

    @property
    def stage_changed(self) -> bool:
        return self.stage_from != self.stage_to


@dataclass
class Definitions:
    """The enabled cohorts and stages, read once per batch, with their conditions compiled once."""

    cohorts: list[Cohort]
    stages: list[Stage]
    growing: list[tuple[str, str, float]] = field(default_factory=list)  # (metric, op, value) on growing metrics
    checks: Any = None  # compiled(): built on first use
    explainers: dict[tuple[str, int, int], Callable[[Facts], dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Definitions:
        cohorts = list(Cohort.objects.filter(enabled=True).order_by("key"))
        stages = list(Stage.objects.filter(enabled=True).order_by("order", "key"))
        growing = []
        for definition in [*cohorts, *stages]:
            growing += _growing_leaves(definition.condition)
        return cls(cohorts, stages, growing)

    def compiled(self) -> tuple[list[tuple[Cohort, int, Callable[[Facts], bool]]], list[tuple[Stage, Callable]]]:
        """The cohorts (with their ids) and stages, each with its compiled condition (built once)."""
        if self.checks is None:
            self.checks = (
                [(cohort, cohort.pk, compile_condition(cohort.condition)) for cohort in self.cohorts],
                [(stage, compile_condition(stage.condition)) for stage in self.stages],
            )
        return self.checks

    def why(self, definition: Cohort | Stage, facts: Facts) -> dict[str, Any]:
        """`_why(definition, facts)`, through the definition's compiled explanation (built on first use)."""
        key = (definition._meta.model_name, definition.pk, definition.version)
        explain = self.explainers.get(key)
        if explain is None:
            explain = self.explainers[key] = compile_explanation(definition)
        return explain(facts)


def compile_condition(tree: dict) -> Callable[[Facts], bool]:
    """The tree as nested closures giving `condition_holds`'s verdict, for a bulk pass.

    A metric or field leaf's verdict depends on its one value, so each leaf remembers the verdicts of the
    values it has seen (most are small counts) and asks `condition_holds` itself only for a new one: the
    same comparisons (decimal, None satisfies nothing), without walking the tree and converting numbers to
    Decimal for every leaf of every workspace (a third of a bulk pass's Python).
    """
    if "all" in tree or "any" in tree:
        every = "all" in tree
        parts = [compile_condition(node) for node in tree["all" if every else "any"]]

        def group(facts: Facts) -> bool:
            for part in parts:
                if part(facts) is not every:
                    return not every
            return every

        return group
    if "not" in tree:
        inner = compile_condition(tree["not"])
        return lambda facts: not inner(facts)
    if "metric" in tree:
        metric = tree["metric"]
        verdict = _verdicts(tree, lambda value: Facts(metrics={metric: value}))
        threshold, compare = tree.get("value"), NUMERIC_OPS.get(tree.get("op", ""))
        if compare is not None and type(threshold) in PLAIN_NUMBERS:
            # A plain int or float against a plain threshold: the comparison itself, as `_compare` makes it for
            # them; anything else (None, a Decimal, a bool) through the remembered verdicts. Those were half a
            # daily pass's condition time: a float metric (a trend, a duration) has too many values to remember.
            def compared(facts: Facts) -> bool:
                value = facts.metrics.get(metric)
                return compare(value, threshold) if type(value) in PLAIN_NUMBERS else verdict(value)

            return compared
        return lambda facts: verdict(facts.metrics.get(metric))
    if "field" in tree:
        name = tree["field"]
        verdict = _verdicts(tree, lambda value: Facts(metrics={}, fields={name: value}))
        return lambda facts: verdict(facts.fields.get(name))
    if "cohort" in tree:  # `_leaf`'s verdict, without the sorted cohorts it explains the verdict with
        cohort = tree["cohort"]
        return lambda facts: cohort in facts.cohorts
    if "product" in tree:
        metric = product_metric(tree["product"])
        return lambda facts: bool(facts.metrics.get(metric))
    return lambda facts: condition_holds(tree, facts)


def _verdicts(tree: dict, alone: Callable[[Any], Facts]) -> Callable[[Any], bool]:
    """A leaf's verdict by its value, remembered for up to LEAF_CACHE values (keyed with the type too)."""
    seen: dict[tuple[type, Any], bool] = {}

    def verdict(value: Any) -> bool:
        key = (type(value), value)
        try:
            return seen[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: decide it directly
            return condition_holds(tree, alone(value))
        result = condition_holds(tree, alone(value))
        if len(seen) < LEAF_CACHE:
            seen[key] = result
        return result

    return verdict


def compile_explanation(definition: Cohort | Stage) -> Callable[[Facts], dict[str, Any]]:
    """`_why(definition, facts)`, remembered by the values the condition's leaves read.

    An explanation depends on those values alone, and most are small counts that many workspaces share, so
    a first pass (every cohort entered and every stage begun, each with its explanation) built the same
    trees again and again: 16 µs each, a seventh of its Python (py-spy). Values are keyed by `_value_key`,
    whose keys always hash. The result is shared: callers only serialise it.
    """
    readers = []
    for node in condition_nodes(definition.condition):
        if any(group in node for group in GROUPS):
            continue
        reader = _leaf_reader(node)
        if reader is None:  # a leaf this cannot key by its value: explain every time
            return lambda facts: _why(definition, facts)
        readers.append(reader)
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}

    def why(facts: Facts) -> dict[str, Any]:
        key = tuple(_value_key(read(facts)) for read in readers)
        found = seen.get(key)
        if found is None:
            found = _why(definition, facts)
            if len(seen) < EXPLANATION_CACHE:
                seen[key] = found
        return found

    return why


def _leaf_reader(node: dict[str, Any]) -> Callable[[Facts], Any] | None:
    """What a leaf's explanation reads of the facts (as `_leaf` reads it), or None for a leaf it does not know."""
    if "metric" in node:
        metric = node["metric"]
        return lambda facts: facts.metrics.get(metric)
    if "product" in node:
        metric = product_metric(node["product"])
        return lambda facts: facts.metrics.get(metric)
    if "cohort" in node:
        return lambda facts: facts.cohorts
    if "field" in node:
        name = node["field"]
        return lambda facts: facts.fields.get(name)
    return None


#: Types whose equal values are written alike (a set of cohort keys is written sorted).
_KEYED_BY_VALUE = frozenset({int, bool, str, type(None), frozenset})


def _value_key(value: Any) -> tuple[Any, ...]:
    """A value as a key that equals another only where both are explained alike: with its type (1, 1.0 and
    True are equal but written differently), a float by its exact bits (-0.0 is not 0.0), anything else
    (a Decimal: 0.1 and 0.10 are equal but written differently; a list or a mapping, which cannot hash) by its
    repr."""
    kind = type(value)
    if kind in _KEYED_BY_VALUE:
        return (kind, value)
    return (float, value.hex()) if kind is float else (kind, repr(value))


def _growing_leaves(tree: Any) -> list[tuple[str, str, float]]:
    return [
        (node["metric"], node["op"], float(node["value"]))
        for node in condition_nodes(tree)
        if str(node.get("metric", "")).startswith(GROWING_PREFIX)
    ]


# --- evaluation ---------------------------------------------------------------------------------------------


def behaviour_refresh(
    *,
    workspace_keys: Sequence[str],
    now: datetime | None = None,
    definitions: Definitions | None = None,
    workspaces: Sequence[Workspace] | None = None,
    records: Mapping[str, Mapping[str, Any]] | None = None,
    locked: bool = False,
) -> list[Change]:
    """Re-evaluate the profiles, cohorts and stages of these workspaces; write what changed; return it.

    Reads the metrics (one query per rollup table), the workspaces (unless the caller has them loaded:
    `workspaces`, or their WORKSPACE_COLUMNS as `records` by key), the open memberships and stage periods
    and the profiles in one query each, then writes the differences in bulk. `locked`: the caller's
    transaction holds the workspaces' locks already (the processing run), so none are taken here.
    """
    keys = sorted(set(workspace_keys))
    if not keys:
        return []
    now = now or timezone.now()
    definitions = definitions or Definitions.load()
    read = _read(keys, now, workspaces, records)
    with transaction.atomic():
        if not locked:
            workspace_locks_take(keys)  # one writer of a workspace's behaviour at a time
        return _apply(read, now, definitions)


@dataclass(frozen=True)
class _Read:
    """What a chunk's evaluation reads outside its transaction: the workspaces and their metrics."""

    keys: list[str]
    records: dict[str, Mapping[str, Any]]
    zones: dict[str, str]
    metrics: dict[str, dict[str, Any]]
    #: For the workspaces whose windows hold nothing: the first local day a row dated ahead enters them.
    ahead: dict[str, date] = field(default_factory=dict)
    #: The sweep's: each profile's evaluation time as it was before the metrics were read (see _evaluations).
    evaluations: dict[str, Any] = field(default_factory=dict)
    #: The sweep's: each workspace's verdict, decided by the reader (see _decide); else `_apply` decides.
    verdicts: dict[str, _Verdict] = field(default_factory=dict)

    def without(self, gone: set[str]) -> _Read:
        """This read less the workspaces in `gone`."""
        return replace(self, keys=[key for key in self.keys if key not in gone])


#: What an evaluation reads of a workspace (a caller that read these already passes them as `records`).
WORKSPACE_COLUMNS = ("workspace_id", "timezone", "trial_started_at", *FIELDS)


def _read(
    keys: list[str],
    now: datetime,
    workspaces: Sequence[Workspace] | None = None,
    records: Mapping[str, Mapping[str, Any]] | None = None,
) -> _Read:
    """The workspaces' lifecycle fields (unless the caller has them) and their profiles' metrics."""
    if records is not None:
        records = dict(records)
    elif workspaces is not None:
        records = {ws.workspace_id: {name: getattr(ws, name) for name in WORKSPACE_COLUMNS} for ws in workspaces}
    else:
        records = workspace_records(keys)
    zones = {key: (records.get(key) or {}).get("timezone") or "UTC" for key in keys}
    trials = {key: (records.get(key) or {}).get("trial_started_at") for key in keys}
    metrics = profiles_for(keys, now=now, zones=zones, trials=trials)
    # Only the workspaces with empty windows are probed for rows dated ahead: the others are due tomorrow anyway.
    empty = [key for key in keys if not windows_hold_data(metrics.get(key, {}))]
    ahead = data_ahead(empty, now=now, zones=zones) if empty else {}
    return _Read(keys, records, zones, metrics, ahead)


def workspace_records(keys: list[str]) -> dict[str, dict[str, Any]]:
    """These workspaces' WORKSPACE_COLUMNS by key. On PostgreSQL one plain statement, the trial's start as Unix
    seconds: the ORM's rows (a dict built per row, each timestamp parsed by Django's Python loader) were 15 %
    of a daily pass's Python (py-spy)."""
    if connection.vendor != "postgresql":
        rows = Workspace.objects.filter(_among("workspace_id", keys)).values(*WORKSPACE_COLUMNS)
        return {row["workspace_id"]: row for row in rows}
    qn = connection.ops.quote_name
    columns = ", ".join(
        f"EXTRACT(EPOCH FROM {qn(name)})::float8" if name == "trial_started_at" else qn(name)
        for name in WORKSPACE_COLUMNS
    )
    sql = (
        f"SELECT {columns} FROM {qn(Workspace._meta.db_table)} "  # noqa: S608 (names, not input)
        f"WHERE {qn('workspace_id')} = ANY({keys_array(len(keys))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [array_literal(keys)])
        rows = cursor.fetchall()
    records = {}
    for row in rows:
        record = dict(zip(WORKSPACE_COLUMNS, row, strict=True))
        if (trial := record["trial_started_at"]) is not None:
            record["trial_started_at"] = datetime.fromtimestamp(trial, UTC)
        records[record["workspace_id"]] = record
    return records


def _among(column: str, keys: list[str]) -> Q | RawSQL:
    """`column IN keys`; on PostgreSQL `= ANY` of one array literal (`keys_array`: many keys are planned
    without looking into them): hundreds of placeholders in a statement are parsed by psycopg for every
    batch (the statement is too long for its cache)."""
    if connection.vendor != "postgresql":
        return Q(**{f"{column}__in": keys})
    name = connection.ops.quote_name(column)
    array = keys_array(len(keys))
    return RawSQL(f"{name} = ANY({array})", (array_literal(keys),), output_field=BooleanField())  # noqa: S611


class _Verdict(NamedTuple):
    """One workspace's evaluation, decided from its read alone (no lock needed): `_apply` compares it with what
    is open and writes the differences."""

    facts: Facts  # without cohorts: what the cohort conditions saw
    staged: Facts  # with the cohorts it is in: what the stage conditions saw
    holds: tuple[bool, ...]  # each compiled cohort's verdict, in Definitions.compiled() order
    stage: Stage | None
    zone: str
    today: date
    due: datetime | None


def _decide(read: _Read, now: datetime, definitions: Definitions) -> dict[str, _Verdict]:
    """Every workspace's cohorts, stage, local day and next due time, from its metrics and lifecycle fields.

    Pure Python over the read, so the sweep decides a chunk in its reader threads while the main thread, the
    pass's critical path, writes the one before (alone, this showed no gain on a CPU-bound machine:
    docs/benchmarks.md).
    """
    cohort_checks, stage_checks = definitions.compiled()
    checks = [check for _, _, check in cohort_checks]
    # The cohorts a workspace is in, by its verdicts: a few combinations, each set built once a chunk.
    members_by_holds: dict[tuple[bool, ...], frozenset[str]] = {}
    local: dict[str, tuple[ZoneInfo, date]] = {}
    verdicts: dict[str, _Verdict] = {}
    for key in read.keys:
        record = read.records.get(key) or {}
        fields = {name: record.get(name) for name in FIELDS}
        metrics = read.metrics.get(key, {})
        facts = Facts(metrics=metrics, fields=fields)
        holds = tuple([check(facts) for check in checks])
        members = members_by_holds.get(holds)
        if members is None:
            members = members_by_holds[holds] = frozenset(
                cohort.key for (cohort, _, _), held in zip(cohort_checks, holds, strict=True) if held
            )
        staged = Facts(metrics=metrics, fields=fields, cohorts=members)
        stage = None
        for candidate, check in stage_checks:
            if check(staged):
                stage = candidate
                break
        zone_name = read.zones[key]
        if zone_name not in local:  # a few zones per batch: their day is computed once each
            zone = zone_named(zone_name)
            local[zone_name] = (zone, now.astimezone(zone).date())
        zone, today = local[zone_name]
        due = _next_due(today, zone, metrics, definitions, read.ahead.get(key))
        verdicts[key] = _Verdict(facts, staged, holds, stage, zone.key, today, due)
    return verdicts


def _apply(read: _Read, now: datetime, definitions: Definitions) -> list[Change]:
    """Compare every workspace's verdict (`read.verdicts`, else decided here) with its open memberships and
    stage period, and write the differences and the profiles. Runs under the workspaces' locks.

    Reads plain rows, not model instances (the open memberships and periods, a few columns each); the
    stored profiles are not read at all: the upsert keeps a profile's stage when nothing decides one.
    """
    keys = read.keys
    verdicts = read.verdicts or _decide(read, now, definitions)
    memberships = CohortMembership.objects.filter(_among("workspace_key", keys), exited_at__isnull=True)
    open_memberships = {
        (key, cohort): pk for pk, key, cohort in memberships.values_list("id", "workspace_key", "cohort_id")
    }
    periods = StagePeriod.objects.filter(_among("workspace_key", keys), exited_at__isnull=True)
    if connection.vendor == "postgresql":
        # Only written back (the profile's stage_since): as PostgreSQL's text, which its timestamptz cast reads
        # again, not parsed into a datetime by Django's Python loader (with the other timestamps the sweep
        # loaded, a tenth of a bulk pass's Python).
        periods = periods.annotate(since=Cast("entered_at", TextField()))
    else:
        periods = periods.annotate(since=F("entered_at"))
    open_periods = {
        key: (pk, stage, since)
        for pk, key, stage, since in periods.values_list("id", "workspace_key", "stage_id", "since")
    }
    stages = _stages_by_id(definitions, {stage for _, stage, _ in open_periods.values()})
    cohort_checks, _ = definitions.compiled()
    # Plain rows, not model instances (building those was a seventh of a first pass's Python).
    enter: list[list[Any]] = []  # _MEMBERSHIP_COLUMNS
    left_memberships: list[_Exit] = []
    left_periods: list[_Exit] = []
    begin: list[list[Any]] = []  # _PERIOD_COLUMNS
    profiles: list[list[Any]] = []
    changes: list[Change] = []
    for key in keys:
        verdict = verdicts[key]
        facts = verdict.facts
        entered, exited = [], []
        for (cohort, cohort_id, _), holds in zip(cohort_checks, verdict.holds, strict=True):
            row = open_memberships.get((key, cohort_id))
            if holds and row is None:
                entered.append(cohort.key)
                enter.append([key, now, None, cohort.version, None, definitions.why(cohort, facts), {}, cohort_id])
            elif not holds and row is not None:
                exited.append(cohort.key)
                left_memberships.append(_exit(row, now, definitions.why(cohort, facts), cohort))
        stage = verdict.stage
        period = open_periods.get(key)
        previous = stages[period[1]] if period is not None else None
        moved = stage is not None and (previous is None or previous.pk != stage.pk)
        if moved:
            if period is not None:
                left_periods.append(_exit(period[0], now, definitions.why(previous, verdict.staged), previous))
            previous_id = previous.pk if previous else None
            why = definitions.why(stage, verdict.staged)
            begin.append([key, now, None, stage.version, None, why, {}, stage.pk, previous_id])
        # None for both when nothing decides a stage: the upsert keeps the stored ones.
        current, since = (stage, now) if moved else (previous, period[2]) if period is not None else (None, None)
        profiles.append(
            [key, facts.metrics, verdict.zone, verdict.today, current.pk if current else None, since, now, verdict.due]
        )
        if entered or exited or moved:
            changes.append(
                Change(
                    workspace_key=key,
                    entered=tuple(entered),
                    exited=tuple(exited),
                    stage_from=previous.key if previous else None,
                    stage_to=stage.key if stage else (previous.key if previous else None),
                )
            )
    _write(enter, left_memberships, left_periods, begin, profiles)
    return changes


def _stages_by_id(definitions: Definitions, ids: set[int]) -> dict[int, Stage]:
    """The enabled stages, and any other (a disabled stage a workspace is still in) these periods name."""
    stages = {stage.pk: stage for stage in definitions.stages}
    missing = ids - stages.keys()
    if missing:
        stages.update(Stage.objects.in_bulk(missing))
    return stages


class _Exit(NamedTuple):
    """An open membership or period (its id) closed: the exit columns `_exits_update` writes."""

    pk: int
    exited_at: datetime
    exited_version: int
    exited_why: dict[str, Any]


def _exit(pk: int, now: datetime, why: dict[str, Any], definition: Cohort | Stage) -> _Exit:
    """An open membership or period closed now, with the evaluation that took it out (`why`)."""
    return _Exit(pk, now, definition.version, why)


def _why(definition: Cohort | Stage, facts: Facts) -> dict[str, Any]:
    """What a page shows: the definition's version and every condition with the value it was decided on."""
    return {
        "key": definition.key,
        "version": definition.version,
        "condition": condition_explain(definition.condition, facts),
    }


def _next_due(
    today: date, zone: ZoneInfo, metrics: dict[str, Any], definitions: Definitions, ahead: date | None = None
) -> datetime | None:
    """The next local midnight at which time alone can change this profile's verdicts, or None.

    Windows move every midnight while they hold rows (`windows_hold_data`: usage within the last 30 days, a
    ticket within the last 74, plan-limit hits within 30); empty, they change only when a row already stored
    with a later date (`ahead`: the first such local day) comes into them. A threshold on a growing metric
    ("days since last active >= 14") is crossed on a day known in advance. A workspace with every window
    empty, nothing dated ahead and every such threshold behind it is not visited again until an event
    arrives (bench/behaviour.py: a fifth of the workspaces a daily pass used to visit for nothing).
    """
    days: list[int] = []
    if windows_hold_data(metrics):
        days.append(1)
    elif ahead is not None:
        days.append((ahead - today).days)
    for name, op, value in definitions.growing:
        current = metrics.get(name)
        if current is None:
            continue
        target = math.floor(value) + 1 if op == ">" else math.ceil(value)  # the first day the >=/> holds
        if op in (">=", ">") and current < target:
            days.append(target - current)
        elif op in ("<", "<=", "==", "!=") and current <= value + 1:
            days.append(1)  # it may flip tomorrow: look again then
    if not days:
        return None
    due = datetime.combine(today + timedelta(days=max(1, min(days))), time(0), tzinfo=zone)
    return due


def _write(
    enter: list[list[Any]],
    left_memberships: list[_Exit],
    left_periods: list[_Exit],
    begin: list[list[Any]],
    profiles: list[list[Any]],
) -> None:
    """Exits first (the one-open-row constraints), then entries, then the profiles: a few statements."""
    _exits_update(CohortMembership, left_memberships)
    _exits_update(StagePeriod, left_periods)
    _insert(CohortMembership, _MEMBERSHIP_COLUMNS, enter)
    _insert(StagePeriod, _PERIOD_COLUMNS, begin)
    _profiles_upsert(profiles)


_EXIT_FIELDS = ("exited_at", "exited_version", "exited_why")


def _exits_update(model: Any, rows: list[_Exit]) -> None:
    """Close these memberships or periods (their ids and exit columns) in one UPDATE on PostgreSQL.

    Django's bulk_update builds one CASE WHEN id = … per column over every row, and resolving those
    expressions was a fifth of a rollup batch's time; here the rows travel as one JSON parameter, taken
    apart by the server as `_insert` does. SQLite keeps bulk_update (a laptop's few rows).
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update([model(**row._asdict()) for row in rows], list(_EXIT_FIELDS))
        return
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    sql = (
        f"UPDATE {table} SET {qn('exited_at')} = (r.e ->> 1)::timestamptz, "  # noqa: S608 (names, not input)
        f"{qn('exited_version')} = (r.e ->> 2)::integer, {qn('exited_why')} = r.e -> 3 "
        f"FROM jsonb_array_elements(%s::jsonb) AS r (e) WHERE {table}.{qn('id')} = (r.e ->> 0)::bigint"
    )
    payload = [[row.pk, row.exited_at, row.exited_version, row.exited_why] for row in sorted(rows, key=_pk)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [_json(payload)])


def _pk(row: _Exit) -> int:
    return row.pk


_PERIOD_BASE = ("workspace_key", "entered_at", "exited_at", "entered_version", "exited_version", "entered_why",
                "exited_why")  # fmt: skip
_MEMBERSHIP_COLUMNS = (*_PERIOD_BASE, "cohort_id")
_PERIOD_COLUMNS = (*_PERIOD_BASE, "stage_id", "previous_id")
_PROFILE_COLUMNS = ("workspace_key", "metrics", "timezone", "day", "stage_id", "stage_since", "evaluated_at",
                    "next_due_at")  # fmt: skip


def _profiles_upsert(rows: list[list[Any]]) -> None:
    """Every profile in one INSERT … ON CONFLICT (workspace_key) DO UPDATE (Django's bulk_update builds one
    CASE per column over every row and was most of a bulk pass's time). A row without a stage (nothing
    decided one and no period is open) keeps the stored stage and its time."""
    if not rows:
        return
    qn = connection.ops.quote_name
    table = qn(Profile._meta.db_table)
    updates = [f"{qn(c)} = excluded.{qn(c)}" for c in _PROFILE_COLUMNS[1:] if c not in ("stage_id", "stage_since")]
    stage, since = qn("stage_id"), qn("stage_since")
    updates += [
        f"{stage} = COALESCE(excluded.{stage}, {table}.{stage})",
        f"{since} = CASE WHEN excluded.{stage} IS NULL THEN {table}.{since} ELSE excluded.{since} END",
    ]
    conflict = f" ON CONFLICT ({qn('workspace_key')}) DO UPDATE SET {', '.join(updates)}"
    _insert(Profile, _PROFILE_COLUMNS, sorted(rows, key=lambda row: row[0]), suffix=conflict)  # one lock order


def _insert(model: Any, columns: tuple[str, ...], rows: list[list[Any]], *, suffix: str = "") -> None:
    """Insert rows (Python values in `columns` order) in one statement on PostgreSQL, `suffix` appended.

    On PostgreSQL the rows travel as one JSON array of arrays, serialised by orjson (`_json`) and taken
    apart by the server (`jsonb_array_elements`, each column cast to its type): one parameter whatever
    the number of rows. A VALUES list had thousands of placeholders that psycopg rewrote for every
    statement, and text arrays had every quote of the JSON columns escaped by a regular expression.
    SQLite takes multi-row VALUES in batches its parameter limit allows.
    """
    if not rows:
        return
    fields = [model._meta.get_field(column) for column in columns]
    if connection.vendor != "postgresql":
        prepared = [[_db_value(f, value) for f, value in zip(fields, row, strict=True)] for row in rows]
        execute_batches(lambda count: insert_sql(model, columns, count) + suffix, prepared, model, columns)
        return
    qn = connection.ops.quote_name
    values = ", ".join(
        f"r.e -> {n}" if f.db_type(connection) == "jsonb" else f"(r.e ->> {n})::{f.db_type(connection)}"
        for n, f in enumerate(fields)
    )
    sql = (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608 (names)
        f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r (e){suffix}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_json(rows)])


def _json(value: Any) -> str:
    """JSON text of rows for a jsonb parameter. orjson writes dates, times and floats in C; json.dumps took
    a sixth of a bulk pass's Python, a callback per date included."""
    return orjson.dumps(value, default=_unserialisable).decode()


def _unserialisable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _db_value(model_field: Any, value: Any) -> Any:
    return model_field.get_db_prep_save(value, connection)


# --- time passing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    visited: int
    changed: int


def behaviour_sweep(
    *,
    now: datetime | None = None,
    limit: int | None = None,
    on_changes: Callable[[list[Change]], None] | None = None,
) -> SweepResult:
    """Re-evaluate every profile that is due (its windows moved), a chunk a transaction; workspaces never
    evaluated (created before behaviour existed) are evaluated once too. `on_changes` sees each chunk's
    changes inside its transaction (the caller hands stage changes on to Salesforce)."""
    now = now or timezone.now()
    definitions = Definitions.load()
    definitions.compiled()  # once, before the threads share it
    visited = changed = 0
    for read in _reads_ahead(now, limit, definitions):
        chunk_visited, chunk_changed = _sweep_write(read, now, definitions, on_changes)
        visited += chunk_visited
        changed += chunk_changed
    return SweepResult(visited, changed)


def _sweep_write(
    read: _Read, now: datetime, definitions: Definitions, on_changes: Callable[[list[Change]], None] | None
) -> tuple[int, int]:
    """One chunk's transaction: its locks, then its writes; (workspaces visited, changes)."""
    with transaction.atomic():
        workspace_locks_take(read.keys)  # before reading what is open: a rollup or a run may be at them
        # A workspace evaluated since its metrics were read (a usage batch's refresh, under these locks)
        # is current already: writing what was read would put older metrics back and could flap its
        # cohorts (out on the old values, in again on the next event).
        evaluated = _evaluations(read.keys)
        read = read.without({key for key in read.keys if evaluated.get(key) != read.evaluations.get(key)})
        changes = _apply(read, now, definitions)
        if on_changes is not None:
            on_changes(changes)
    return len(read.keys), len(changes)


def _reads_ahead(now: datetime, limit: int | None, definitions: Definitions) -> Iterator[_Read]:
    """Each due chunk's reads, the next chunks' taken meanwhile by SWEEP_READERS threads on their own connections.

    The reads (mostly PostgreSQL's aggregates) with the verdicts decided from them, and the writes under the
    locks, then overlap instead of taking turns; two readers, each on its own backend, keep the writer fed.
    A reader is one chunk ahead at most, so memory stays flat. Chunks may come out of key order: each is its
    own transaction over its own workspaces. In a caller's transaction (a test's, or one
    that must see its own uncommitted rows) or on SQLite they run in turn on this connection.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        for chunk in _due_chunks(now, limit):
            yield _sweep_read(chunk, now, definitions)
        return
    ready: queue.Queue[_Read | BaseException | None] = queue.Queue(maxsize=SWEEP_READERS)
    stop = threading.Event()
    chunks = _due_chunks(now, limit)
    taking = threading.Lock()  # one reader at a time advances the chunks (on its own connection)

    def produce() -> None:
        try:
            while not stop.is_set():
                with taking:
                    chunk = next(chunks, None)
                if chunk is None or not _offer(ready, _sweep_read(chunk, now, definitions), stop):
                    break
            _offer(ready, None, stop)
        except BaseException as exc:  # handed to the consumer, which raises it
            _offer(ready, exc, stop)
        finally:
            db_connections.close_all()  # this thread's connection

    workers = [
        threading.Thread(target=produce, name=f"behaviour-sweep-reads-{n}", daemon=True) for n in range(SWEEP_READERS)
    ]
    for worker in workers:
        worker.start()
    try:
        running = len(workers)
        while running:
            item = ready.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for worker in workers:
            worker.join()


def _sweep_read(keys: list[str], now: datetime, definitions: Definitions) -> _Read:
    """A sweep chunk's read: first the profiles' evaluation times, then everything `_read` reads, then the
    verdicts decided from it."""
    evaluations = _evaluations(keys)
    read = replace(_read(keys, now), evaluations=evaluations)
    return replace(read, verdicts=_decide(read, now, definitions))


def _evaluations(keys: list[str]) -> dict[str, str]:
    """{workspace key: its profile's evaluated_at as the database's text} (only compared, never parsed)."""
    profiles = Profile.objects.filter(_among("workspace_key", keys))
    return dict(profiles.annotate(at=Cast("evaluated_at", TextField())).values_list("workspace_key", "at"))


def _offer(ready: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put `item` once there is room; False when the consumer has stopped."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _due_chunks(now: datetime, limit: int | None) -> Iterable[list[str]]:
    remaining = limit if limit is not None else math.inf
    last = ""
    while remaining > 0:
        due = Profile.objects.filter(next_due_at__lte=now, workspace_key__gt=last).order_by("workspace_key")
        chunk = list(due.values_list("workspace_key", flat=True)[: int(min(SWEEP_CHUNK, remaining))])
        if not chunk:
            break
        yield chunk
        remaining -= len(chunk)
        last = chunk[-1]
    # Workspaces never evaluated: the next SWEEP_CHUNK workspaces in key order, each with an index probe for
    # its profile (a scalar sub-select, evaluated only for the rows the LIMIT lets through), the ones without
    # kept. PostgreSQL turned NOT EXISTS into a hash anti-join over the whole profile table for every chunk,
    # which a first pass grows by a chunk each time (44 ms a chunk at 100,000 workspaces, 4.4 s of the pass);
    # the same query without a window was costed past the JIT threshold (70 ms of compiling a chunk).
    profile = Profile.objects.filter(workspace_key=OuterRef("workspace_id")).values("pk")[:1]
    last, pending = "", []
    while remaining > 0:
        window = (
            Workspace.objects.filter(workspace_id__gt=last)
            .order_by("workspace_id")
            .annotate(profile=Subquery(profile))
            .values_list("workspace_id", "profile")[:SWEEP_CHUNK]
        )
        rows = list(window)
        pending += [key for key, evaluated in rows if evaluated is None]
        last = rows[-1][0] if rows else last
        size = int(min(SWEEP_CHUNK, remaining))
        if len(pending) >= size or (pending and not rows):  # a full chunk, or the last one
            chunk, pending = pending[:size], pending[size:]
            yield chunk
            remaining -= len(chunk)
        elif not rows:
            break
