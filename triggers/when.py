"""Each kind of `when`, read against a workspace's new events and behaviour changes.

An instant kind (event, count, cohort, stage) returns candidates now. A kind that needs an effect without
an event (stall, silence, date) writes timers instead: a start sets a stall timer and its finish cancels
it; activity moves the silence timer; the workspace's date sets (or moves) the date timer. The sweep
(`triggers.timers`) fires what comes due, re-checking the events themselves first.

Every occurrence is named from rows that do not change (event ids, membership and stage period ids, the
date), so two evaluations of the same input name the same occurrence and the firing's unique key holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet

from events.models import Event
from triggers.decide import Candidate
from triggers.models import Firing, Timer, Trigger
from triggers.spec import ACTIVITY, WhenCheck, data_at, filter_matches, when_check_register
from usage.models import CohortMembership, StagePeriod
from usage.services import Change
from workspaces.models import Workspace

#: How many event ids an explanation lists (the count is always exact).
MAX_LISTED_IDS = 50


@dataclass(frozen=True)
class Seen:
    """One event as the engine reads it: its id, type, time and data."""

    id: int
    type: str
    at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> Seen:
        payload = event.payload if isinstance(event.payload, dict) else {}
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        return cls(id=event.pk, type=event.type, at=event.occurred_at or event.received_at, data=data)

    @property
    def user_email(self) -> str:
        value = self.data.get("user_email") or ""
        return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Context:
    """What one evaluation of one workspace sees."""

    workspace_key: str
    workspace: Workspace | None
    events: Sequence[Seen]  # the new events, in time order
    changes: Sequence[Change]
    now: datetime
    #: The open stage periods of the workspaces evaluated together, when the caller read them in one query
    #: (None: each stage trigger reads its workspace's).
    stage_periods: Mapping[str, StagePeriod] | None = None
    #: Where stall and silence timers are written together for the workspaces evaluated together (the
    #: caller flushes it); None: each is written at once.
    timers: TimerWrites | None = None

    def open_stage_period(self) -> StagePeriod | None:
        if self.stage_periods is not None:
            return self.stage_periods.get(self.workspace_key)
        return StagePeriod.objects.filter(workspace_key=self.workspace_key, exited_at__isnull=True).first()


def events_of(workspace_key: str) -> QuerySet[Event]:
    """The workspace's events a trigger may count: not refused, not naming an erased person."""
    return Event.objects.filter(workspace_key=workspace_key, suppressed=False).exclude(status=Event.Status.REJECTED)


def seen_between(
    workspace_key: str, node: dict[str, Any], after: datetime, until: datetime | None = None
) -> list[Seen]:
    """Events matching a filter in (after, until], in time order (the type narrows the query; the data
    conditions are checked on each row)."""
    rows = events_of(workspace_key).filter(type=node["type"], occurred_at__gt=after)
    if until is not None:
        rows = rows.filter(occurred_at__lte=until)
    seen = [Seen.of(event) for event in rows.order_by("occurred_at", "id").only("id", "type", "occurred_at", "payload")]
    return [event for event in seen if filter_matches(node, event.type, event.data)]


def _matching(node: dict[str, Any], events: Iterable[Seen]) -> list[Seen]:
    return [event for event in events if filter_matches(node, event.type, event.data)]


def _ids(events: Sequence[Seen]) -> list[int]:
    return [event.id for event in events[:MAX_LISTED_IDS]]


# --- instant kinds ----------------------------------------------------------------------------------------


def when_event(trigger: Trigger, context: Context) -> list[Candidate]:
    """Each matching new event is an occurrence."""
    node = trigger.when["event"]
    return [
        Candidate(
            trigger=trigger,
            workspace_key=context.workspace_key,
            occurrence=f"event:{event.id}",
            user_email=event.user_email,
            explanation={
                "kind": "event",
                "event_ids": [event.id],
                "event_type": event.type,
                "occurred_at": event.at.isoformat(),
                "filter": node,
                "values": {c["path"]: data_at(event.data, c["path"]) for c in node.get("where", [])},
            },
        )
        for event in _matching(node, context.events)
    ]


