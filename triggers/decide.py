"""From candidates to firings: re-entry, caps per trigger and across triggers with priorities, quiet hours.

Every candidate becomes exactly one `Firing` row (fired, deferred or suppressed with its reason), unique by
(trigger, workspace, occurrence): a retry, a replay or a second worker finds the row and adds nothing.
Across triggers, candidates decided together are taken highest priority first, so a higher-priority
firing wins a capped slot and the loser is recorded as suppressed, naming the cap. Slots are counted
under a row lock per workspace and per person (`CapLock`), so two workers cannot both take the last one.
Quiet hours in the recipient's zone defer a firing to their end (a release timer); it is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from triggers.actions import actions_route_themselves
from triggers.audience import Recipient, recipient_for
from triggers.deliveries import firing_dispatches_plan
from triggers.experiments import Assignment, experiment_apply, firing_follow_up
from triggers.models import CapLock, Firing, Timer, Trigger
from workspaces.models import Workspace

#: Defaults when settings name none: at most 3 firings a day per workspace and per person across
#: triggers, and quiet from 21:00 to 08:00 in the recipient's zone (transactional triggers are exempt).
DEFAULT_WORKSPACE_CAP = (3, 86400)
DEFAULT_PERSON_CAP = (3, 86400)
DEFAULT_QUIET_HOURS = ("21:00", "08:00")
TAKEN = (Firing.Status.FIRED, Firing.Status.DEFERRED)


@dataclass
class Candidate:
    """Something that would fire: the trigger, the workspace, a stable name for what happened, the why."""

    trigger: Trigger
    workspace_key: str
    occurrence: str
    explanation: dict[str, Any]
    user_email: str = ""
    actions: list[dict[str, Any]] | None = None  # an escalation's own actions
    audience: str | None = None
    escalation_of: Firing | None = None
    assignment: Assignment | None = None  # the experiment arm, set by experiment_apply

    @property
    def exempt(self) -> bool:
        """Transactional triggers and escalations (to staff) are exempt from caps and quiet hours."""
        return self.trigger.transactional or self.escalation_of is not None


def cap_setting(name: str, default: tuple[int, int]) -> tuple[int, int] | None:
    """(limit, seconds) from settings, or None when the setting turns the cap off."""
    value = getattr(settings, name, default)
    return tuple(value) if value else None  # type: ignore[return-value]


def quiet_hours() -> tuple[time, time] | None:
    value = getattr(settings, "TRIGGERS_QUIET_HOURS", DEFAULT_QUIET_HOURS)
    return (time.fromisoformat(value[0]), time.fromisoformat(value[1])) if value else None


def quiet_hours_end(zone_name: str, now: datetime) -> datetime | None:
    """When quiet hours end in this zone, if `now` falls in them (over midnight they end the next day)."""
    hours = quiet_hours()
    if hours is None:
        return None
    start, end = hours
    zone = _zone(zone_name)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    quiet = start <= clock < end if start <= end else (clock >= start or clock < end)
    if not quiet:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=zone)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError, OSError):
        return ZoneInfo("UTC")


def firings_decide(candidates: list[Candidate], *, workspaces: dict[str, Workspace], now: datetime) -> list[Firing]:
    """Decide each candidate once, highest priority first; return the firings this call created."""
    fresh = _not_yet_decided(candidates)
    if not fresh:
        return []
    fresh.sort(key=lambda c: (-c.trigger.priority, c.trigger.key, c.workspace_key, c.occurrence))
    recipients = {id(c): _recipient(c, workspaces.get(c.workspace_key)) for c in fresh}
    with transaction.atomic():
        _lock_caps(fresh, recipients)
        created = []
        for candidate in fresh:
            firing = _decide_one(candidate, recipients[id(candidate)], now, workspaces.get(candidate.workspace_key))
            if firing is not None:
                created.append(firing)
        return created


def _not_yet_decided(candidates: list[Candidate]) -> list[Candidate]:
    """Drop candidates already decided (one query per workspace): repeats cost no savepoint."""
    unique = {(c.trigger.pk, c.workspace_key, c.occurrence): c for c in candidates}
    by_workspace: dict[str, set[str]] = {}
    for _, workspace_key, occurrence in unique:
        by_workspace.setdefault(workspace_key, set()).add(occurrence)
    seen = set()
    for workspace_key, occurrences in by_workspace.items():
        rows = Firing.objects.filter(workspace_key=workspace_key, occurrence__in=occurrences)
        seen |= {(t, workspace_key, o) for t, o in rows.values_list("trigger_id", "occurrence")}
    return [c for key, c in unique.items() if key not in seen]


def _recipient(candidate: Candidate, workspace: Workspace | None) -> Recipient | None:
    audience = candidate.audience or candidate.trigger.audience
    return recipient_for(audience, workspace, user_email=candidate.user_email, team=candidate.trigger.team)


def _lock_caps(candidates: list[Candidate], recipients: dict[int, Recipient | None]) -> None:
    """Lock the cap rows of every workspace and person involved, in key order (no deadlock between two)."""
    keys = set()
    for candidate in candidates:
        if candidate.exempt:
            continue
        keys.add(f"workspace:{candidate.workspace_key}")
        recipient = recipients[id(candidate)]
        if recipient is not None:
            keys.add(f"person:{recipient.key}")
    if not keys:
        return
    CapLock.objects.bulk_create([CapLock(key=key) for key in sorted(keys)], ignore_conflicts=True)
    if connection.features.has_select_for_update:
        list(CapLock.objects.select_for_update().filter(key__in=sorted(keys)).order_by("key").values_list("key"))


def _decide_one(
    candidate: Candidate, recipient: Recipient | None, now: datetime, workspace: Workspace | None
) -> Firing | None:
    trigger = candidate.trigger
    caps: list[dict[str, Any]] = []
    reason = _suppression(candidate, recipient, now, caps)
    reason = experiment_apply(candidate, reason, now)  # records the arm; the holdout is held back
    deferred_until = None
    if not reason and not candidate.exempt and recipient is not None:
        deferred_until = quiet_hours_end(recipient.zone, now)
    status = Firing.Status.SUPPRESSED if reason else Firing.Status.DEFERRED if deferred_until else Firing.Status.FIRED
    explanation = {
        **candidate.explanation,
        "trigger_version": trigger.version,
        "priority": trigger.priority,
        "transactional": trigger.transactional,
        "recipient": recipient.key if recipient else None,
        "caps": caps,
    }
    if deferred_until is not None:
        explanation["quiet_hours"] = {"zone": recipient.zone, "until": deferred_until.isoformat()}
        reason = Firing.Reason.QUIET_HOURS
    if reason:
        explanation["why_not"] = Firing.Reason(reason).label
    firing = _insert(candidate, recipient, status, reason, explanation, now)
    if firing is None:
        return None
    if deferred_until is not None:
        _timer_add(firing, Timer.Kind.RELEASE, deferred_until)
    elif status == Firing.Status.FIRED:
        follow_up_start(firing, now)
        firing_dispatches_plan(firing, workspace)  # in this transaction: the firing and its messages commit together
    elif reason == Firing.Reason.HOLDOUT:
        follow_up_start(firing, now)  # sends nothing, but its goal is measured against the treated arms'
    return firing


def _suppression(candidate: Candidate, recipient: Recipient | None, now: datetime, caps: list[dict[str, Any]]) -> str:
    """The reason this candidate may not fire ("" when it may), recording every cap it was checked against."""
    trigger = candidate.trigger
    if recipient is None:  # unless its actions find their own (rep alerts route: triggers/actions.py)
        routes = actions_route_themselves(candidate.actions if candidate.actions is not None else trigger.actions)
        return "" if routes else Firing.Reason.NO_RECIPIENT
    if candidate.escalation_of is not None:
        return ""
    own = Firing.objects.filter(trigger=trigger, workspace_key=candidate.workspace_key).filter(
        Q(status__in=TAKEN, escalation_of__isnull=True) | Q(reason=Firing.Reason.HOLDOUT)  # as if it had fired
    )
    if trigger.reentry == Trigger.Reentry.ONCE and own.exists():
        return Firing.Reason.REENTRY
    if trigger.cap_seconds and not trigger.transactional:
        used = own.filter(decided_at__gt=now - timedelta(seconds=trigger.cap_seconds)).count()
        caps.append({"cap": "trigger", "limit": 1, "window_seconds": trigger.cap_seconds, "used": used})
        if used >= 1:
            return Firing.Reason.CAP_TRIGGER
    if candidate.exempt:
        return ""
    return _cross_cap(candidate, recipient, now, caps)


def _cross_cap(candidate: Candidate, recipient: Recipient, now: datetime, caps: list[dict[str, Any]]) -> str:
    """The caps across triggers: per workspace, then per person (across workspaces). Firings decided
    earlier in this transaction are rows already, so the counts include them."""
    taken = Firing.objects.filter(status__in=TAKEN, transactional=False, escalation_of__isnull=True)
    workspace_cap = cap_setting("TRIGGERS_WORKSPACE_CAP", DEFAULT_WORKSPACE_CAP)
    if workspace_cap is not None:
        limit, seconds = workspace_cap
        since = now - timedelta(seconds=seconds)
        used = taken.filter(workspace_key=candidate.workspace_key, decided_at__gt=since).count()
        caps.append({"cap": "workspace", "limit": limit, "window_seconds": seconds, "used": used})
        if used >= limit:
            return Firing.Reason.CAP_WORKSPACE
    person_cap = cap_setting("TRIGGERS_PERSON_CAP", DEFAULT_PERSON_CAP)
    if person_cap is not None:
        limit, seconds = person_cap
        since = now - timedelta(seconds=seconds)
        used = taken.filter(recipient=recipient.key, decided_at__gt=since).count()
        caps.append({"cap": "person", "limit": limit, "window_seconds": seconds, "used": used})
        if used >= limit:
            return Firing.Reason.CAP_PERSON
    return ""


def _insert(
    candidate: Candidate,
    recipient: Recipient | None,
    status: str,
    reason: str,
    explanation: dict[str, Any],
    now: datetime,
) -> Firing | None:
    """Insert the firing in a savepoint; None when another worker or an earlier run already decided it."""
    trigger = candidate.trigger
    actions = candidate.actions if candidate.actions is not None else trigger.actions
    firing = Firing(
        trigger=trigger,
        trigger_version=trigger.version,
        workspace_key=candidate.workspace_key,
        occurrence=candidate.occurrence,
        status=status,
        reason=reason,
        priority=trigger.priority,
        transactional=trigger.transactional,
        audience=candidate.audience or trigger.audience,
        recipient=recipient.key if recipient else "",
        recipient_zone=recipient.zone if recipient else "UTC",
        actions=[{**action, "status": "planned" if status == Firing.Status.FIRED else status} for action in actions],
        explanation=explanation,
        escalation_of=candidate.escalation_of,
        arm=candidate.assignment.arm.key if candidate.assignment else None,
        experiment=candidate.assignment.experiment if candidate.assignment else None,
        decided_at=now,
        fired_at=now if status == Firing.Status.FIRED else None,
    )
    try:
        with transaction.atomic():
            firing.save(force_insert=True)
    except IntegrityError:
        return None
    return firing


def _timer_add(firing: Firing, kind: str, due_at: datetime, data: dict[str, Any] | None = None) -> None:
    Timer.objects.get_or_create(
        trigger_id=firing.trigger_id,
        workspace_key=firing.workspace_key,
        kind=kind,
        occurrence=f"firing:{firing.pk}",
        defaults={"due_at": due_at, "firing": firing, "data": data or {}},
    )


def follow_up_start(firing: Firing, now: datetime) -> None:
    """A fired firing with a follow-up waits for its goal: a timer at the end of its window."""
    follow_up = firing_follow_up(firing)  # the trigger's, or the goal its experiment measures
    if not follow_up or firing.escalation_of_id is not None:
        return
    due = now + timedelta(seconds=follow_up["within_seconds"])
    Firing.objects.filter(pk=firing.pk).update(goal=Firing.Goal.PENDING, goal_due_at=due)
    firing.goal, firing.goal_due_at = Firing.Goal.PENDING, due
    _timer_add(firing, Timer.Kind.FOLLOW_UP, due)
