"""Profiles, cohorts and stages re-evaluated for workspaces, with their history, in the caller's transaction.

`behaviour_refresh` is called where usage or lifecycle state changed (the rollup batch, the processing
run), once per workspace per batch, in the same transaction as the change, so cohorts never lag the
events. `behaviour_sweep` handles what time alone changes (a window moving past the last active day, a
"silent for 14 days" threshold crossed): each profile carries the moment its windows can next change
(`next_due_at`), and the sweep visits only profiles that are due.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from usage.conditions import FIELDS, Facts, condition_explain, condition_holds, condition_nodes
from usage.metrics import METRICS, profiles_for, zone_named
from usage.metrics_rollups import execute_batches, insert_sql
from usage.models import Cohort, CohortMembership, Profile, Stage, StagePeriod
from workspaces.models import Workspace

#: Metrics that grow by one a day while nothing happens: a threshold on them is crossed on a known day.
GROWING_PREFIX = "days_since_"
SWEEP_CHUNK = 500


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
    """The enabled cohorts and stages, read once per batch."""

    cohorts: list[Cohort]
    stages: list[Stage]
    growing: list[tuple[str, str, float]] = field(default_factory=list)  # (metric, op, value) on growing metrics

    @classmethod
    def load(cls) -> Definitions:
        cohorts = list(Cohort.objects.filter(enabled=True).order_by("key"))
        stages = list(Stage.objects.filter(enabled=True).order_by("order", "key"))
        growing = []
        for definition in [*cohorts, *stages]:
            growing += _growing_leaves(definition.condition)
        return cls(cohorts, stages, growing)


def _growing_leaves(tree: Any) -> list[tuple[str, str, float]]:
    return [
        (node["metric"], node["op"], float(node["value"]))
        for node in condition_nodes(tree)
        if str(node.get("metric", "")).startswith(GROWING_PREFIX)
    ]


def _max_window_days() -> int:
    return max((metric.window_days or 0 for metric in METRICS.values()), default=90)


# --- evaluation ---------------------------------------------------------------------------------------------


def behaviour_refresh(
    *,
    workspace_keys: Sequence[str],
    now: datetime | None = None,
    definitions: Definitions | None = None,
    workspaces: Sequence[Workspace] | None = None,
) -> list[Change]:
    """Re-evaluate the profiles, cohorts and stages of these workspaces; write what changed; return it.

    Reads the metrics (one query per rollup table), the workspaces (unless the caller has them loaded:
    `workspaces`), the open memberships and stage periods and the profiles in one query each, then writes
    the differences in bulk.
    """
    keys = sorted(set(workspace_keys))
    if not keys:
        return []
    now = now or timezone.now()
    definitions = definitions or Definitions.load()
    columns = ("workspace_id", "timezone", "trial_started_at", *FIELDS)
    if workspaces is not None:
        records = {ws.workspace_id: {name: getattr(ws, name) for name in columns} for ws in workspaces}
    else:
        records = {row["workspace_id"]: row for row in Workspace.objects.filter(workspace_id__in=keys).values(*columns)}
    zones = {key: (records.get(key) or {}).get("timezone") or "UTC" for key in keys}
    trials = {key: (records.get(key) or {}).get("trial_started_at") for key in keys}
    metrics = profiles_for(keys, now=now, zones=zones, trials=trials)
    with transaction.atomic():
        return _apply(keys, now, definitions, records, zones, metrics)


def _apply(
    keys: list[str],
    now: datetime,
    definitions: Definitions,
    records: dict[str, dict[str, Any]],
    zones: dict[str, str],
    metrics: dict[str, dict[str, Any]],
) -> list[Change]:
    # Only the columns the comparison needs: the stored explanations and metrics (JSON) are not decoded.
    memberships = CohortMembership.objects.filter(workspace_key__in=keys, exited_at__isnull=True)
    open_memberships: dict[tuple[str, int], CohortMembership] = {
        (row.workspace_key, row.cohort_id): row for row in memberships.only("id", "workspace_key", "cohort_id")
    }
    periods = StagePeriod.objects.filter(workspace_key__in=keys, exited_at__isnull=True).select_related("stage")
    open_periods = {row.workspace_key: row for row in periods.defer("entered_why", "exited_why")}
    profiles = {
        row.workspace_key: row
        for row in Profile.objects.filter(workspace_key__in=keys).only("id", "workspace_key", "stage_id", "stage_since")
    }
    enter: list[CohortMembership] = []
    leave: list[CohortMembership | StagePeriod] = []
    begin: list[StagePeriod] = []
    changes: list[Change] = []
    for key in keys:
        fields = {name: (records.get(key) or {}).get(name) for name in FIELDS}
        facts = Facts(metrics=metrics.get(key, {}), fields=fields)
        entered, exited, members = [], [], set()
        for cohort in definitions.cohorts:
            holds = condition_holds(cohort.condition, facts)
            row = open_memberships.get((key, cohort.pk))
            if holds:
                members.add(cohort.key)
            if holds and row is None:
                entered.append(cohort.key)
                enter.append(
                    CohortMembership(
                        workspace_key=key,
                        cohort=cohort,
                        entered_at=now,
                        entered_version=cohort.version,
                        entered_why=_why(cohort, facts),
                    )
                )
            elif not holds and row is not None:
                exited.append(cohort.key)
                row.exited_at, row.exited_version, row.exited_why = now, cohort.version, _why(cohort, facts)
                leave.append(row)
        facts = Facts(metrics=facts.metrics, fields=fields, cohorts=frozenset(members))
        stage = next((stage for stage in definitions.stages if condition_holds(stage.condition, facts)), None)
        period = open_periods.get(key)
        previous = period.stage if period is not None else None
        if stage is not None and (previous is None or previous.pk != stage.pk):
            if period is not None:
                period.exited_at, period.exited_version, period.exited_why = (
                    now,
                    previous.version,
                    _why(previous, facts),
                )
                leave.append(period)
            begin.append(
                StagePeriod(
                    workspace_key=key,
                    stage=stage,
                    previous=previous,
                    entered_at=now,
                    entered_version=stage.version,
                    entered_why=_why(stage, facts),
                )
            )
        profile = profiles.get(key) or Profile(workspace_key=key)
        _profile_set(profile, facts.metrics, zones[key], now, definitions)
        if stage is not None and (previous is None or previous.pk != stage.pk):
            profile.stage, profile.stage_since = stage, now
        elif period is not None:
            profile.stage, profile.stage_since = previous, period.entered_at
        profiles[key] = profile
        if entered or exited or (stage is not None and stage != previous):
            changes.append(
                Change(
                    workspace_key=key,
                    entered=tuple(entered),
                    exited=tuple(exited),
                    stage_from=previous.key if previous else None,
                    stage_to=stage.key if stage else (previous.key if previous else None),
                )
            )
    _write(enter, leave, begin, list(profiles.values()))
    return changes


def _why(definition: Cohort | Stage, facts: Facts) -> dict[str, Any]:
    """What a page shows: the definition's version and every condition with the value it was decided on."""
    return {
        "key": definition.key,
        "version": definition.version,
        "condition": condition_explain(definition.condition, facts),
    }