def when_count(trigger: Trigger, context: Context) -> list[Candidate]:
    """N matching events within W seconds, counted from the events (to the second), anew after each firing.

    Every window that holds a new event is checked, ending at a new event or at a later one already
    stored (a late event can complete a window that ends after it); the occurrence is the event that
    ends the first window holding N, so two evaluations of the same events name the same one.
    """
    when, node = trigger.when, trigger.when["event"]
    new = _matching(node, context.events)
    if not new:
        return []
    window = timedelta(seconds=when["within_seconds"])
    reset = _count_reset(trigger, context.workspace_key)
    after = max(new[0].at - window, reset[0]) if reset else new[0].at - window
    history = seen_between(context.workspace_key, node, after - timedelta(microseconds=1), new[-1].at + window)
    new_ids = {event.id for event in new}
    candidates, start = [], 0
    for index, end in enumerate(history):
        while start <= index and (
            history[start].at <= end.at - window
            or (reset is not None and (history[start].at, history[start].id) <= reset)
        ):
            start += 1
        counted = history[start : index + 1]
        if len(counted) >= when["count"] and new_ids.intersection(seen.id for seen in counted):
            candidates.append(_count_candidate(trigger, context, end, counted, window))
            reset, start = (end.at, end.id), index + 1
    return candidates


def _count_reset(trigger: Trigger, workspace_key: str) -> tuple[datetime, int] | None:
    """(time, id) of the event that made this trigger's last count decision: counting starts after it."""
    last = (
        Firing.objects.filter(trigger=trigger, workspace_key=workspace_key, occurrence__startswith="count:")
        .order_by("-decided_at", "-id")
        .values_list("occurrence", flat=True)
        .first()
    )
    if last is None:
        return None
    event = Event.objects.filter(pk=int(last.split(":", 1)[1])).values_list("occurred_at", "received_at").first()
    return ((event[0] or event[1]), int(last.split(":", 1)[1])) if event else None


def _count_candidate(
    trigger: Trigger, context: Context, event: Seen, counted: list[Seen], window: timedelta
) -> Candidate:
    return Candidate(
        trigger=trigger,
        workspace_key=context.workspace_key,
        occurrence=f"count:{event.id}",
        user_email=event.user_email,
        explanation={
            "kind": "count",
            "event_ids": _ids(counted),
            "count": len(counted),
            "threshold": trigger.when["count"],
            "window_seconds": int(window.total_seconds()),
            "window_start": (event.at - window).isoformat(),
            "window_end": event.at.isoformat(),
            "first_at": counted[0].at.isoformat(),
            "filter": trigger.when["event"],
        },
    )


def when_cohort(trigger: Trigger, context: Context) -> list[Candidate]:
    """A cohort entered or exited in this run; the occurrence is the membership period."""
    key, change = trigger.when["cohort"], trigger.when["change"]
    if not any(key in (c.entered if change == "entered" else c.exited) for c in context.changes):
        return []
    rows = CohortMembership.objects.filter(workspace_key=context.workspace_key, cohort__key=key)
    if change == "entered":
        period = rows.filter(exited_at__isnull=True).order_by("-entered_at", "-id").first()
    else:
        period = rows.filter(exited_at__isnull=False).order_by("-exited_at", "-id").first()
    if period is None:
        return []
    why = period.entered_why if change == "entered" else period.exited_why
    at = period.entered_at if change == "entered" else period.exited_at
    return [
        Candidate(
            trigger=trigger,
            workspace_key=context.workspace_key,
            occurrence=f"cohort:{period.pk}:{change}",
            explanation={
                "kind": "cohort",
                "cohort": key,
                "change": change,
                "membership_id": period.pk,
                "at": at.isoformat(),
                "definition_version": period.entered_version,
                "why": why,
            },
        )
    ]


def when_stage(trigger: Trigger, context: Context) -> list[Candidate]:
    """A stage change matching from/to (null: any); the occurrence is the stage period entered."""
    wanted_from, wanted_to = trigger.when.get("from"), trigger.when.get("to")
    for change in context.changes:
        if not change.stage_changed:
            continue
        if wanted_from is not None and change.stage_from != wanted_from:
            continue
        if wanted_to is not None and change.stage_to != wanted_to:
            continue
        period = context.open_stage_period()
        if period is None:
            return []
        return [
            Candidate(
                trigger=trigger,
                workspace_key=context.workspace_key,
                occurrence=f"stage:{period.pk}",
                explanation={
                    "kind": "stage",
                    "from": change.stage_from,
                    "to": change.stage_to,
                    "period_id": period.pk,
                    "at": period.entered_at.isoformat(),
                    "why": period.entered_why,
                },
            )
        ]
    return []


# --- kinds that set timers --------------------------------------------------------------------------------


