"""The dry run: would this trigger (saved, or edited and not saved) fire for which workspaces now, and why?

It runs the real engine — the same `when` readers, timer handlers, caps, quiet hours, experiment arms and
message rendering — inside a transaction that is always rolled back, so nothing it decides, renders or
enqueues survives (on-commit work is dropped with the rollback). What "now" means per kind:
- event, count: the matching events of the last `lookback` (each as if it had just arrived);
- cohort entered / stage: the current members (as if each had just entered); cohort exited: the exits of
  the last `lookback`;
- stall: starts whose deadline has passed without a finish, within `lookback` of now (and those still
  running, with their deadline, as "later");
- silence: workspaces whose last activity crossed the threshold within `lookback`;
- date: workspaces whose date is within `days_before` now (what saving a new date trigger fires at once).
At most `limit` workspaces are evaluated; the preview says when there were more.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from events.models import Event
from messaging.models import Dispatch
from triggers.audience import AUDIENCE_RELATED
from triggers.decide import Candidate, firings_decide
from triggers.models import Firing, Timer, Trigger
from triggers.spec import ACTIVITY, filter_matches
from triggers.timers import HANDLERS
from triggers.when import WHEN, Context, Seen, date_value, events_of
from usage.models import CohortMembership, StagePeriod
from usage.services import Change
from workspaces.models import Workspace

DEFAULT_LOOKBACK = timedelta(hours=24)
MAX_LOOKBACK = timedelta(days=30)
DEFAULT_LIMIT = 200


@dataclass(frozen=True)
class Outcome:
    """One occurrence the trigger would decide now, and what the engine would do with it."""

    workspace_key: str
    occurrence: str
    verdict: str  # fire | defer | hold_out | suppress | already_decided
    words: str
    arm: str | None
    recipient: str
    explanation: dict[str, Any]
    messages: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Later:
    """A timer-kind occurrence not due yet (a stall still running, a date ahead)."""

    workspace_key: str
    occurrence: str
    due_at: datetime


@dataclass
class Preview:
    kind: str
    now: datetime
    lookback: timedelta
    workspaces: int = 0  # evaluated
    more: bool = False  # more than `limit` workspaces qualified
    outcomes: list[Outcome] = field(default_factory=list)
    later: list[Later] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.verdict == verdict)


@dataclass
class Found:
    """What a kind's reader found: candidates, the workspaces they need, timers not due yet."""

    candidates: list[Candidate] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    later: list[Later] = field(default_factory=list)
    more: bool = False


def trigger_preview(
    *, trigger: Trigger, now: datetime | None = None, lookback: timedelta = DEFAULT_LOOKBACK, limit: int = DEFAULT_LIMIT
) -> Preview:
    """Evaluate `trigger` as if it were enabled and saved, against current data; write nothing.

    `trigger` may be unsaved or edited (it is saved inside the rolled-back transaction, so caps, re-entry
    and the count's reset read what they would read). Raises ValidationError for an invalid trigger.
    """
    now = now or timezone.now()
    lookback = min(max(lookback, timedelta(minutes=1)), MAX_LOOKBACK)
    draft = copy.copy(trigger)
    draft.clean()
    if Trigger.objects.filter(key=draft.key).exclude(pk=draft.pk).exists():
        raise ValidationError({"key": f"Another trigger has the key {draft.key!r}."})
    draft.enabled = True
    if draft.when["kind"] not in READERS:  # a kind a higher app registered, decided by its own pass
        covered = ", ".join(READERS)
        raise ValidationError({"when": f"The dry run covers the kinds {covered}, not {draft.when['kind']!r}."})
    preview = Preview(kind=draft.when["kind"], now=now, lookback=lookback)
    with transaction.atomic():
        draft.save()
        found = READERS[preview.kind](draft, now, lookback, limit)
        workspaces = _workspaces(found.keys)
        preview.workspaces, preview.more, preview.later = len(found.keys), found.more, found.later
        firings = firings_decide(found.candidates, workspaces=workspaces, now=now)
        preview.outcomes = _outcomes(draft, found.candidates, firings)
        transaction.set_rollback(True)  # nothing of the above is kept: not the draft, firings, timers or messages
    return preview


