"""The trigger engine's entry points: evaluate a workspace's new events and behaviour changes, save a
trigger (validated, versioned); the actions a firing plans become dispatches (`triggers.deliveries`).

`triggers_evaluate_many` is called by the processing run inside its transaction and under its workspaces'
locks, with the events the run applied and the cohort and stage changes `behaviour_refresh` returned, and
by `triggers.tasks.evaluate_workspaces` for what the usage rollup and the behaviour sweep changed. It
settles goals the new events reach, keeps the timers (stall, silence, date) in step with the events, and
decides every instant occurrence once (`triggers.decide`), the candidates of all the workspaces together.
Timers fire from `timers_fire_due`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from events.models import Event
from events.schemas import ROLLED_UP_TYPES
from triggers.audience import AUDIENCE_RELATED
from triggers.decide import Candidate, firings_decide
from triggers.deliveries import PlannedAction, firing_planned_actions
from triggers.models import Firing, Trigger
from triggers.spec import ACTIVITY
from triggers.timers import goals_reached
from triggers.when import OWN_PASS, WHEN, Context, Seen, TimerWrites, date_timers_set
from usage.models import CohortMembership, StagePeriod
from usage.services import Change
from workspaces.lifecycle import LIFECYCLE_TYPES
from workspaces.models import Workspace

__all__ = [
    "Interest", "PlannedAction", "date_timers_sync", "firing_planned_actions", "trigger_save", "triggers_enabled",
    "triggers_evaluate", "triggers_evaluate_many", "triggers_interest",
]  # fmt: skip

#: The enabled triggers are cached (one cache read per processing run instead of one query): a saved
#: trigger clears the entry at once and after its commit; other processes with a per-process cache see
#: the change within ENABLED_CACHE_SECONDS (a shared cache, such as Redis, at once).
ENABLED_CACHE_KEY = "triggers:enabled"
ENABLED_CACHE_SECONDS = 30


def triggers_enabled() -> list[Trigger]:
    """The enabled triggers, from the cache when it holds them: the processing run's one check, so a run
    with none enabled costs one cache read and no query per workspace. Kinds an app decides in a pass of
    its own (`triggers.when.OWN_PASS`: the rep alerts) are left out."""
    return [trigger for trigger in _enabled_cached() if trigger.when.get("kind") not in OWN_PASS]


def triggers_enabled_of(kind: str) -> list[Trigger]:
    """The enabled triggers of one kind, from the same cache (the rep alerts' pass reads its own this way)."""
    return [trigger for trigger in _enabled_cached() if trigger.when.get("kind") == kind]


def _enabled_cached() -> list[Trigger]:
    enabled = cache.get(ENABLED_CACHE_KEY)
    if enabled is None:
        enabled = list(Trigger.objects.filter(enabled=True))
        cache.set(ENABLED_CACHE_KEY, enabled, ENABLED_CACHE_SECONDS)
    return enabled


def triggers_enabled_forget() -> None:
    """Drop the cached list now and again after the commit (a reader between the two would cache the old rows)."""
    cache.delete(ENABLED_CACHE_KEY)
    transaction.on_commit(lambda: cache.delete(ENABLED_CACHE_KEY))


def triggers_evaluate(
    *,
    workspace_key: str,
    new_events: Iterable[Event],
    behaviour_changes: Sequence[Change] = (),
    now: datetime | None = None,
    triggers: Sequence[Trigger] | None = None,
    workspace: Workspace | None = None,
) -> list[Firing]:
    """Evaluate the enabled triggers for one workspace; return the firings this call created.

    Safe to repeat: a replay of the same events names the same occurrences, and each is decided once.
    `workspace`: the workspace, when the caller has it loaded (else it is read).
    """
    loaded = {workspace_key: workspace} if workspace is not None and workspace.workspace_id == workspace_key else {}
    return triggers_evaluate_many(
        new_events={workspace_key: list(new_events)}, behaviour_changes=behaviour_changes, now=now,
        triggers=triggers, workspaces=loaded,
    )  # fmt: skip


def triggers_evaluate_many(
    *,
    new_events: Mapping[str, Iterable[Event]],
    behaviour_changes: Sequence[Change] = (),
    now: datetime | None = None,
    triggers: Sequence[Trigger] | None = None,
    workspaces: Mapping[str, Workspace] | None = None,
) -> list[Firing]:
    """Evaluate the enabled triggers for the workspaces with new events or behaviour changes; return the
    firings this call created. Their candidates are decided together (`firings_decide`): one read of what
    was decided already, one lock of the caps involved, one insert of the firings and of their dispatches
    for all of them, instead of each for each (bench/triggers_processing.py).

    `workspaces`: those the caller has loaded (the others are read, in one query). Safe to repeat.
    """
    now = now or timezone.now()
    if triggers is None:
        triggers = [trigger for trigger in Trigger.objects.filter(enabled=True) if trigger.when["kind"] not in OWN_PASS]
    triggers = list(triggers)
    keys = sorted(set(new_events) | {change.workspace_key for change in behaviour_changes})
    if not keys or not triggers:
        return []
    loaded = _workspaces_read(keys, workspaces or {})
    if waited := _waited_for_first_run(keys, new_events, triggers):
        held, synthesized = waited
        new_events = {key: [*new_events.get(key, ()), *held.get(key, ())] for key in keys}
        behaviour_changes = [*behaviour_changes, *synthesized]
    follow_ups = any(trigger.follow_up for trigger in triggers)
    dated = [trigger for trigger in triggers if trigger.when["kind"] == "date"]
    instant = [trigger for trigger in triggers if trigger.when["kind"] != "date"]
    periods = _stage_periods(instant, behaviour_changes)
    with transaction.atomic():
        for trigger in dated:  # the workspaces' date timers kept in step together (one read, one insert)
            date_timers_set(trigger, [loaded[key] for key in keys if key in loaded], now)
        candidates: list[Candidate] = []
        timers = TimerWrites()  # stall and silence timers: written together below
        reads = [(trigger, triggers_interest([trigger])) for trigger in instant]
        for key in keys:
            context = _context(key, new_events.get(key, ()), behaviour_changes, loaded.get(key), now, periods, timers)
            if follow_ups:  # else the follow-up sweep's late check settles them
                goals_reached(key, list(context.events), now)
            types = {event.type for event in context.events}
            for trigger, interest in reads:  # the triggers that read what it has (all of a kind not taught here)
                if interest.types is None or (interest.changes and context.changes) or types & interest.types:
                    candidates += WHEN[trigger.when["kind"]](trigger, context)
        timers.flush()
        return firings_decide(candidates, workspaces=loaded, now=now)


def _context(
    key: str,
    new_events: Iterable[Event],
    changes: Sequence[Change],
    workspace: Workspace | None,
    now: datetime,
    stage_periods: Mapping[str, StagePeriod] | None = None,
    timers: TimerWrites | None = None,
) -> Context:
    events = sorted(
        (Seen.of(event) for event in new_events if event.workspace_key == key and not event.suppressed),
        key=lambda seen: (seen.at, seen.id),
    )
    mine = [change for change in changes if change.workspace_key == key]
    return Context(key, workspace, events, mine, now, stage_periods=stage_periods, timers=timers)


def _waited_for_first_run(
    keys: Sequence[str], new_events: Mapping[str, Iterable[Event]], triggers: Sequence[Trigger]
) -> tuple[dict[str, list[Event]], list[Change]] | None:
    """What waited for a workspace's first lifecycle run. The usage hook decides nothing for a workspace the
    engine does not know yet (`triggers.tasks`: usage can arrive before its trial.started is processed), so
    the run that creates the workspace evaluates the telemetry rolled up meanwhile, and the cohorts and the
    stage it is in as if just entered (deciding again what was decided adds nothing). None when no workspace
    of this run is folded for the first time (one query: which have a completed lifecycle event)."""
    lifecycle = [key for key in keys if any(event.type in LIFECYCLE_TYPES for event in new_events.get(key, ()))]
    if not lifecycle:
        return None
    folded = Event.objects.filter(workspace_key__in=lifecycle, type__in=LIFECYCLE_TYPES, status=Event.Status.COMPLETED)
    first = sorted(set(lifecycle) - set(folded.order_by().values_list("workspace_key", flat=True).distinct()))
    if not first:
        return None
    rolled_up = Event.objects.filter(workspace_key__in=first, type__in=ROLLED_UP_TYPES, status=Event.Status.COMPLETED)
    first = sorted(set(rolled_up.order_by().values_list("workspace_key", flat=True).distinct()))
    if not first:  # no telemetry came before these workspaces: nothing waited (their cohorts and stage are new)
        return None
    interest = triggers_interest(triggers)
    held: dict[str, list[Event]] = {}
    if types := [event_type for event_type in ROLLED_UP_TYPES if interest.wants(event_type)]:
        for event in rolled_up.filter(type__in=types, workspace_key__in=first):
            held.setdefault(event.workspace_key, []).append(event)
    if not interest.changes:
        return held, []
    entered: dict[str, list[str]] = {}
    memberships = CohortMembership.objects.filter(workspace_key__in=first, exited_at__isnull=True)
    for key, cohort in memberships.values_list("workspace_key", "cohort__key"):
        entered.setdefault(key, []).append(cohort)
    periods = StagePeriod.objects.filter(workspace_key__in=first, exited_at__isnull=True).select_related(
        "stage", "previous"
    )
    stages = {period.workspace_key: period for period in periods}
    synthesized = [
        Change(key, entered=tuple(sorted(entered.get(key, ()))),
               stage_from=stages[key].previous.key if key in stages and stages[key].previous else None,
               stage_to=stages[key].stage.key if key in stages else None)
        for key in first
    ]  # fmt: skip
    return held, synthesized


def _stage_periods(triggers: Sequence[Trigger], changes: Sequence[Change]) -> dict[str, StagePeriod] | None:
    """The open stage periods of the workspaces whose stage changed, in one query, when a stage trigger will
    read them (None: no stage trigger)."""
    if not any(trigger.when["kind"] == "stage" for trigger in triggers):
        return None
    keys = sorted({change.workspace_key for change in changes if change.stage_changed})
    rows = StagePeriod.objects.filter(workspace_key__in=keys, exited_at__isnull=True) if keys else []
    return {period.workspace_key: period for period in rows}


def _workspaces_read(keys: Sequence[str], loaded: Mapping[str, Workspace]) -> dict[str, Workspace]:
    """The workspaces by key: the caller's, the others read together (with what the audiences read)."""
    found = {key: workspace for key, workspace in loaded.items() if workspace is not None and key in keys}
    if missing := [key for key in keys if key not in found]:
        rows = Workspace.objects.select_related(*AUDIENCE_RELATED).filter(workspace_id__in=missing)
        found.update((workspace.workspace_id, workspace) for workspace in rows)
    return found


@dataclass(frozen=True)
class Interest:
    """What the enabled triggers read of a batch of new events: the event types (None: any) and whether
    cohort and stage changes; the rollup's hook enqueues an evaluation only for that."""

    types: frozenset[str] | None
    changes: bool

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types


#: The kinds that read cohort and stage changes; a date trigger reads the workspace's date (the processing
#: run's), so a usage batch gives it nothing.
CHANGE_KINDS = frozenset({"cohort", "stage"})


def triggers_interest(triggers: Iterable[Trigger]) -> Interest:
    """The event types and changes these triggers react to. A kind this function does not know reads
    everything (a new kind is never starved; teach it here what it reads)."""
    types: set[str] = set()
    changes = False
    for trigger in triggers:
        when, kind = trigger.when, trigger.when["kind"]
        if kind in ("event", "count"):
            types.add(when["event"]["type"])
        elif kind == "stall":
            types |= {when["start"]["type"], when["finish"]["type"]}
        elif kind == "silence":
            types.add((when.get("event") or ACTIVITY)["type"])
        elif kind in CHANGE_KINDS:
            changes = True
        elif kind != "date":
            return Interest(None, True)
        goal = (trigger.follow_up or {}).get("goal") or {}
        if "event" in goal:  # new events settle pending goals
            types.add(goal["event"]["type"])
    return Interest(frozenset(types), changes)


def trigger_save(*, trigger: Trigger) -> Trigger:
    """Validate and save a trigger; its version goes up when what it does changed (text alone does not).

    Raises ValidationError naming each field and path (`when.event.where[0].op: Expected …`).
    """
    trigger.clean()
    with transaction.atomic():
        stored = Trigger.objects.select_for_update().filter(pk=trigger.pk).first() if trigger.pk else None
        if stored is not None and _behaviour(stored) != _behaviour(trigger):
            trigger.version = stored.version + 1
        elif stored is not None:
            trigger.version = stored.version
        trigger.save()
        triggers_enabled_forget()
    return trigger


def date_timers_sync(*, trigger: Trigger, now: datetime | None = None) -> int:
    """Set a date trigger's timer for every workspace whose date lies ahead; how many were visited.

    For a date trigger just created or changed: evaluations keep the timers in step, but a workspace
    with no new events would otherwise wait for one. A workspace whose date no longer applies keeps no
    live timer: the sweep re-reads the date before firing.
    """
    now = now or timezone.now()
    field = trigger.when["field"]
    rows = Workspace.objects.filter(**{f"{field}__gt": now}).order_by("pk")
    if field == "trial_expires_at":
        rows = rows.filter(status=Workspace.Status.TRIAL)
    visited, chunk = 0, []
    for workspace in rows.iterator(chunk_size=500):
        chunk.append(workspace)
        if len(chunk) == 500:
            date_timers_set(trigger, chunk, now)
            visited, chunk = visited + len(chunk), []
    date_timers_set(trigger, chunk, now)
    return visited + len(chunk)


def _behaviour(trigger: Trigger) -> dict[str, Any]:
    return {name: getattr(trigger, name) for name in Trigger.BEHAVIOUR_FIELDS}