def when_stall(trigger: Trigger, context: Context) -> list[Candidate]:
    """A start sets a timer at start + T; a finish (with the same key, when one is named) cancels it."""
    when = trigger.when
    within = timedelta(seconds=when["within_seconds"])
    for event in context.events:
        if filter_matches(when["start"], event.type, event.data):
            data = {"start_event_id": event.id, "started_at": event.at.isoformat(), "key": _stall_key(when, event)}
            if context.timers is not None:
                context.timers.stall_start(trigger, context.workspace_key, event, event.at + within, data)
            else:
                _timer_create(trigger, context.workspace_key, Timer.Kind.STALL, f"stall:{event.id}",
                              event.at + within, data, user_email=event.user_email)  # fmt: skip
        if filter_matches(when["finish"], event.type, event.data):
            if context.timers is not None:
                context.timers.stall_finish(trigger, context.workspace_key, event)
            else:
                stall_finish(trigger, context.workspace_key, event)
    return []


def _stall_key(when: dict[str, Any], event: Seen) -> Any:
    return data_at(event.data, when["key"]) if when.get("key") else None


def stall_finish(trigger: Trigger, workspace_key: str, finish: Seen) -> int:
    """Cancel the pending stall timers this finish ends (started at or before it, same key); how many."""
    pending = Timer.objects.filter(
        trigger=trigger, workspace_key=workspace_key, kind=Timer.Kind.STALL, status=Timer.Status.PENDING
    )
    key = _stall_key(trigger.when, finish)
    ended = [
        timer.pk for timer in pending
        if datetime.fromisoformat(timer.data["started_at"]) <= finish.at and timer.data.get("key") == key
    ]  # fmt: skip
    return Timer.objects.filter(pk__in=ended, status=Timer.Status.PENDING).update(
        status=Timer.Status.CANCELLED, outcome=f"finished by event {finish.id}", done_at=finish.at
    )


def when_silence(trigger: Trigger, context: Context) -> list[Candidate]:
    """The latest activity (re)sets the one silence timer to activity + T."""
    node = trigger.when.get("event") or ACTIVITY
    active = _matching(node, context.events)
    if active and context.timers is not None:
        context.timers.silence(trigger, context.workspace_key, active[-1])
    elif active:
        silence_move(trigger, context.workspace_key, active[-1])
    return []


def silence_move(trigger: Trigger, workspace_key: str, last: Seen) -> None:
    """Move the pending silence timer to `last` + T (never back), or create it."""
    due = last.at + timedelta(seconds=trigger.when["for_seconds"])
    data = {"last_event_id": last.id, "last_activity_at": last.at.isoformat()}
    pending = Timer.objects.filter(
        trigger=trigger, workspace_key=workspace_key, kind=Timer.Kind.SILENCE, status=Timer.Status.PENDING
    )
    if pending.filter(due_at__lt=due).update(due_at=due, occurrence=f"silence:{last.id}", data=data):
        return
    if not pending.exists() and not _silence_already_past(trigger, workspace_key, last):
        _timer_create(trigger, workspace_key, Timer.Kind.SILENCE, f"silence:{last.id}", due, data)
        # a concurrent run may have made it first: move that one (a no-op when ours stands)
        pending.filter(due_at__lt=due).update(due_at=due, occurrence=f"silence:{last.id}", data=data)


def _silence_already_past(trigger: Trigger, workspace_key: str, last: Seen) -> bool:
    """A late event older than the silence already fired starts no new silence (it would fire twice)."""
    done = (
        Timer.objects.filter(trigger=trigger, workspace_key=workspace_key, kind=Timer.Kind.SILENCE)
        .exclude(status=Timer.Status.PENDING)
        .order_by("-due_at")
        .values_list("data", flat=True)
        .first()
    )
    return done is not None and datetime.fromisoformat(done["last_activity_at"]) >= last.at


def when_date(trigger: Trigger, context: Context) -> list[Candidate]:
    """Keep one pending timer at (the workspace's date − N days); a changed or cleared date moves it."""
    date_timer_sync(trigger, context.workspace, context.now)
    return []


def date_timer_sync(trigger: Trigger, workspace: Workspace | None, now: datetime) -> None:
    """Set the date timer for the workspace's current date, cancelling one set for an earlier value."""
    if workspace is not None:
        date_timers_set(trigger, [workspace], now)