def _workspaces(keys: list[str]) -> dict[str, Workspace]:
    rows = Workspace.objects.select_related(*AUDIENCE_RELATED).filter(workspace_id__in=keys)
    return {workspace.workspace_id: workspace for workspace in rows}


# --- what each kind would decide now ------------------------------------------------------------------------


def _recent(node: dict[str, Any], now: datetime, lookback: timedelta, limit: int) -> tuple[dict[str, list[Seen]], bool]:
    """The matching events of the last `lookback`, by workspace (the first `limit` workspaces), in time order."""
    rows = Event.objects.filter(type=node["type"], suppressed=False, occurred_at__gt=now - lookback,
                                occurred_at__lte=now).exclude(status=Event.Status.REJECTED)  # fmt: skip
    by_workspace: dict[str, list[Seen]] = {}
    more = False
    for event in rows.order_by("occurred_at", "id").only("id", "type", "occurred_at", "payload", "workspace_key"):
        seen = Seen.of(event)
        if not filter_matches(node, seen.type, seen.data):
            continue
        if event.workspace_key not in by_workspace and len(by_workspace) >= limit:
            more = True
            continue
        by_workspace.setdefault(event.workspace_key, []).append(seen)
    return by_workspace, more


def _instant(trigger: Trigger, now: datetime, keys: list[str], events: dict[str, list[Seen]],
             changes: dict[str, list[Change]]) -> list[Candidate]:  # fmt: skip
    """The kind's own reader over each workspace, with these events and changes as the new ones."""
    workspaces = _workspaces(keys)
    candidates: list[Candidate] = []
    for key in keys:
        context = Context(workspace_key=key, workspace=workspaces.get(key), events=events.get(key, []),
                          changes=changes.get(key, []), now=now)  # fmt: skip
        candidates += WHEN[trigger.when["kind"]](trigger, context)
    return candidates


def _read_events(trigger: Trigger, now: datetime, lookback: timedelta, limit: int) -> Found:
    events, more = _recent(trigger.when["event"], now, lookback, limit)
    keys = list(events)
    return Found(candidates=_instant(trigger, now, keys, events, {}), keys=keys, more=more)


def _read_cohort(trigger: Trigger, now: datetime, lookback: timedelta, limit: int) -> Found:
    key, change = trigger.when["cohort"], trigger.when["change"]
    rows = CohortMembership.objects.filter(cohort__key=key)
    if change == "entered":
        rows = rows.filter(exited_at__isnull=True).order_by("-entered_at")
    else:
        rows = rows.filter(exited_at__gt=now - lookback, exited_at__lte=now).order_by("-exited_at")
    keys = list(dict.fromkeys(rows.values_list("workspace_key", flat=True)[: limit + 1]))
    keys, more = keys[:limit], len(keys) > limit
    changes = {k: [Change(workspace_key=k, **{change: (key,)})] for k in keys}
    return Found(candidates=_instant(trigger, now, keys, {}, changes), keys=keys, more=more)


def _read_stage(trigger: Trigger, now: datetime, lookback: timedelta, limit: int) -> Found:
    """Current stage periods matching `to` whose previous stage matches `from` (null: any)."""
    wanted_from, wanted_to = trigger.when.get("from"), trigger.when.get("to")
    rows = StagePeriod.objects.filter(exited_at__isnull=True).select_related("stage", "previous")
    if wanted_to is not None:
        rows = rows.filter(stage__key=wanted_to)
    if wanted_from is not None:
        rows = rows.filter(previous__key=wanted_from)
    periods = list(rows.order_by("-entered_at")[: limit + 1])
    changes = {}
    for period in periods[:limit]:
        before = period.previous.key if period.previous else None
        changes[period.workspace_key] = [Change(period.workspace_key, stage_from=before, stage_to=period.stage.key)]
    keys = list(changes)
    return Found(candidates=_instant(trigger, now, keys, {}, changes), keys=keys, more=len(periods) > limit)


