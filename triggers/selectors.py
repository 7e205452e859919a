"""Reads of the trigger engine for pages and the read API (CONTRACT §6 `GET /api/firings/`), and the why
(and why not) of a firing in words for the rep workspace page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from messaging.models import Dispatch
from triggers.deliveries import action_key
from triggers.models import Experiment, Firing


def firings_list(*, workspace_key: str = "", trigger_key: str = "") -> QuerySet[Firing]:
    """Firings, newest first, optionally of one workspace and one trigger (the API's filters)."""
    rows = Firing.objects.select_related("trigger").order_by("-decided_at", "-id")
    if workspace_key:
        rows = rows.filter(workspace_key=workspace_key)
    if trigger_key:
        rows = rows.filter(trigger__key=trigger_key)
    return rows


def firing_document(firing: Firing) -> dict[str, Any]:
    """One firing in the API's shape: what fired, for whom, each action's channel and status, and why.

    `fired_at` is null for a firing that did not fire (suppressed, or deferred until quiet hours end);
    its `status` and `reason` say which, and the explanation's `why_not` says it in words.
    """
    return {
        "id": firing.pk,
        "trigger": firing.trigger.key,
        "trigger_version": firing.trigger_version,
        "workspace_id": firing.workspace_key,
        "fired_at": firing.fired_at.isoformat().replace("+00:00", "Z") if firing.fired_at else None,
        "status": firing.status,
        "reason": firing.reason or None,
        "arm": firing.arm,
        "actions": [{"channel": action["channel"], "status": action["status"]} for action in firing.actions],
        "explanation": firing.explanation,
    }


def experiment_arm_counts(*, experiment: Experiment) -> list[dict[str, Any]]:
    """The experiment's firings per arm: decided, fired, held back, otherwise suppressed or deferred, and
    their goals (reached, missed — escalated counts as missed — and pending). One grouped query."""
    rows = (
        Firing.objects.filter(experiment=experiment)
        .values("arm")
        .annotate(
            firings=Count("id"),
            fired=Count("id", filter=Q(status=Firing.Status.FIRED)),
            held_back=Count("id", filter=Q(reason=Firing.Reason.HOLDOUT)),
            reached=Count("id", filter=Q(goal=Firing.Goal.REACHED)),
            missed=Count("id", filter=Q(goal__in=[Firing.Goal.MISSED, Firing.Goal.ESCALATED])),
            pending=Count("id", filter=Q(goal=Firing.Goal.PENDING)),
        )
        .order_by("arm")
    )
    return [row | {"other": row["firings"] - row["fired"] - row["held_back"]} for row in rows]


# --- the why and why not, in words (the rep workspace page) ----------------------------------------------------


@dataclass(frozen=True)
class FiringShown:
    """One firing of a workspace as a rep reads it: what, when, what happened, why, and why not."""

    trigger: str
    decided_at: datetime
    status: str
    reason: str
    outcome: str  # what happened, in words
    why: str  # what made it fire, in words
    why_not: str  # for a suppressed or deferred one: what held it, in words
    arm: str | None
    actions: list[tuple[str, str]]  # (channel, delivery status)
    goal: str


def workspace_firings(*, workspace_key: str, limit: int = 30) -> list[FiringShown]:
    """The workspace's latest firings (fired, deferred, suppressed), each with its why and why not in words;
    their deliveries' statuses read in one query."""
    firings = list(firings_list(workspace_key=workspace_key)[:limit])
    keys = Dispatch.objects.filter(source="firing", source_id__in=[f.pk for f in firings]).values_list("key", "status")
    statuses = dict(keys)
    return [_shown(firing, statuses) for firing in firings]


def _shown(firing: Firing, statuses: dict[str, str]) -> FiringShown:
    actions = [
        (action["channel"], statuses.get(action_key(firing.pk, action["channel"], i), action.get("status", "")))
        for i, action in enumerate(firing.actions)
    ]
    return FiringShown(
        trigger=firing.trigger.name, decided_at=firing.decided_at, status=firing.status, reason=firing.reason,
        outcome=_outcome(firing), why=why_words(firing.explanation), why_not=why_not_words(firing), arm=firing.arm,
        actions=actions, goal=firing.get_goal_display() if firing.goal else "",
    )  # fmt: skip


def _outcome(firing: Firing) -> str:
    if firing.status == Firing.Status.FIRED:
        released = firing.explanation.get("released_at")
        return "Fired after quiet hours" if released else "Fired"
    if firing.status == Firing.Status.DEFERRED:
        return "Deferred (quiet hours)"
    return "Held back (experiment)" if firing.reason == Firing.Reason.HOLDOUT else "Suppressed"


def duration_words(seconds: float | int | None) -> str:
    """48 hours, 3 days, 90 minutes: the largest unit that divides it, else hours."""
    if not seconds:
        return "no time"
    seconds = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds / 3600:.1f} hours"


