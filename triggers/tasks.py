"""django-q2 task entry points: take arguments, call the service (STYLE habit 5); and the hook by which the
usage rollup and the behaviour sweep, a layer below, hand the engine what they changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

from django.db import transaction

from events.models import Event
from triggers.services import triggers_enabled, triggers_evaluate_many, triggers_interest
from triggers.timers import timers_sweep
from usage.rollups import Batch
from usage.services import Change
from workspaces.locks import workspace_locks_take

BATCH = 200
MAX_BATCHES = 25
EVALUATE_TASK = "triggers.tasks.evaluate_workspaces"
#: Workspaces per evaluation task: coarse (a task costs several queries of its own, PITFALLS), yet a
#: rollup of thousands of workspaces is spread over the cluster's workers.
EVALUATE_CHUNK = 100


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


def usage_batch_evaluate(batch: Batch) -> int:
    """The usage hook (`usage.rollups.after_batch_register`, at this app's ready), called in the rollup's or
    the sweep chunk's transaction: after its commit, enqueue the evaluation of what the enabled triggers
    read of it — the rolled-up events of the types they watch, the cohort and stage changes if a trigger
    reacts to them — a task per EVALUATE_CHUNK workspaces. Returns how many tasks it will enqueue.

    With no trigger enabled this is one cache read. A task that runs twice, or the same events evaluated
    again, decides nothing new: each occurrence has one firing (its unique key).
    """
    enabled = triggers_enabled()
    if not enabled:
        return 0
    interest = triggers_interest(enabled)
    events: dict[str, list[int]] = {}
    for event in batch.events:
        if interest.wants(event.type):
            events.setdefault(event.workspace_key, []).append(event.id)
    changes: dict[str, list[dict[str, Any]]] = {}
    for change in batch.changes if interest.changes else ():
        changes.setdefault(change.workspace_key, []).append(asdict(change))
    keys = sorted(events.keys() | changes.keys())
    for start in range(0, len(keys), EVALUATE_CHUNK):
        chunk = keys[start : start + EVALUATE_CHUNK]
        ids = [pk for key in chunk for pk in events.get(key, ())]
        plain = [change for key in chunk for change in changes.get(key, ())]
        transaction.on_commit(partial(_enqueue, chunk, plain, ids), robust=True)
    return -(-len(keys) // EVALUATE_CHUNK)


def _enqueue(keys: list[str], changes: list[dict[str, Any]], event_ids: list[int]) -> None:
    from django_q.tasks import async_task

    async_task(EVALUATE_TASK, keys, changes, event_ids, q_options={"group": "triggers"})


def evaluate_workspaces(
    workspace_keys: Sequence[str],
    changes: Sequence[dict[str, Any]] = (),
    event_ids: Sequence[int] = (),
) -> int:
    """Evaluate the triggers for what a lower layer changed (the usage rollup, the behaviour sweep), which
    may not import this app: `usage_batch_evaluate` enqueues this task by its dotted path after the commit,
    with plain data (the workspaces, `dataclasses.asdict` of each `usage.services.Change`, the ids of the
    events rolled up). Under the workspaces' locks, like the processing run; returns how many firings were
    made.

    Safe to run twice: each occurrence is decided once (the firing's unique key).
    """
    enabled = triggers_enabled()
    if not enabled:
        return 0
    keys = sorted(set(workspace_keys))
    behaviour = [change_from_data(change) for change in changes]
    with transaction.atomic():
        workspace_locks_take(keys)
        events: dict[str, list[Event]] = {key: [] for key in keys}
        if event_ids:
            for event in Event.objects.filter(pk__in=sorted(set(event_ids)), workspace_key__in=keys):
                events[event.workspace_key].append(event)
        fired = triggers_evaluate_many(new_events=events, behaviour_changes=behaviour, triggers=enabled)
    return len(fired)


def change_from_data(data: dict[str, Any]) -> Change:
    """A `Change` back from its plain form (tuples travel as lists through the queue)."""
    return Change(
        workspace_key=data["workspace_key"],
        entered=tuple(data.get("entered") or ()),
        exited=tuple(data.get("exited") or ()),
        stage_from=data.get("stage_from"),
        stage_to=data.get("stage_to"),
    )