def date_timers_set(trigger: Trigger, workspaces: Sequence[Workspace], now: datetime) -> None:
    """Set the date timer of each workspace for its current date, cancelling those set for an earlier value:
    one read of their pending date timers (usually each is set already), one UPDATE of those whose date
    changed, one INSERT of the missing ones. A timer this date had already (done or cancelled) is left as it
    is, and so is one a concurrent evaluation inserted first: the unique key keeps one."""
    field, days = trigger.when["field"], trigger.when["days_before"]
    wanted: dict[str, tuple[str, datetime | None]] = {}
    for workspace in workspaces:
        value = date_value(workspace, field)
        wanted[workspace.workspace_id] = (f"{field}:{value.isoformat()}:{days}" if value is not None else "", value)
    if not wanted:
        return
    pending = Timer.objects.filter(
        trigger=trigger, workspace_key__in=sorted(wanted), kind=Timer.Kind.DATE, status=Timer.Status.PENDING
    )
    held, stale = set(), []
    for pk, key, occurrence in pending.order_by().values_list("pk", "workspace_key", "occurrence"):
        if occurrence == wanted[key][0]:
            held.add(key)
        else:
            stale.append(pk)
    if stale:
        Timer.objects.filter(pk__in=stale).update(
            status=Timer.Status.CANCELLED, outcome="the date changed", done_at=now
        )
    new = [
        Timer(trigger=trigger, workspace_key=key, kind=Timer.Kind.DATE, occurrence=occurrence,
              due_at=max(value - timedelta(days=days), now),
              data={"field": field, "date": value.isoformat(), "days_before": days, "user_email": ""})
        for key, (occurrence, value) in sorted(wanted.items())
        if value is not None and value > now and key not in held
    ]  # fmt: skip
    Timer.objects.bulk_create(new, ignore_conflicts=True)


def date_value(workspace: Workspace, field: str) -> datetime | None:
    """The date a date trigger watches, when it still applies (a trial's expiry only while in trial)."""
    if field == "trial_expires_at" and workspace.status != Workspace.Status.TRIAL:
        return None
    return getattr(workspace, field)


def _timer_create(
    trigger: Trigger,
    workspace_key: str,
    kind: str,
    occurrence: str,
    due_at: datetime,
    data: dict[str, Any],
    *,
    user_email: str = "",
) -> None:
    """Create a timer once (a repeat of the same occurrence, or a concurrent one, finds it made)."""
    try:
        with transaction.atomic():
            Timer.objects.get_or_create(
                trigger=trigger, workspace_key=workspace_key, kind=kind, occurrence=occurrence,
                defaults={"due_at": due_at, "data": {**data, "user_email": user_email}},
            )  # fmt: skip
    except IntegrityError:
        pass  # another worker made the pending silence timer of this workspace first: it moves that one