def _profile_set(
    profile: Profile, metrics: dict[str, Any], zone_name: str, now: datetime, definitions: Definitions
) -> None:
    zone = zone_named(zone_name)
    today = now.astimezone(zone).date()
    profile.metrics, profile.timezone, profile.day, profile.evaluated_at = metrics, zone.key, today, now
    profile.next_due_at = _next_due(today, zone, metrics, definitions)


def _next_due(today: date, zone: ZoneInfo, metrics: dict[str, Any], definitions: Definitions) -> datetime | None:
    """The next local midnight at which time alone can change this profile's verdicts, or None.

    Windows move every midnight while the workspace was active within the longest window; a threshold on
    a growing metric ("days since last active >= 14") is crossed on a day known in advance. A workspace
    silent for longer than every window, with every such threshold behind it, is not visited again until
    an event arrives.
    """
    days: list[int] = []
    since_active = metrics.get("days_since_last_active")
    if since_active is None or since_active <= _max_window_days():
        days.append(1)
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
    enter: list[CohortMembership],
    leave: list[CohortMembership | StagePeriod],
    begin: list[StagePeriod],
    profiles: list[Profile],
) -> None:
    """Exits first (the one-open-row constraints), then entries, then the profiles: a few statements."""
    left_memberships = [row for row in leave if isinstance(row, CohortMembership)]
    left_periods = [row for row in leave if isinstance(row, StagePeriod)]
    exit_fields = ["exited_at", "exited_version", "exited_why"]
    if left_memberships:
        CohortMembership.objects.bulk_update(left_memberships, exit_fields)
    if left_periods:
        StagePeriod.objects.bulk_update(left_periods, exit_fields)
    CohortMembership.objects.bulk_create(enter)
    StagePeriod.objects.bulk_create(begin)
    _profiles_upsert(profiles)


_PROFILE_COLUMNS = ("workspace_key", "metrics", "timezone", "day", "stage_id", "stage_since", "evaluated_at",
                    "next_due_at")  # fmt: skip


def _profiles_upsert(profiles: list[Profile]) -> None:
    """Every profile in one multi-row INSERT … ON CONFLICT (workspace_key) DO UPDATE (per batch SQLite's
    parameter limit allows): Django's bulk_update builds one CASE per column over every row and was most
    of a bulk pass's time."""
    if not profiles:
        return
    ops = connection.ops
    metrics = Profile._meta.get_field("metrics")
    rows = [
        [
            profile.workspace_key,
            metrics.get_db_prep_save(profile.metrics, connection),
            profile.timezone,
            ops.adapt_datefield_value(profile.day),
            profile.stage_id,
            ops.adapt_datetimefield_value(profile.stage_since),
            ops.adapt_datetimefield_value(profile.evaluated_at),
            ops.adapt_datetimefield_value(profile.next_due_at),
        ]
        for profile in sorted(profiles, key=lambda profile: profile.workspace_key)  # one lock order
    ]
    qn = ops.quote_name
    updates = ", ".join(f"{qn(column)} = excluded.{qn(column)}" for column in _PROFILE_COLUMNS[1:])
    conflict = f" ON CONFLICT ({qn('workspace_key')}) DO UPDATE SET {updates}"
    execute_batches(lambda count: insert_sql(Profile, _PROFILE_COLUMNS, count) + conflict, rows, Profile,
                    _PROFILE_COLUMNS)  # fmt: skip


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
    visited = changed = 0
    for chunk in _due_chunks(now, limit):
        with transaction.atomic():
            changes = behaviour_refresh(workspace_keys=chunk, now=now, definitions=definitions)
            if on_changes is not None:
                on_changes(changes)
        visited += len(chunk)
        changed += len(changes)
    return SweepResult(visited, changed)


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
    last = ""
    while remaining > 0:
        never = (
            Workspace.objects.filter(workspace_id__gt=last)
            # NOT EXISTS: an index probe per workspace, not the whole profile table hashed for every chunk
            .filter(~Exists(Profile.objects.filter(workspace_key=OuterRef("workspace_id"))))
            .order_by("workspace_id")
        )
        chunk = list(never.values_list("workspace_id", flat=True)[: int(min(SWEEP_CHUNK, remaining))])
        if not chunk:
            break
        yield chunk
        remaining -= len(chunk)
        last = chunk[-1]
