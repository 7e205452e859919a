"""From candidates to firings: re-entry, caps per trigger and across triggers with priorities, quiet hours.

Every candidate becomes exactly one `Firing` row (fired, deferred or suppressed with its reason), unique by
(trigger, workspace, occurrence): a retry, a replay or a second worker finds the row and adds nothing.
Across triggers, candidates decided together are taken highest priority first, so a higher-priority
firing wins a capped slot and the loser is recorded as suppressed, naming the cap. Slots are counted
under a row lock per workspace and per person (`CapLock`), so two workers cannot both take the last one;
they are read once for all the candidates decided together and counted on in memory.
Quiet hours in the recipient's zone defer a firing to their end (a release timer); it is never dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q, QuerySet

from triggers.actions import actions_route_themselves
from triggers.audience import Recipient, recipient_for
from triggers.deliveries import firings_dispatches_plan
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
    """Decide each candidate once, highest priority first; return the firings this call created.

    All candidates together, whatever their workspaces: one read of what was decided already, one lock of
    the caps involved, one read of the slots those caps have used, then each decided in memory (a firing
    takes its slot there, as its row would for a later count), one insert of the firings and one of their
    timers and of their dispatches — not each for each (bench/triggers_processing.py).
    """
    fresh = _not_yet_decided(candidates)
    if not fresh:
        return []
    fresh.sort(key=lambda c: (-c.trigger.priority, c.trigger.key, c.workspace_key, c.occurrence))
    recipients = {id(c): _recipient(c, workspaces.get(c.workspace_key)) for c in fresh}
    with transaction.atomic():
        _lock_caps(fresh, recipients)
        slots = Slots.read(fresh, recipients, now)
        decided = [_decide_one(candidate, recipients[id(candidate)], now, slots) for candidate in fresh]
        created = _insert_all([decision.firing for decision in decided])
        inserted = {id(firing) for firing in created}
        _follow_through([decision for decision in decided if id(decision.firing) in inserted], now, workspaces)
        return created


def _not_yet_decided(candidates: list[Candidate]) -> list[Candidate]:
    """Drop candidates already decided (one query for all): repeats cost no savepoint."""
    unique = {(c.trigger.pk, c.workspace_key, c.occurrence): c for c in candidates}
    if not unique:
        return []
    rows = Firing.objects.filter(
        workspace_key__in=sorted({key[1] for key in unique}), occurrence__in=sorted({key[2] for key in unique})
    )
    seen = set(rows.order_by().values_list("trigger_id", "workspace_key", "occurrence"))
    return [c for key, c in unique.items() if key not in seen]


def _recipient(candidate: Candidate, workspace: Workspace | None) -> Recipient | None:
    audience = candidate.audience or candidate.trigger.audience
    return recipient_for(audience, workspace, user_email=candidate.user_email, team=candidate.trigger.team)


def _own_capped(trigger: Trigger) -> bool:
    """The trigger limits itself: once per workspace ever, or once within its cap window."""
    return trigger.reentry == Trigger.Reentry.ONCE or bool(trigger.cap_seconds and not trigger.transactional)


def _lock_caps(candidates: list[Candidate], recipients: dict[int, Recipient | None]) -> None:
    """Lock the cap rows of every workspace and person whose slots are counted, in key order (no deadlock
    between two deciders); none when no cap applies (exempt candidates, caps turned off)."""
    workspace_cap = cap_setting("TRIGGERS_WORKSPACE_CAP", DEFAULT_WORKSPACE_CAP) is not None
    person_cap = cap_setting("TRIGGERS_PERSON_CAP", DEFAULT_PERSON_CAP) is not None
    keys = set()
    for candidate in candidates:
        recipient = recipients[id(candidate)]
        if recipient is None or candidate.escalation_of is not None:
            continue
        if _own_capped(candidate.trigger) or (workspace_cap and not candidate.exempt):
            keys.add(f"workspace:{candidate.workspace_key}")
        if person_cap and not candidate.exempt:
            keys.add(f"person:{recipient.key}")
    if not keys:
        return
    CapLock.objects.bulk_create([CapLock(key=key) for key in sorted(keys)], ignore_conflicts=True)
    if connection.features.has_select_for_update:
        list(CapLock.objects.select_for_update().filter(key__in=sorted(keys)).order_by("key").values_list("key"))


@dataclass
class Slots:
    """The slots each cap has used, read once for a decision under the caps' locks: firings in the workspace
    cap's window by workspace, in the person cap's by recipient, and each self-limiting trigger's own
    firings by (trigger, workspace). A firing decided now takes its slot here (`take`)."""

    workspace: Counter[str] = field(default_factory=Counter)
    person: Counter[str] = field(default_factory=Counter)
    own: dict[tuple[int, str], list[datetime]] = field(default_factory=dict)

    @classmethod
    def read(cls, candidates: list[Candidate], recipients: dict[int, Recipient | None], now: datetime) -> Slots:
        slots = cls()
        capped = [c for c in candidates if recipients[id(c)] is not None and c.escalation_of is None]
        crossed = [c for c in capped if not c.exempt]
        taken = Firing.objects.filter(status__in=TAKEN, transactional=False, escalation_of__isnull=True)
        if (cap := cap_setting("TRIGGERS_WORKSPACE_CAP", DEFAULT_WORKSPACE_CAP)) is not None and crossed:
            rows = taken.filter(workspace_key__in=sorted({c.workspace_key for c in crossed}))
            slots.workspace.update(_counts(rows, "workspace_key", now - timedelta(seconds=cap[1])))
        if (cap := cap_setting("TRIGGERS_PERSON_CAP", DEFAULT_PERSON_CAP)) is not None and crossed:
            rows = taken.filter(recipient__in=sorted({recipients[id(c)].key for c in crossed}))  # type: ignore[union-attr]
            slots.person.update(_counts(rows, "recipient", now - timedelta(seconds=cap[1])))
        if own := [c for c in capped if _own_capped(c.trigger)]:
            slots.own = _own_firings(own, now)
        return slots

    def take(self, firing: Firing) -> None:
        """Count a firing decided now as its row counts for the caps."""
        if firing.escalation_of is None and (firing.status in TAKEN or firing.reason == Firing.Reason.HOLDOUT):
            self.own.setdefault((firing.trigger_id, firing.workspace_key), []).append(firing.decided_at)
        if firing.status in TAKEN and not firing.transactional and firing.escalation_of is None:
            self.workspace[firing.workspace_key] += 1
            self.person[firing.recipient] += 1


def _counts(rows: QuerySet[Firing], column: str, since: datetime) -> dict[str, int]:
    counted = rows.filter(decided_at__gt=since).values_list(column).annotate(n=Count("id")).order_by()
    return dict(counted)  # type: ignore[arg-type]


def _own_firings(candidates: list[Candidate], now: datetime) -> dict[tuple[int, str], list[datetime]]:
    """When each self-limiting trigger fired (or held back) for each workspace: ever, for a once-only one;
    within the longest cap window of the others."""
    once = {c.trigger.pk for c in candidates if c.trigger.reentry == Trigger.Reentry.ONCE}
    capped = {c.trigger.pk: c.trigger.cap_seconds for c in candidates if c.trigger.pk not in once}
    which = Q(trigger_id__in=sorted(once))
    if capped:
        which |= Q(trigger_id__in=sorted(capped), decided_at__gt=now - timedelta(seconds=max(capped.values())))
    rows = Firing.objects.filter(which, workspace_key__in=sorted({c.workspace_key for c in candidates})).filter(
        Q(status__in=TAKEN, escalation_of__isnull=True) | Q(reason=Firing.Reason.HOLDOUT)  # as if it had fired
    )
    own: dict[tuple[int, str], list[datetime]] = {}
    for trigger_id, key, decided_at in rows.order_by().values_list("trigger_id", "workspace_key", "decided_at"):
        own.setdefault((trigger_id, key), []).append(decided_at)
    return own


@dataclass
class Decision:
    """A candidate decided: its firing (not yet inserted) and, when deferred, until when."""

    firing: Firing
    deferred_until: datetime | None = None


def _decide_one(candidate: Candidate, recipient: Recipient | None, now: datetime, slots: Slots) -> Decision:
    trigger = candidate.trigger
    caps: list[dict[str, Any]] = []
    reason = _suppression(candidate, recipient, now, caps, slots)
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
    firing = _firing(candidate, recipient, status, reason, explanation, now)
    if status == Firing.Status.FIRED or reason == Firing.Reason.HOLDOUT:
        # a held-out firing sends nothing, but its goal is measured against the treated arms'
        _goal_set(firing, now)
    slots.take(firing)
    return Decision(firing, deferred_until)


def _suppression(
    candidate: Candidate, recipient: Recipient | None, now: datetime, caps: list[dict[str, Any]], slots: Slots
) -> str:
    """The reason this candidate may not fire ("" when it may), recording every cap it was checked against."""
    trigger = candidate.trigger
    if recipient is None:  # unless its actions find their own (rep alerts route: triggers/actions.py)
        routes = actions_route_themselves(candidate.actions if candidate.actions is not None else trigger.actions)
        return "" if routes else Firing.Reason.NO_RECIPIENT
    if candidate.escalation_of is not None:
        return ""
    own = slots.own.get((trigger.pk, candidate.workspace_key), [])
    if trigger.reentry == Trigger.Reentry.ONCE and own:
        return Firing.Reason.REENTRY
    if trigger.cap_seconds and not trigger.transactional:
        since = now - timedelta(seconds=trigger.cap_seconds)
        used = sum(decided_at > since for decided_at in own)
        caps.append({"cap": "trigger", "limit": 1, "window_seconds": trigger.cap_seconds, "used": used})
        if used >= 1:
            return Firing.Reason.CAP_TRIGGER
    if candidate.exempt:
        return ""
    return _cross_cap(candidate, recipient, caps, slots)


def _cross_cap(candidate: Candidate, recipient: Recipient, caps: list[dict[str, Any]], slots: Slots) -> str:
    """The caps across triggers: per workspace, then per person (across workspaces). Firings decided
    earlier in this decision have taken their slots already, so the counts include them."""
    workspace_cap = cap_setting("TRIGGERS_WORKSPACE_CAP", DEFAULT_WORKSPACE_CAP)
    if workspace_cap is not None:
        limit, seconds = workspace_cap
        used = slots.workspace[candidate.workspace_key]
        caps.append({"cap": "workspace", "limit": limit, "window_seconds": seconds, "used": used})
        if used >= limit:
            return Firing.Reason.CAP_WORKSPACE
    person_cap = cap_setting("TRIGGERS_PERSON_CAP", DEFAULT_PERSON_CAP)
    if person_cap is not None:
        limit, seconds = person_cap
        used = slots.person[recipient.key]
        caps.append({"cap": "person", "limit": limit, "window_seconds": seconds, "used": used})
        if used >= limit:
            return Firing.Reason.CAP_PERSON
    return ""


def _firing(
    candidate: Candidate,
    recipient: Recipient | None,
    status: str,
    reason: str,
    explanation: dict[str, Any],
    now: datetime,
) -> Firing:
    trigger = candidate.trigger
    actions = candidate.actions if candidate.actions is not None else trigger.actions
    return Firing(
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


def _insert_all(firings: list[Firing]) -> list[Firing]:
    """Insert the firings in one statement (in a savepoint); should another worker have decided one of them
    meanwhile, each alone instead, the repeat left out. The ones inserted."""
    if connection.features.can_return_rows_from_bulk_insert:
        try:
            with transaction.atomic():
                return Firing.objects.bulk_create(firings)
        except IntegrityError:
            pass
    return [firing for firing in firings if _insert(firing)]


def _insert(firing: Firing) -> bool:
    """Insert one firing in a savepoint; False when another worker or an earlier run already decided it."""
    try:
        with transaction.atomic():
            firing.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def _follow_through(decisions: list[Decision], now: datetime, workspaces: dict[str, Workspace]) -> None:
    """What inserted firings start, in this transaction: a release timer for a deferred one, a follow-up
    timer for one waiting for its goal (one insert), and the dispatches of the fired ones (their messages
    commit with them)."""
    timers = [
        _timer(decision.firing, Timer.Kind.RELEASE, decision.deferred_until)
        for decision in decisions
        if decision.deferred_until is not None
    ]
    timers += [
        _timer(decision.firing, Timer.Kind.FOLLOW_UP, decision.firing.goal_due_at)
        for decision in decisions
        if decision.firing.goal == Firing.Goal.PENDING and decision.firing.goal_due_at is not None
    ]
    Timer.objects.bulk_create(timers, ignore_conflicts=True)
    fired = [decision.firing for decision in decisions if decision.firing.status == Firing.Status.FIRED]
    firings_dispatches_plan(fired, workspaces)  # in this transaction: the firings and their messages commit together


def _timer(firing: Firing, kind: str, due_at: datetime, data: dict[str, Any] | None = None) -> Timer:
    return Timer(
        trigger_id=firing.trigger_id,
        workspace_key=firing.workspace_key,
        kind=kind,
        occurrence=f"firing:{firing.pk}",
        due_at=due_at,
        firing=firing,
        data=data or {},
    )


def _timer_add(firing: Firing, kind: str, due_at: datetime, data: dict[str, Any] | None = None) -> None:
    Timer.objects.get_or_create(
        trigger_id=firing.trigger_id,
        workspace_key=firing.workspace_key,
        kind=kind,
        occurrence=f"firing:{firing.pk}",
        defaults={"due_at": due_at, "firing": firing, "data": data or {}},
    )


def _goal_set(firing: Firing, now: datetime) -> None:
    """A firing with a follow-up waits for its goal until the end of its window (its timer is added once
    the firing has its id)."""
    follow_up = firing_follow_up(firing)  # the trigger's, or the goal its experiment measures
    if follow_up and firing.escalation_of_id is None:
        firing.goal, firing.goal_due_at = Firing.Goal.PENDING, now + timedelta(seconds=follow_up["within_seconds"])


def follow_up_start(firing: Firing, now: datetime) -> None:
    """A fired firing with a follow-up waits for its goal: a timer at the end of its window."""
    follow_up = firing_follow_up(firing)  # the trigger's, or the goal its experiment measures
    if not follow_up or firing.escalation_of_id is not None:
        return
    due = now + timedelta(seconds=follow_up["within_seconds"])
    Firing.objects.filter(pk=firing.pk).update(goal=Firing.Goal.PENDING, goal_due_at=due)
    firing.goal, firing.goal_due_at = Firing.Goal.PENDING, due
    _timer_add(firing, Timer.Kind.FOLLOW_UP, due)
