"""The trigger engine's entry points: evaluate a workspace's new events and behaviour changes, save a
trigger (validated, versioned); the actions a firing plans become dispatches (`triggers.deliveries`).

`triggers_evaluate` is called by the processing run inside its transaction and under the workspace's
lock, with the events the run applied and the cohort and stage changes `behaviour_refresh` returned.
It settles goals the new events reach, keeps the timers (stall, silence, date) in step with the events,
and decides every instant occurrence once (`triggers.decide`). Timers fire from `timers_fire_due`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from events.models import Event
from triggers.decide import Candidate, firings_decide
from triggers.deliveries import PlannedAction, firing_planned_actions
from triggers.models import Firing, Trigger
from triggers.timers import goals_reached
from triggers.when import WHEN, Context, Seen, date_timer_sync
from usage.services import Change
from workspaces.models import Workspace

__all__ = [
    "PlannedAction", "date_timers_sync", "firing_planned_actions", "trigger_save", "triggers_enabled",
    "triggers_evaluate",
]  # fmt: skip

#: The enabled triggers are cached (one cache read per processing run instead of one query): a saved
#: trigger clears the entry at once and after its commit; other processes with a per-process cache see
#: the change within ENABLED_CACHE_SECONDS (a shared cache, such as Redis, at once).
ENABLED_CACHE_KEY = "triggers:enabled"
ENABLED_CACHE_SECONDS = 30


def triggers_enabled() -> list[Trigger]:
    """The enabled triggers, from the cache when it holds them: the processing run's one check, so a run
    with none enabled costs one cache read and no query per workspace."""
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
    now = now or timezone.now()
    triggers = list(triggers) if triggers is not None else list(Trigger.objects.filter(enabled=True))
    events = sorted(
        (Seen.of(event) for event in new_events if event.workspace_key == workspace_key and not event.suppressed),
        key=lambda seen: (seen.at, seen.id),
    )
    changes = [change for change in behaviour_changes if change.workspace_key == workspace_key]
    if workspace is None or workspace.workspace_id != workspace_key:
        workspace = (
            Workspace.objects.select_related("account__owner", "owner").filter(workspace_id=workspace_key).first()
        )
    context = Context(workspace_key=workspace_key, workspace=workspace, events=events, changes=changes, now=now)
    with transaction.atomic():
        if any(trigger.follow_up for trigger in triggers):  # else the follow-up sweep's late check settles them
            goals_reached(workspace_key, events, now)
        candidates: list[Candidate] = []
        for trigger in triggers:
            candidates += WHEN[trigger.when["kind"]](trigger, context)
        return firings_decide(candidates, workspaces={workspace_key: workspace} if workspace else {}, now=now)


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
    visited = 0
    for workspace in rows.iterator(chunk_size=500):
        date_timer_sync(trigger, workspace, now)
        visited += 1
    return visited


def _behaviour(trigger: Trigger) -> dict[str, Any]:
    return {name: getattr(trigger, name) for name in Trigger.BEHAVIOUR_FIELDS}
