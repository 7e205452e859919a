"""django-q2 task entry points: take arguments, call the service (STYLE habit 5); and the hook by which the
usage rollup and the behaviour sweep, a layer below, hand the engine what they changed, in their transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

from django.db import transaction

from events.models import Event
from failures.services import error_record
from triggers.audience import AUDIENCE_RELATED
from triggers.models import Trigger
from triggers.services import triggers_enabled, triggers_evaluate_many, triggers_interest
from triggers.timers import timers_sweep
from usage.rollups import Batch
from usage.services import Change
from workspaces.locks import workspace_locks_take
from workspaces.models import Workspace

logger = logging.getLogger(__name__)

BATCH = 200
MAX_BATCHES = 25
EVALUATE_TASK = "triggers.tasks.evaluate_workspaces"
#: Workspaces evaluated together (one decision, one insert of firings and of dispatches): IN lists and
#: memory stay bounded in a rollup of thousands of workspaces.
EVALUATE_CHUNK = 100
#: What the engine reads of an event (`triggers.when.Seen`, the suppressed flag).
SEEN_FIELDS = ("pk", "type", "occurred_at", "received_at", "payload", "workspace_key", "suppressed")


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
    """The usage hook (`usage.rollups.after_batch_register`, at this app's ready): evaluate, in the rollup's
    or the sweep chunk's own transaction and under its workspaces' locks, what the enabled triggers read of
    it — the rolled-up events of the types they watch, the cohort and stage changes if a trigger reacts to
    them — EVALUATE_CHUNK workspaces at a time; returns how many firings were made.

    The firings commit with the rollup or not at all: a worker killed midway leaves the events `new`, the
    sweeper rings again, and the same events evaluated again decide nothing new (each occurrence has one
    firing, its unique key). An evaluation that fails is rolled back alone (a savepoint), recorded, and
    enqueued to run again after the commit: a trigger's fault never holds the telemetry back. With no
    trigger enabled this is one cache read.
    """
    enabled = triggers_enabled()
    if not enabled:
        return 0
    interest = triggers_interest(enabled)
    events: dict[str, list[int]] = {}
    for event in batch.events:
        if interest.wants(event.type):
            events.setdefault(event.workspace_key, []).append(event.id)
    changes: dict[str, list[Change]] = {}
    for change in batch.changes if interest.changes else ():
        changes.setdefault(change.workspace_key, []).append(change)
    keys = sorted(events.keys() | changes.keys())
    made = 0
    for start in range(0, len(keys), EVALUATE_CHUNK):
        chunk = keys[start : start + EVALUATE_CHUNK]
        ids = [pk for key in chunk for pk in events.get(key, ())]
        mine = [change for key in chunk for change in changes.get(key, ())]
        try:
            with transaction.atomic():
                made += _evaluate(chunk, mine, ids, enabled)
        except Exception as exc:  # recorded and retried by a task; the batch itself goes on
            logger.exception("trigger evaluation of %d workspaces failed; enqueued to run again", len(chunk))
            error_record(source="processing", kind=f"trigger evaluation: {type(exc).__name__}", message=str(exc),
                         workspace_key=chunk[0])  # fmt: skip
            plain = [asdict(change) for change in mine]
            transaction.on_commit(partial(_enqueue, chunk, plain, ids), robust=True)
    return made


def _enqueue(keys: list[str], changes: list[dict[str, Any]], event_ids: list[int]) -> None:
    from django_q.tasks import async_task

    async_task(EVALUATE_TASK, keys, changes, event_ids, q_options={"group": "triggers"})


def evaluate_workspaces(
    workspace_keys: Sequence[str],
    changes: Sequence[dict[str, Any]] = (),
    event_ids: Sequence[int] = (),
) -> int:
    """Evaluate the triggers again for what a usage batch changed, when its own evaluation failed
    (`usage_batch_evaluate` enqueues this task by its dotted path after the batch's commit, with plain data:
    the workspaces, `dataclasses.asdict` of each `usage.services.Change`, the ids of the events rolled up).
    Under the workspaces' locks, like the processing run; returns how many firings were made.

    Safe to run twice: each occurrence is decided once (the firing's unique key).
    """
    enabled = triggers_enabled()
    if not enabled:
        return 0
    with transaction.atomic():
        return _evaluate(sorted(set(workspace_keys)), [change_from_data(c) for c in changes], event_ids, enabled)


def _evaluate(keys: list[str], changes: list[Change], event_ids: Sequence[int], enabled: list[Trigger]) -> int:
    """Under the workspaces' locks (in key order; a rollup with profiles on holds them already), these events
    and changes through the trigger engine; how many firings were made. A workspace the engine does not know
    yet (its usage came before its trial.started was processed) is left out: nothing is decided for it now,
    and the run that creates it evaluates what waited (`triggers.services`). Known or not is read under its
    lock, so that run and this evaluation cannot both miss the other."""
    workspace_locks_take(keys)
    rows = Workspace.objects.select_related(*AUDIENCE_RELATED).filter(workspace_id__in=keys)
    loaded = {workspace.workspace_id: workspace for workspace in rows}
    events: dict[str, list[Event]] = {key: [] for key in keys if key in loaded}
    if event_ids and events:
        rows = Event.objects.filter(pk__in=sorted(set(event_ids)), workspace_key__in=sorted(events))
        for event in rows.only(*SEEN_FIELDS).order_by():
            events[event.workspace_key].append(event)
    known = [change for change in changes if change.workspace_key in loaded]
    fired = triggers_evaluate_many(new_events=events, behaviour_changes=known, triggers=enabled, workspaces=loaded)
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
