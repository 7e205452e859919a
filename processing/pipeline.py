"""Processing: fold a workspace's events into its record, link it, and keep each event's status honest.

An event moves `new → processing → completed`, or `→ error` (retried with capped exponential backoff
and jitter) and after EVENT_MAX_ATTEMPTS `→ review` with one admin alert. `processing` carries a
lease: a worker that dies mid-task leaves rows the sweeper hands to another worker once it expires.

The unit of work is a workspace, not an event: under that workspace's lock every one of its lifecycle
events is re-read and folded, and only the difference is written. Late, duplicate and out-of-order
events therefore need no special cases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alerts.services import workspaces_alerts_after_processing
from events.fields import instant_in_range
from events.jsonbody import PayloadInvalid
from events.models import Event
from events.schemas import validate_data
from events.services import enqueue_workspaces
from failures.services import error_record
from linking.repair import links_recheck_after_commit
from linking.services import (
    Question,
    questions_reconcile,
    workspace_flag_new_questions,
    workspace_link,
)
from processing.claims import events_claim, events_claim_many, worker_name, workspace_lock, workspaces_lock
from processing.retries import events_record_failure
from salesforce.outbox import outbox_record_workspaces
from triggers.services import triggers_enabled, triggers_evaluate_many
from usage.services import Change, behaviour_refresh
from workspaces.actors import acting_as_system
from workspaces.auditing import audit_entries_together
from workspaces.lifecycle import LIFECYCLE_TYPES, LifecycleEvent, WorkspaceState, fold
from workspaces.models import Workspace, WorkspaceLock
from workspaces.services import workspace_apply_state

logger = logging.getLogger(__name__)


#: Event statuses whose events count towards a workspace's state.
FOLDED_STATUSES = (
    Event.Status.NEW,
    Event.Status.PROCESSING,
    Event.Status.COMPLETED,
    Event.Status.ERROR,
    Event.Status.REVIEW,
)


@dataclass(frozen=True)
class Outcome:
    workspace_key: str
    claimed: int
    applied: int = 0
    failed: bool = False


def workspace_process(*, workspace_key: str, force: bool = False, alerts: bool = True) -> Outcome:
    """Claim, fold and apply one workspace. With `force`, re-fold even when nothing is due.

    With `alerts` False the caller evaluates alert rules itself, for many workspaces at once.
    """
    worker = worker_name()
    claimed = events_claim(workspace_key=workspace_key, worker=worker)
    if not claimed and not force:
        return Outcome(workspace_key, 0)
    outcome = _process_claimed(workspace_key, claimed, worker)
    if outcome.applied and alerts:
        # After the commit, outside the lock: the rep-alert triggers' pass reads the new state (the engine
        # decides, alerts raise: alerts/engine.py), and never fails processing.
        workspaces_alerts_after_processing(workspace_keys=[workspace_key])
    return outcome


def workspaces_process(*, workspace_keys: Sequence[str], force: bool = False) -> list[Outcome]:
    """Claim, fold and apply several workspaces (a task's): in one transaction when they can.

    Per workspace the work is the same as workspace_process, but the fixed statements are shared:
    one claim, one lock statement, one read of their events and of their records, one completion and
    one commit for all of them, instead of each for each. Should anything fail, the transaction is
    rolled back and each workspace is processed alone, so one bad workspace still fails only itself.
    The caller evaluates alert rules.
    """
    keys = list(dict.fromkeys(workspace_keys))
    worker = worker_name()
    claimed = events_claim_many(workspace_keys=keys, worker=worker)
    todo = [key for key in keys if claimed.get(key) or force]
    outcomes = {key: Outcome(key, 0) for key in keys if key not in todo}
    if len(todo) > 1:
        try:
            with transaction.atomic(), acting_as_system(), audit_entries_together():
                applied = _fold_and_apply_many(todo)
        except Exception:
            logger.warning("processing %d workspaces together failed; processing each alone", len(todo), exc_info=True)
        else:
            outcomes.update({key: Outcome(key, len(claimed.get(key, [])), applied[key]) for key in todo})
            todo = []
    for key in todo:
        outcomes[key] = _process_claimed(key, claimed.get(key, []), worker)
    return [outcomes[key] for key in keys]


def _process_claimed(workspace_key: str, claimed: list[int], worker: str) -> Outcome:
    """Fold and apply one workspace whose events `worker` has claimed; failures go on the event rows."""
    try:
        with transaction.atomic(), acting_as_system(), audit_entries_together():
            applied = _fold_and_apply(workspace_key)
    except Exception as exc:
        ids = {"workspace_id": workspace_key, "event_ids": claimed}
        logger.exception("processing workspace %s failed", workspace_key, extra=ids)
        events_record_failure(event_ids=claimed, worker=worker, error=exc)
        first = Event(pk=min(claimed)) if claimed else None  # the admin link; no need to load it
        error_record(
            source="processing", kind=type(exc).__name__, message=str(exc), obj=first, workspace_key=workspace_key
        )
        return Outcome(workspace_key, len(claimed), failed=True)
    return Outcome(workspace_key, len(claimed), applied)


def lifecycle_event(external_id: str, type_: str, occurred_at: datetime, payload: Any, source: str) -> LifecycleEvent:
    """A stored event as the fold sees it, its time and data re-validated (raises PayloadInvalid): one stored
    before the door refused dates outside 1970–2999 is held back here too."""
    if not instant_in_range(occurred_at):
        raise PayloadInvalid({"timestamp": [f"{occurred_at.isoformat()} is outside 1970–2999."]})
    data = payload.get("data") if isinstance(payload, dict) else None
    return LifecycleEvent(external_id, type_, occurred_at, validate_data(type_, data or {}), source)


# workspace_key, suppressed and received_at: what the trigger engine reads of a new event (never deferred).
_EVENT_FIELDS = (
    "pk", "external_id", "type", "occurred_at", "payload", "source", "status", "workspace_key", "suppressed",
    "received_at",
)  # fmt: skip


def _folded_events(workspace_keys: Sequence[str]) -> dict[str, list[Event]]:
    """Every lifecycle event that counts towards these workspaces' state, by workspace, in one query."""
    rows = Event.objects.filter(
        workspace_key__in=sorted(set(workspace_keys)), type__in=LIFECYCLE_TYPES, status__in=FOLDED_STATUSES
    ).only(*_EVENT_FIELDS)
    by_key: dict[str, list[Event]] = {key: [] for key in workspace_keys}
    for row in rows:
        by_key[row.workspace_key].append(row)
    return by_key


def _fold_and_apply(workspace_key: str) -> int:
    """Under the workspace lock: fold every lifecycle event, persist, link, and mark them completed."""
    workspace_lock(workspace_key)
    rows = list(
        Event.objects.filter(workspace_key=workspace_key, type__in=LIFECYCLE_TYPES, status__in=FOLDED_STATUSES).only(
            *_EVENT_FIELDS
        )
    )
    applied, done, record = _fold_rows(workspace_key, rows)
    links_recheck_after_commit(applied=[(record.workspace, record.converted)] if record is not None else [])
    _triggers_evaluate(_new_events(rows, done), record.changes if record is not None else [], _workspaces([record]))
    _complete(done)
    return applied


def _fold_and_apply_many(workspace_keys: list[str]) -> dict[str, int]:
    """_fold_and_apply for several workspaces in the caller's transaction: {workspace key: events applied}.

    Their records are read together up front. A workspace may fill in its lead's blanks, and a conversion
    links colleagues to its contact or its new account: a workspace whose lead or account an earlier one
    of the batch touched, or that a conversion re-linked, is read afresh instead (what was read is stale).
    """
    workspaces_lock(workspace_keys)
    events = _folded_events(workspace_keys)
    loaded = {
        workspace.workspace_id: workspace
        for workspace in Workspace.objects.select_related("lead", "account", "contact").filter(
            workspace_id__in=sorted(workspace_keys)
        )
    }
    applied: dict[str, int] = {}
    done: list[int] = []
    touched: set[tuple[str, int | None]] = set()
    relinked: set[str] = set()
    to_record: list[Workspace] = []  # their outbox rows, read and inserted together at the end, in order
    records: list[_Applied] = []
    for key in workspace_keys:
        workspace = loaded.get(key)
        if key in relinked or (workspace is not None and touched & _records_of(workspace)):
            workspace = _UNREAD
        applied[key], finished, record = _fold_rows(key, events[key], workspace=workspace, to_record=to_record)
        done += finished
        if record is not None:
            touched |= _records_of(record.workspace)
            relinked |= record.relinked
            records.append(record)
    changes = _behaviour_refresh(to_record)
    outbox_record_workspaces(workspaces=to_record)
    links_recheck_after_commit(applied=[(record.workspace, record.converted) for record in records])
    new = _new_events([row for key in workspace_keys for row in events[key]], done)
    _triggers_evaluate(new, changes, _workspaces(records))
    _complete(done)
    return applied


def _behaviour_refresh(workspaces: list[Workspace]) -> list[Change]:
    """Cohorts and stage follow the lifecycle too (a conversion can make a workspace "expanding"), in the
    same transaction, before the outbox records the stage Salesforce must hold; returns what changed."""
    if settings.BEHAVIOUR_PROFILES and workspaces:
        return behaviour_refresh(
            workspace_keys=[workspace.workspace_id for workspace in workspaces], workspaces=workspaces, locked=True
        )
    return []


def _new_events(rows: list[Event], done: list[int]) -> dict[str, list[Event]]:
    """The events this run applies for the first time (those it completes), by workspace."""
    ids = set(done)
    by_key: dict[str, list[Event]] = {}
    for row in rows:
        if row.pk in ids:
            by_key.setdefault(row.workspace_key, []).append(row)
    return by_key


def _workspaces(records: Sequence[_Applied | None]) -> dict[str, Workspace]:
    return {record.workspace.workspace_id: record.workspace for record in records if record is not None}


def _triggers_evaluate(
    new_events: dict[str, list[Event]], changes: Sequence[Change], workspaces: dict[str, Workspace]
) -> None:
    """The trigger engine decides on the run's new events and behaviour changes, in the run's transaction
    and under its locks: a firing commits with the state it was decided on, or not at all (a failure fails
    the run, which is retried). With no trigger enabled this is one cache read: no query per workspace."""
    enabled = triggers_enabled()
    if not enabled:
        return
    keys = {key for key, events in new_events.items() if events} | {change.workspace_key for change in changes}
    triggers_evaluate_many(
        new_events={key: new_events.get(key, []) for key in keys}, behaviour_changes=changes, triggers=enabled,
        workspaces=workspaces,
    )  # fmt: skip


def _records_of(workspace: Workspace) -> set[tuple[str, int | None]]:
    return {("lead", workspace.lead_id), ("account", workspace.account_id)} - {("lead", None), ("account", None)}


_UNREAD: Any = object()


@dataclass(frozen=True)
class _Applied:
    workspace: Workspace
    relinked: frozenset[str]  # other workspaces a conversion changed
    converted: bool  # its lead was converted now
    changes: tuple[Change, ...] = ()  # what its behaviour refresh changed (when this run refreshed it)


def _fold_rows(
    workspace_key: str,
    rows: list[Event],
    *,
    workspace: Workspace | None = _UNREAD,
    to_record: list[Workspace] | None = None,
) -> tuple[int, list[int], _Applied | None]:
    """Fold these event rows and apply the state; return (events applied, ids to complete, what was applied).

    `workspace`: the workspace with its links when the caller read it (None: it has none yet).
    `to_record`: where the workspaces whose outbox rows the caller records go (else recorded here).
    """
    events, by_external_id = [], {}
    for row in rows:
        try:
            events.append(lifecycle_event(row.external_id, row.type, row.occurred_at, row.payload, row.source))
        except PayloadInvalid as exc:
            _park(row, "PayloadInvalid", f"Stored payload no longer validates: {exc.fields}")
            continue
        by_external_id[row.external_id] = row.pk
    state = fold(workspace_key, events)
    for unapplied in state.unapplied:  # left out by the fold: to review, the other events apply
        del by_external_id[unapplied.external_id]
        for row in rows:
            if row.external_id == unapplied.external_id:
                _park(row, "Unapplied", f"Cannot be applied ({unapplied.reason}); the workspace's other events were.")
    applied = (
        _apply(state, by_external_id, workspace=workspace, to_record=to_record) if state.status is not None else None
    )
    done = [row.pk for row in rows if row.status != Event.Status.COMPLETED and row.external_id in by_external_id]
    return len(events) - len(state.unapplied), done, applied


def _complete(event_ids: list[int]) -> None:
    if not event_ids:
        return
    Event.objects.filter(pk__in=event_ids).update(
        status=Event.Status.COMPLETED,
        completed_at=timezone.now(),
        lease_owner="",
        lease_expires_at=None,
        next_attempt_at=None,
    )


def _apply(
    state: WorkspaceState,
    by_external_id: dict[str, int],
    *,
    workspace: Workspace | None = _UNREAD,
    to_record: list[Workspace] | None = None,
) -> _Applied:
    """Persist the state, link it, settle its questions, and record what Salesforce must now hold.

    The workspace is written once, with its state, links and review flag: one INSERT or UPDATE and one
    audit entry (its lead, account and contact come loaded with it). With `to_record` the outbox rows
    are left to the caller: the workspace, then the colleagues a conversion changed, are added to it.
    """
    if workspace is _UNREAD:
        workspace, changed = workspace_apply_state(state=state, save=False)
    else:
        workspace, changed = workspace_apply_state(state=state, save=False, workspace=workspace)
    unsaved = set(changed)
    converted_before = _lead_converted(workspace)
    relinked: set[str] = set()  # colleagues a conversion gave its contact or its new account
    questions = workspace_link(workspace=workspace, unsaved=unsaved, relinked=relinked)  # leaves the records on it
    for review in state.reviews:
        pks = tuple(by_external_id[e] for e in review.event_ids if e in by_external_id)
        questions.append(Question(review.kind, review.key, review.reason, pks))
    new = workspace._state.adding
    if new:  # its review items need its id: saved first, flag included
        workspace_flag_new_questions(workspace=workspace, wanted=questions)
        workspace.save()
        unsaved.clear()
    questions_reconcile(workspace=workspace, wanted=questions, unsaved=unsaved, new_workspace=new)
    if unsaved:
        workspace.save(update_fields=[*unsaved, "updated_at"])
    recorded = [workspace, *(_siblings(workspace, relinked) if relinked else [])]
    changes: list[Change] = []
    if to_record is None:
        changes = _behaviour_refresh(recorded)
        outbox_record_workspaces(workspaces=recorded)
    else:
        to_record += recorded
    converted = not converted_before and _lead_converted(workspace)
    return _Applied(workspace, frozenset(relinked), converted, tuple(changes))


def _lead_converted(workspace: Workspace) -> bool:
    return workspace.lead is not None and workspace.lead.converted_at is not None


def _siblings(workspace: Workspace, keys: set[str]) -> list[Workspace]:
    """A conversion linked these other workspaces (same person, same new account): theirs to record too.

    Only those: colleagues already on an account it converted onto hold what they held (re-reading them
    all made a conversion cost as much as the account has workspaces).

    Each under its own lock, read after taking it: a run of that workspace committing meanwhile must not
    be overwritten with the older state read before it (found by bench/salesforce_sync.py: a colleague's
    Workspace__c left at Trial). One being processed right now (its lock taken) is re-processed after
    this commit instead; waiting for it could deadlock with a conversion of its own.
    """
    keys = keys - {workspace.workspace_id}
    if not keys:
        return []
    locks = WorkspaceLock.objects.filter(workspace_key__in=keys)
    taken = set(locks.select_for_update(skip_locked=True).values_list("workspace_key", flat=True))
    busy = set(locks.values_list("workspace_key", flat=True)) - taken  # SQLite takes no row locks: none busy
    free = Workspace.objects.filter(workspace_id__in=sorted(keys - busy)).select_related("lead", "account", "contact")
    if busy:
        transaction.on_commit(lambda: enqueue_workspaces(workspace_keys=sorted(busy), force=True), robust=True)
    return list(free)


def _park(row: Event, kind: str, note: str) -> None:
    """An event this version cannot read or apply goes to review with `note` instead of blocking its
    workspace. Re-folds find it parked already: nothing is written or recorded again."""
    if row.status == Event.Status.REVIEW and row.notes == note:
        return
    row.status, row.notes = Event.Status.REVIEW, note
    row.lease_owner, row.lease_expires_at = "", None
    row.save(update_fields=["status", "notes", "lease_owner", "lease_expires_at"])
    ids = {"event_id": row.pk, "external_id": row.external_id, "workspace_id": row.workspace_key}
    logger.warning("event %s parked for review (%s)", row.pk, kind, extra=ids)
    error_record(source="processing", kind=kind, message=note, obj=row, workspace_key=row.workspace_key)
