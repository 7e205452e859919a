"""django-q2 task entry points: take arguments, call the service (STYLE habit 5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction

from events.models import Event
from triggers.services import triggers_enabled, triggers_evaluate
from triggers.timers import timers_sweep
from usage.services import Change
from workspaces.locks import workspace_locks_take

BATCH = 200
MAX_BATCHES = 25


def fire_due_timers() -> int:
    """Every minute: fire what is due, a batch per transaction, at most MAX_BATCHES a run (the rest stay
    due and go next minute); returns how many firings were made. Safe beside other sweeps (SKIP LOCKED)."""
    made = 0
    for _ in range(MAX_BATCHES):
        sweep = timers_sweep(limit=BATCH)
        made += len(sweep.firings)
        if sweep.claimed < BATCH:
            break
    return made


def evaluate_workspaces(
    workspace_keys: Sequence[str],
    changes: Sequence[dict[str, Any]] = (),
    event_ids: Sequence[int] = (),
) -> int:
    """Evaluate the triggers for what a lower layer changed (the usage rollup, the behaviour sweep), which
    may not import this app: it enqueues this task by its dotted path after its commit, with plain data
    (the workspaces, `dataclasses.asdict` of each `usage.services.Change`, the ids of the events it
    rolled up). Under the workspaces' locks, like the processing run; returns how many firings were made.

    Safe to run twice: each occurrence is decided once (the firing's unique key).
    """
    enabled = triggers_enabled()
    if not enabled:
        return 0
    keys = sorted(set(workspace_keys))
    behaviour = [change_from_data(change) for change in changes]
    made = 0
    with transaction.atomic():
        workspace_locks_take(keys)
        events: dict[str, list[Event]] = {key: [] for key in keys}
        if event_ids:
            for event in Event.objects.filter(pk__in=sorted(set(event_ids)), workspace_key__in=keys):
                events[event.workspace_key].append(event)
        for key in keys:
            fired = triggers_evaluate(
                workspace_key=key, new_events=events[key], behaviour_changes=behaviour, triggers=enabled
            )
            made += len(fired)
    return made


def change_from_data(data: dict[str, Any]) -> Change:
    """A `Change` back from its plain form (tuples travel as lists through the queue)."""
    return Change(
        workspace_key=data["workspace_key"],
        entered=tuple(data.get("entered") or ()),
        exited=tuple(data.get("exited") or ()),
        stage_from=data.get("stage_from"),
        stage_to=data.get("stage_to"),
    )