def _when(value: Any) -> str:
    """An ISO time from an explanation as 2026-11-23 12:00 UTC (as it came, when it is not one)."""
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


def why_words(explanation: dict[str, Any]) -> str:
    """What made it fire, in words, from its explanation (never the raw event data beyond the filter's values)."""
    kind = explanation.get("kind")
    try:
        words = WHY[kind](explanation)
    except (KeyError, TypeError, ValueError):  # a kind or a shape this page does not know: say what it is
        words = f"a {kind or 'trigger'} occurrence"
    experiment = explanation.get("experiment")
    if experiment:
        words += f"; experiment {experiment['key']} (version {experiment['version']}), arm {experiment['arm']}"
    return words


def _why_event(e: dict[str, Any]) -> str:
    values = ", ".join(f"{path} = {value}" for path, value in (e.get("values") or {}).items())
    return f"{e.get('event_type')} at {_when(e.get('occurred_at'))}" + (f" ({values})" if values else "")


WHY = {
    "event": _why_event,
    "count": lambda e: (f"{e['count']} matching {e['filter']['type']} events within "
                        f"{duration_words(e['window_seconds'])} (the threshold is {e['threshold']})"),
    "stall": lambda e: (f"started {_when(e['started_at'])} and not finished within "
                        f"{duration_words(e['within_seconds'])}"),
    "silence": lambda e: (f"no activity for {duration_words(e['silent_seconds'])} (the threshold is "
                          f"{duration_words(e['for_seconds'])}; last {_when(e['last_activity_at'])})"),
    "cohort": lambda e: f"{e['change']} the cohort {e['cohort']} on {_when(e['at'])}",
    "stage": lambda e: f"stage changed from {e.get('from') or 'none'} to {e.get('to')} on {_when(e['at'])}",
    "date": lambda e: (f"{e['field'].replace('_', ' ')} {_when(e['date'])}: {e['days_left']} days left "
                       f"(it fires {e['days_before']} days before)"),
    "escalation": lambda e: "its goal was missed and there was no activity since: escalated to a person",
}  # fmt: skip


def why_not_words(firing: Firing) -> str:
    """For a firing that did not (yet) fire: what held it, in words, with the numbers it was decided on."""
    explanation = firing.explanation
    if firing.status == Firing.Status.DEFERRED:
        quiet = explanation.get("quiet_hours") or {}
        return f"Quiet hours in {quiet.get('zone', firing.recipient_zone)}: it goes out at {_when(quiet.get('until'))}."
    if firing.status != Firing.Status.SUPPRESSED:
        return ""
    reason = firing.reason
    if reason == Firing.Reason.HOLDOUT:
        experiment = explanation.get("experiment") or {}
        share = (experiment.get("shares") or {}).get(Experiment.HOLDOUT)
        part = f" ({share:.0%} of workspaces)" if share is not None else ""
        return (f"This workspace is in the holdout of the experiment {experiment.get('key', '')}{part}, kept back to "
                "measure whether the trigger works: nothing was sent; its goal is still tracked.")  # fmt: skip
    if reason in (Firing.Reason.CAP_TRIGGER, Firing.Reason.CAP_WORKSPACE, Firing.Reason.CAP_PERSON):
        return _cap_words(reason, explanation.get("caps") or [])
    if reason == Firing.Reason.REENTRY:
        return "This trigger fires once per workspace, and it already did."
    if reason == Firing.Reason.NO_RECIPIENT:
        return f"Nobody to send it to (audience: {firing.audience})."
    return Firing.Reason(reason).label if reason in Firing.Reason.values else reason


CAP_NAMES = {
    Firing.Reason.CAP_TRIGGER: ("trigger", "this trigger's own cap"),
    Firing.Reason.CAP_WORKSPACE: ("workspace", "the cap on messages to this workspace across triggers"),
    Firing.Reason.CAP_PERSON: ("person", "the cap on messages to this person across triggers"),
}


def _cap_words(reason: str, caps: list[dict[str, Any]]) -> str:
    name, words = CAP_NAMES[reason]
    cap = next((c for c in caps if c.get("cap") == name), None)
    if cap is None:
        return f"Held by {words}."
    return (f"Held by {words}: {cap['used']} of {cap['limit']} already within "
            f"{duration_words(cap['window_seconds'])}; higher-priority triggers go first.")  # fmt: skip
