"""The timer sweep: what is due fires once, after a re-check against the events themselves.

`timers_fire_due` claims due timers with SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL (two sweeps take
disjoint rows; a killed worker's transaction rolls back and releases them, so its timers are due again)
and plainly on SQLite, whose writers are serialised anyway. A stall re-reads the events for a finish and
a silence for newer activity before firing, so a finish that arrived late, or an evaluation that missed
a move, still cancels or moves the timer instead of firing it.

Two sweeps run it: `timers_loop` (`manage.py fire_timers`, its own process) fires each timer within about
a second of its due time — batch after batch while there is a backlog, then asleep until the next due time
— and the every-minute scheduled task (`triggers.tasks.fire_due_timers`) is the safety net for a laptop
without that process, or while it restarts. Both at once are safe: their claims never overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from failures.retry import backoff
from failures.services import error_record
from triggers.audience import AUDIENCE_RELATED
from triggers.decide import Candidate, firings_decide, follow_up_start
from triggers.deliveries import firing_dispatches_plan
from triggers.experiments import firing_follow_up
from triggers.models import Firing, Timer
from triggers.spec import ACTIVITY, data_at, filter_matches
from triggers.when import Seen, date_value, seen_between
from usage.conditions import Facts, condition_explain
from usage.models import Profile
from workspaces.models import Workspace

logger = logging.getLogger(__name__)

Outcome = tuple[str, "Candidate | None"]  # (what happened to the timer, what would fire)
#: The loop sleeps at most this long: a timer made meanwhile that is due before the next one it knew of
#: (a short stall, a quiet-hours release) waits no longer than this past its due time.
IDLE_MAX_SECONDS = 1.0
#: ... and at least this long between two sweeps that found no backlog: timers coming due one after another
#: (a steady stream) are taken a batch at a time, not each by a sweep (and a send task) of its own.
GATHER_SECONDS = 0.5
#: A disabled trigger starts nothing new; what it already decided (a deferral, a follow-up) goes on.
WAIT_FOR_AN_ENABLED_TRIGGER = (Timer.Kind.STALL, Timer.Kind.SILENCE, Timer.Kind.DATE)


@dataclass(frozen=True)
class Sweep:
    claimed: int
    firings: list[Firing]


def timers_fire_due(*, now: datetime | None = None, limit: int = 200) -> list[Firing]:
    """Fire (or cancel, or move) up to `limit` due timers; return the firings created."""
    return timers_sweep(now=now, limit=limit).firings


def timers_sweep(*, now: datetime | None = None, limit: int = 200) -> Sweep:
    """One batch of the sweep in one transaction: how many timers it claimed, and the firings made."""
    now = now or timezone.now()
    with transaction.atomic():
        timers = _claim(now, limit)
        if not timers:
            return Sweep(0, [])
        workspaces = {
            ws.workspace_id: ws
            for ws in Workspace.objects.select_related(*AUDIENCE_RELATED).filter(
                workspace_id__in={timer.workspace_key for timer in timers}
            )
        }
        candidates = _handle_all(timers, workspaces, now)
        # decided together, so timers due at once for one workspace or person respect the priorities
        return Sweep(len(timers), firings_decide(candidates, workspaces=workspaces, now=now))


def _handle_all(timers: list[Timer], workspaces: dict[str, Workspace], now: datetime) -> list[Candidate]:
    """Every claimed timer's handler, in one savepoint, and the timers done marked with one UPDATE per outcome;
    what would fire. Should a handler fail, that savepoint is rolled back and each timer is handled alone,
    read afresh (`_handle`), so the failing one alone is backed off and recorded."""
    live = [timer for timer in timers if not _cancelled_as_disabled(timer, now)]
    try:
        with transaction.atomic():
            handled = [
                (timer, *HANDLERS[timer.kind](timer, workspaces.get(timer.workspace_key), now)) for timer in live
            ]
    except Exception:
        logger.warning("a timer handler failed; handling the batch's timers one by one", exc_info=True)
        fresh = Timer.objects.select_related("trigger", "firing").filter(pk__in=[timer.pk for timer in live])
        found = [_handle(timer, workspaces.get(timer.workspace_key), now) for timer in fresh.order_by("due_at", "id")]
        return [candidate for candidate in found if candidate is not None]
    done: dict[str, list[int]] = {}
    for timer, outcome, _ in handled:
        if timer.status == Timer.Status.PENDING and timer.due_at <= now:  # a moved silence is not done
            done.setdefault(outcome, []).append(timer.pk)
    for outcome, pks in done.items():
        Timer.objects.filter(pk__in=pks).update(status=Timer.Status.DONE, outcome=outcome, done_at=now)
    return [candidate for _, _, candidate in handled if candidate is not None]


def _cancelled_as_disabled(timer: Timer, now: datetime) -> bool:
    """A disabled trigger starts nothing new: its stall, silence and date timers are cancelled."""
    if timer.trigger.enabled or timer.kind not in WAIT_FOR_AN_ENABLED_TRIGGER:
        return False
    Timer.objects.filter(pk=timer.pk).update(
        status=Timer.Status.CANCELLED, outcome="the trigger is disabled", done_at=now
    )
    return True


@dataclass
class LoopReport:
    sweeps: int = 0
    claimed: int = 0
    firings: int = 0
    errors: int = 0


def timers_loop(
    *,
    stop: threading.Event,
    limit: int = 200,
    idle_max: float = IDLE_MAX_SECONDS,
    on_sweep: Callable[[Sweep], None] | None = None,
) -> LoopReport:
    """Fire timers as they come due until `stop` is set: a full batch is followed at once by the next, a
    partial one by sleep until the next timer is due (at least GATHER_SECONDS after the sweep began, at most
    `idle_max`). A failure (the database gone away) is logged and the loop goes on after `idle_max`; what was
    claimed rolled back and is due again."""
    report = LoopReport()
    while not stop.is_set():
        if not connection.in_atomic_block:  # a long-lived process: drop a broken or expired connection, as a
            close_old_connections()  # request would (not inside a caller's transaction: a test's)
        began = time.monotonic()
        try:
            sweep = timers_sweep(limit=limit)
        except Exception:
            logger.exception("the timer sweep failed; trying again in %.1f s", idle_max)
            report.errors += 1
            stop.wait(idle_max)
            continue
        report.sweeps += 1
        report.claimed += sweep.claimed
        report.firings += len(sweep.firings)
        if on_sweep is not None:
            on_sweep(sweep)
        if sweep.claimed < limit:
            gather = GATHER_SECONDS - (time.monotonic() - began)
            stop.wait(min(idle_max, max(gather, seconds_to_next_due(idle_max))))
    return report


def seconds_to_next_due(most: float, now: datetime | None = None) -> float:
    """How long until the next pending timer is due (0 when one is due now), at most `most`."""
    due = Timer.objects.filter(status=Timer.Status.PENDING).order_by("due_at").values_list("due_at", flat=True).first()
    if due is None:
        return most
    return min(most, max(0.0, (due - (now or timezone.now())).total_seconds()))


def _handle(timer: Timer, workspace: Workspace | None, now: datetime) -> Candidate | None:
    """Run one timer's handler in a savepoint: a timer that fails is backed off and recorded, and the
    others in the batch go on (one bad row cannot stall the sweep). The error ledger has no "triggers"
    source yet (failures/models.py), so it is recorded under processing, which the sweep is part of."""
    try:
        with transaction.atomic():
            outcome, candidate = HANDLERS[timer.kind](timer, workspace, now)
            if timer.status == Timer.Status.PENDING and timer.due_at <= now:
                Timer.objects.filter(pk=timer.pk).update(status=Timer.Status.DONE, outcome=outcome, done_at=now)
            return candidate
    except Exception as exc:  # any failure of one timer is recorded on it, not raised
        attempts = timer.attempts + 1
        Timer.objects.filter(pk=timer.pk).update(
            attempts=attempts, last_error=f"{type(exc).__name__}: {exc}"[:2000],
            due_at=now + backoff(attempts, base=60, cap=6 * 3600, spread=0.5),
        )  # fmt: skip
        error_record(source="processing", kind=f"trigger timer {timer.kind}: {type(exc).__name__}", message=str(exc),
                     obj=timer, workspace_key=timer.workspace_key, now=now)  # fmt: skip
        return None


def _claim(now: datetime, limit: int) -> list[Timer]:
    rows = Timer.objects.filter(status=Timer.Status.PENDING, due_at__lte=now).order_by("due_at", "id")
    if connection.features.has_select_for_update_skip_locked:
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    return list(rows.select_related("trigger", "firing")[:limit])


def _candidate(timer: Timer, occurrence: str, explanation: dict[str, Any], **extra: Any) -> Candidate:
    return Candidate(
        trigger=timer.trigger,
        workspace_key=timer.workspace_key,
        occurrence=occurrence,
        explanation=explanation,
        user_email=timer.data.get("user_email", ""),
        **extra,
    )


def _stall(timer: Timer, workspace: Workspace | None, now: datetime) -> Outcome:
    """Fire unless a finish (same key) happened between the start and the deadline."""
    when = timer.trigger.when
    started = datetime.fromisoformat(timer.data["started_at"])
    finishes = [
        event for event in seen_between(timer.workspace_key, when["finish"], started - timedelta(microseconds=1))
        if not when.get("key") or data_at(event.data, when["key"]) == timer.data.get("key")
    ]  # fmt: skip
    if finishes:
        return f"finished by event {finishes[0].id}", None
    explanation = {
        "kind": "stall", "event_ids": [timer.data["start_event_id"]], "started_at": started.isoformat(),
        "within_seconds": when["within_seconds"], "due_at": timer.due_at.isoformat(), "key": timer.data.get("key"),
        "finish_filter": when["finish"], "finish_seen": False, "checked_at": now.isoformat(),
    }  # fmt: skip
    return "fired", _candidate(timer, timer.occurrence, explanation)


def _silence(timer: Timer, workspace: Workspace | None, now: datetime) -> Outcome:
    """Fire unless activity came after the one it was set from; then move it (and fire if still due)."""
    when = timer.trigger.when
    last_at = datetime.fromisoformat(timer.data["last_activity_at"])
    newer = seen_between(timer.workspace_key, when.get("event") or ACTIVITY, last_at)
    if newer:
        latest = newer[-1]
        due = latest.at + timedelta(seconds=when["for_seconds"])
        data = {**timer.data, "last_event_id": latest.id, "last_activity_at": latest.at.isoformat()}
        Timer.objects.filter(pk=timer.pk).update(due_at=due, occurrence=f"silence:{latest.id}", data=data)
        timer.due_at, timer.occurrence, timer.data = due, f"silence:{latest.id}", data
        if due > now:
            return "moved", None
    explanation = {
        "kind": "silence", "event_ids": [timer.data["last_event_id"]],
        "last_activity_at": timer.data["last_activity_at"], "for_seconds": when["for_seconds"],
        "silent_seconds": int((now - datetime.fromisoformat(timer.data["last_activity_at"])).total_seconds()),
        "filter": when.get("event") or ACTIVITY,
    }  # fmt: skip
    return "fired", _candidate(timer, timer.occurrence, explanation)


def _date(timer: Timer, workspace: Workspace | None, now: datetime) -> Outcome:
    """Fire if the workspace still has the date the timer was set for (a conversion ends a trial's)."""
    value = date_value(workspace, timer.data["field"]) if workspace is not None else None
    if value is None or value.isoformat() != timer.data["date"]:
        return "the date no longer applies", None
    explanation = {
        "kind": "date", "field": timer.data["field"], "date": timer.data["date"],
        "days_before": timer.data["days_before"], "days_left": round((value - now).total_seconds() / 86400, 2),
    }  # fmt: skip
    return "fired", _candidate(timer, timer.occurrence, explanation)


def _release(timer: Timer, workspace: Workspace | None, now: datetime) -> Outcome:
    """Quiet hours are over: the deferred firing fires now (its slot was taken when it was decided)."""
    firing = timer.firing
    if firing is None or firing.status != Firing.Status.DEFERRED:
        return "nothing deferred", None
    kept = {key: value for key, value in firing.explanation.items() if key != "why_not"}
    explanation = {**kept, "released_at": now.isoformat()}
    actions = [{**action, "status": "planned"} for action in firing.actions]
    Firing.objects.filter(pk=firing.pk).update(
        status=Firing.Status.FIRED, reason="", fired_at=now, explanation=explanation, actions=actions
    )
    firing.status, firing.fired_at = Firing.Status.FIRED, now
    follow_up_start(firing, now)
    firing_dispatches_plan(firing, workspace)
    return "released", None


def _follow_up(timer: Timer, workspace: Workspace | None, now: datetime) -> Outcome:
    """The goal's window ended: reached (a late check), missed, or missed with activity at zero: escalate."""
    firing = timer.firing
    if firing is None or firing.goal != Firing.Goal.PENDING:
        return "goal already settled", None
    follow_up = firing_follow_up(firing)  # a held-out firing's has no escalation
    reached = goal_check(firing, follow_up, until=firing.goal_due_at or now)
    if reached is not None:
        Firing.objects.filter(pk=firing.pk).update(goal=Firing.Goal.REACHED, goal_event_id=reached or None)
        return "goal reached", None
    activity = seen_between(firing.workspace_key, follow_up.get("activity") or ACTIVITY, firing.decided_at, now)
    if activity or not follow_up.get("escalate"):
        Firing.objects.filter(pk=firing.pk).update(goal=Firing.Goal.MISSED)
        return f"goal missed; {len(activity)} activity events since", None
    Firing.objects.filter(pk=firing.pk).update(goal=Firing.Goal.ESCALATED)
    explanation = {
        "kind": "escalation", "firing_id": firing.pk, "goal": follow_up["goal"],
        "goal_due_at": (firing.goal_due_at or now).isoformat(), "activity_since_firing": 0,
        "original": firing.explanation,
    }  # fmt: skip
    candidate = _candidate(
        timer, f"escalation:{firing.pk}", explanation, actions=follow_up["escalate"],
        audience=follow_up.get("escalate_to", "owner_rep"), escalation_of=firing,
    )  # fmt: skip
    return "goal missed, activity at zero: escalated", candidate


def goal_check(firing: Firing, follow_up: dict[str, Any], *, until: datetime) -> int | None:
    """The goal event's id (0 for a metric goal) when the goal was reached after the firing, else None."""
    goal = follow_up.get("goal") or {}
    if "event" in goal:
        events = seen_between(firing.workspace_key, goal["event"], firing.decided_at, until)
        return events[0].id if events else None
    profile = Profile.objects.filter(workspace_key=firing.workspace_key).values_list("metrics", flat=True).first()
    explained = condition_explain(goal["condition"], Facts(metrics=profile or {}))
    return 0 if explained["result"] else None


def goals_reached(workspace_key: str, events: list[Seen], now: datetime) -> int:
    """New events that reach pending event goals settle them and cancel their follow-up timers; how many."""
    if not events:
        return 0
    pending = Firing.objects.filter(workspace_key=workspace_key, goal=Firing.Goal.PENDING).select_related("trigger")
    settled = 0
    for firing in pending:
        goal = firing_follow_up(firing).get("goal") or {}
        if "event" not in goal:
            continue
        hit = next(
            (e for e in events if firing.decided_at < e.at <= (firing.goal_due_at or now)
             and filter_matches(goal["event"], e.type, e.data)),
            None,
        )  # fmt: skip
        if hit is None:
            continue
        settled += Firing.objects.filter(pk=firing.pk, goal=Firing.Goal.PENDING).update(
            goal=Firing.Goal.REACHED, goal_event_id=hit.id
        )
        Timer.objects.filter(firing=firing, kind=Timer.Kind.FOLLOW_UP, status=Timer.Status.PENDING).update(
            status=Timer.Status.CANCELLED, outcome=f"goal reached by event {hit.id}", done_at=now
        )
    return settled


HANDLERS: dict[str, Callable[[Timer, Workspace | None, datetime], Outcome]] = {
    Timer.Kind.STALL: _stall,
    Timer.Kind.SILENCE: _silence,
    Timer.Kind.DATE: _date,
    Timer.Kind.RELEASE: _release,
    Timer.Kind.FOLLOW_UP: _follow_up,
}