class TimerWrites:
    """The stall and silence timer writes of the workspaces evaluated together, made in a few statements
    (`flush`, in the evaluation's transaction) instead of a few for each workspace and trigger: what
    `_timer_create`, `stall_finish` and `silence_move` do one at a time. The callers hold the workspaces'
    locks, so no other evaluation writes these timers meanwhile (the sweep claims pending ones FOR UPDATE, and
    a write here waits for it)."""

    def __init__(self) -> None:
        self.starts: list[Timer] = []
        self.finishes: list[tuple[Trigger, str, Seen]] = []
        self.silences: dict[tuple[int, str], tuple[Trigger, Seen]] = {}

    def stall_start(self, trigger: Trigger, workspace_key: str, event: Seen, due: datetime, data: dict) -> None:
        self.starts.append(Timer(trigger=trigger, workspace_key=workspace_key, kind=Timer.Kind.STALL,
                                 occurrence=f"stall:{event.id}", due_at=due,
                                 data={**data, "user_email": event.user_email}))  # fmt: skip

    def stall_finish(self, trigger: Trigger, workspace_key: str, event: Seen) -> None:
        self.finishes.append((trigger, workspace_key, event))

    def silence(self, trigger: Trigger, workspace_key: str, last: Seen) -> None:
        self.silences[(trigger.pk, workspace_key)] = (trigger, last)

    def flush(self) -> None:
        Timer.objects.bulk_create(self.starts, ignore_conflicts=True)  # a start seen before keeps its timer
        self._finish_stalls()
        self._move_silences()
        self.starts, self.finishes, self.silences = [], [], {}

    def _finish_stalls(self) -> None:
        """Each finish, in time order, cancels the pending stalls of its trigger and workspace that started at
        or before it with the same key (those started in this evaluation included: they are rows now)."""
        if not self.finishes:
            return
        rows = Timer.objects.filter(
            trigger_id__in={t.pk for t, _, _ in self.finishes}, workspace_key__in={k for _, k, _ in self.finishes},
            kind=Timer.Kind.STALL, status=Timer.Status.PENDING,
        ).order_by()  # fmt: skip
        pending: dict[tuple[int, str], list[Timer]] = {}
        for timer in rows.only("pk", "trigger_id", "workspace_key", "data"):
            pending.setdefault((timer.trigger_id, timer.workspace_key), []).append(timer)
        for trigger, key, finish in sorted(self.finishes, key=lambda item: (item[2].at, item[2].id)):
            mine, wanted = pending.get((trigger.pk, key), []), _stall_key(trigger.when, finish)
            ended = [t for t in mine if _started(t) <= finish.at and t.data.get("key") == wanted]
            if ended:
                Timer.objects.filter(pk__in=[t.pk for t in ended], status=Timer.Status.PENDING).update(
                    status=Timer.Status.CANCELLED, outcome=f"finished by event {finish.id}", done_at=finish.at
                )
                pending[(trigger.pk, key)] = [t for t in mine if t not in ended]

    def _move_silences(self) -> None:
        """Move each pending silence timer to its latest activity + T (never back) with one UPDATE, and make the
        missing ones with one INSERT, unless a silence already fired after that activity (it would fire twice)."""
        if not self.silences:
            return
        pairs = {pair: (trigger, last, last.at + timedelta(seconds=trigger.when["for_seconds"]))
                 for pair, (trigger, last) in self.silences.items()}  # fmt: skip
        mine = Timer.objects.filter(
            trigger_id__in={t for t, _ in pairs}, workspace_key__in={k for _, k in pairs}, kind=Timer.Kind.SILENCE
        ).order_by()
        pending: dict[tuple[int, str], tuple[int, datetime]] = {}  # (pk, due_at)
        past: dict[tuple[int, str], datetime] = {}  # the latest activity a silence that fired or ended was set from
        for pk, trigger_id, key, status, due_at, data in mine.values_list(
            "pk", "trigger_id", "workspace_key", "status", "due_at", "data"
        ):
            pair = (trigger_id, key)
            if status == Timer.Status.PENDING:
                pending[pair] = (pk, due_at)
            elif pair in pairs:
                at = datetime.fromisoformat(data["last_activity_at"])
                past[pair] = max(past.get(pair, at), at)
        moved, made = [], []
        for pair, (trigger, last, due) in pairs.items():
            data = {"last_event_id": last.id, "last_activity_at": last.at.isoformat()}
            if pair in pending:
                pk, due_at = pending[pair]
                if due_at < due:
                    moved.append(Timer(pk=pk, due_at=due, occurrence=f"silence:{last.id}", data=data))
            elif pair not in past or past[pair] < last.at:
                made.append(Timer(trigger=trigger, workspace_key=pair[1], kind=Timer.Kind.SILENCE, due_at=due,
                                  occurrence=f"silence:{last.id}", data={**data, "user_email": ""}))  # fmt: skip
        _timers_move(moved)
        Timer.objects.bulk_create(made, ignore_conflicts=True)


def _timers_move(timers: list[Timer]) -> None:
    """Write the timers' new due time, occurrence and data in one statement. On PostgreSQL the rows travel as
    one JSON array (`UPDATE … FROM jsonb_array_elements`): Django's bulk_update builds a CASE per column with
    a branch per row, whose building cost more than the rest of an evaluation (as usage/services.py found)."""
    if not timers:
        return
    if connection.vendor != "postgresql":
        Timer.objects.bulk_update(timers, ["due_at", "occurrence", "data"])
        return
    rows = [[timer.pk, timer.due_at.isoformat(), timer.occurrence, timer.data] for timer in timers]
    table = connection.ops.quote_name(Timer._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET due_at = (r.e ->> 1)::timestamptz, occurrence = r.e ->> 2, data = r.e -> 3"  # noqa: S608
            " FROM jsonb_array_elements(%s::jsonb) AS r (e) WHERE t.id = (r.e ->> 0)::bigint",
            [json.dumps(rows)],
        )


def _started(timer: Timer) -> datetime:
    return datetime.fromisoformat(timer.data["started_at"])


WHEN: dict[str, Callable[[Trigger, Context], list[Candidate]]] = {
    "event": when_event,
    "count": when_count,
    "stall": when_stall,
    "silence": when_silence,
    "cohort": when_cohort,
    "stage": when_stage,
    "date": when_date,
}
#: Kinds decided in a pass of their own by the app that registered them, not by the processing run's
#: evaluation (`triggers.services.triggers_enabled` leaves them out): the rep alerts' rules run after the
#: run's commit and on their schedule, so a rule never fails processing.
OWN_PASS: set[str] = set()


def when_register(
    kind: str, evaluate: Callable[[Trigger, Context], list[Candidate]], check: WhenCheck, *, own_pass: bool = False
) -> None:
    """Add a kind implemented by a higher app (at its ready): how it is evaluated and how it is validated."""
    WHEN[kind] = evaluate
    when_check_register(kind, check)
    if own_pass:
        OWN_PASS.add(kind)