def _timer(trigger: Trigger, workspace_key: str, kind: str, occurrence: str, due_at: datetime, data: dict) -> Timer:
    """The timer the engine would hold (never saved): the sweep's own handler decides it."""
    return Timer(trigger=trigger, workspace_key=workspace_key, kind=kind, occurrence=occurrence, due_at=due_at,
                 data=data)  # fmt: skip


def _due(found: Found, timers: list[Timer], now: datetime) -> Found:
    """Run the sweep's handler on each due timer (a stall finished, a date gone: no candidate); the rest wait."""
    workspaces = _workspaces(list(dict.fromkeys(timer.workspace_key for timer in timers)))
    for timer in timers:
        if timer.due_at > now:
            found.later.append(Later(timer.workspace_key, timer.occurrence, timer.due_at))
            continue
        _, candidate = HANDLERS[timer.kind](timer, workspaces.get(timer.workspace_key), now)
        if candidate is not None:
            found.candidates.append(candidate)
    found.keys = list(workspaces)
    return found


def _read_stall(trigger: Trigger, now: datetime, lookback: timedelta, limit: int) -> Found:
    when = trigger.when
    within = timedelta(seconds=when["within_seconds"])
    starts, more = _recent(when["start"], now, lookback + within, limit)
    timers = []
    for workspace_key, seen in starts.items():
        for start in seen:
            key = start.data.get(when["key"]) if when.get("key") else None
            data = {"start_event_id": start.id, "started_at": start.at.isoformat(), "key": key,
                    "user_email": start.user_email}  # fmt: skip
            timers.append(
                _timer(trigger, workspace_key, Timer.Kind.STALL, f"stall:{start.id}", start.at + within, data)
            )
    return _due(Found(more=more), timers, now)


def _read_silence(trigger: Trigger, now: datetime, lookback: timedelta, limit: int) -> Found:
    """The last matching activity of each workspace active in the window; silent if it is older than T."""
    node = trigger.when.get("event") or ACTIVITY
    quiet = timedelta(seconds=trigger.when["for_seconds"])
    rows = events_of_type(node["type"], since=now - quiet - lookback)
    if not node.get("where"):  # the common case in one grouped query: each workspace's last event of the type
        lasts = rows.values("workspace_key").annotate(last=Max("occurred_at")).filter(last__lte=now - quiet)
        keys = [row["workspace_key"] for row in lasts.order_by("-last")[: limit + 1]]
        last_seen = {key: _last(key, node, now - quiet - lookback) for key in keys[:limit]}
    else:
        recent, _ = _recent(node, now, quiet + lookback, 10**9)
        last_seen = {key: seen[-1] for key, seen in recent.items() if seen[-1].at <= now - quiet}
        keys = list(last_seen)
        last_seen = {key: last_seen[key] for key in keys[:limit]}
    timers = []
    for key, last in last_seen.items():
        if last is not None:
            data = {"last_event_id": last.id, "last_activity_at": last.at.isoformat()}
            timers.append(_timer(trigger, key, Timer.Kind.SILENCE, f"silence:{last.id}", last.at + quiet, data))
    return _due(Found(more=len(keys) > limit), timers, now)


def events_of_type(type_: str, *, since: datetime) -> Any:
    return Event.objects.filter(type=type_, suppressed=False, occurred_at__gt=since).exclude(
        status=Event.Status.REJECTED
    )


def _last(workspace_key: str, node: dict[str, Any], since: datetime) -> Seen | None:
    row = events_of(workspace_key).filter(type=node["type"], occurred_at__gt=since).order_by("-occurred_at", "-id")
    event = row.only("id", "type", "occurred_at", "payload").first()
    return Seen.of(event) if event is not None else None


def _read_date(trigger: Trigger, now: datetime, lookback: timedelta, limit: int) -> Found:
    """Workspaces whose date lies ahead: due now when within `days_before` (the rest wait, as `later`)."""
    field_name, days = trigger.when["field"], trigger.when["days_before"]
    rows = Workspace.objects.filter(**{f"{field_name}__gt": now}).order_by(field_name)
    if field_name == "trial_expires_at":
        rows = rows.filter(status=Workspace.Status.TRIAL)
    due_soon = list(rows.filter(**{f"{field_name}__lte": now + timedelta(days=days) + lookback})[: limit + 1])
    timers = []
    for workspace in due_soon[:limit]:
        value = date_value(workspace, field_name)
        if value is None:
            continue
        data = {"field": field_name, "date": value.isoformat(), "days_before": days, "user_email": ""}
        occurrence = f"{field_name}:{value.isoformat()}:{days}"
        timers.append(_timer(trigger, workspace.workspace_id, Timer.Kind.DATE, occurrence,
                             max(value - timedelta(days=days), now), data))  # fmt: skip
    return _due(Found(more=len(due_soon) > limit), timers, now)


READERS: dict[str, Callable[[Trigger, datetime, timedelta, int], Found]] = {
    "event": _read_events,
    "count": _read_events,
    "cohort": _read_cohort,
    "stage": _read_stage,
    "stall": _read_stall,
    "silence": _read_silence,
    "date": _read_date,
}


def preview_reader_register(kind: str, reader: Callable[[Trigger, datetime, timedelta, int], Found]) -> None:
    """The dry run of a kind a higher app adds (`triggers.when.when_register`): its reader finds the workspaces
    it would look at now and their candidates (the rep alerts: alerts/engine.py)."""
    READERS[kind] = reader


# --- what the engine did with them (read before the rollback) -----------------------------------------------


def _outcomes(trigger: Trigger, candidates: list[Candidate], firings: list[Firing]) -> list[Outcome]:
    made = {(f.workspace_key, f.occurrence): f for f in firings}
    messages = _messages([f.pk for f in firings])
    outcomes = []
    for candidate in candidates:
        firing = made.get((candidate.workspace_key, candidate.occurrence))
        if firing is None:
            firing = Firing.objects.filter(trigger=trigger, workspace_key=candidate.workspace_key,
                                           occurrence=candidate.occurrence).first()  # fmt: skip
            outcomes.append(_already(candidate, firing))
            continue
        verdict, words = firing_verdict(firing)
        outcomes.append(Outcome(candidate.workspace_key, candidate.occurrence, verdict, words, firing.arm,
                                firing.recipient, firing.explanation, messages.get(firing.pk, [])))  # fmt: skip
    return outcomes


def _already(candidate: Candidate, firing: Firing | None) -> Outcome:
    """An occurrence decided before (a real firing exists): it would not be decided again."""
    if firing is None:
        return Outcome(candidate.workspace_key, candidate.occurrence, "already_decided", "Already decided.", None, "",
                       candidate.explanation)  # fmt: skip
    words = f"Already decided on {firing.decided_at:%Y-%m-%d %H:%M} UTC ({firing.get_status_display().lower()})."
    return Outcome(candidate.workspace_key, candidate.occurrence, "already_decided", words, firing.arm,
                   firing.recipient, firing.explanation)  # fmt: skip


def firing_verdict(firing: Firing) -> tuple[str, str]:
    """What a decided firing means, in a word and in words (the dry run's and the "why not" page's)."""
    if firing.status == Firing.Status.FIRED:
        return "fire", "Fires now." if firing.arm is None else f"Fires now (arm {firing.arm})."
    if firing.status == Firing.Status.DEFERRED:
        until = (firing.explanation.get("quiet_hours") or {}).get("until", "")
        return "defer", f"Deferred by quiet hours in {firing.recipient_zone} until {until[:16].replace('T', ' ')}."
    if firing.reason == Firing.Reason.HOLDOUT:
        return "hold_out", "Held back: the workspace is in the experiment's holdout (recorded, nothing sent)."
    return "suppress", f"Suppressed: {Firing.Reason(firing.reason).label.lower()}."


def _messages(firing_ids: list[int]) -> dict[int, list[dict[str, str]]]:
    """The rendered messages each firing would send (subject, channel, recipient, or why it could not)."""
    by_firing: dict[int, list[dict[str, str]]] = {}
    rows = Dispatch.objects.filter(source="firing", source_id__in=firing_ids).order_by("key")
    for row in rows:
        by_firing.setdefault(row.source_id, []).append({
            "channel": row.channel, "recipient": row.recipient, "template": row.template, "subject": row.subject,
            "status": row.status, "error": row.last_error,
        })  # fmt: skip
    return by_firing
