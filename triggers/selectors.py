"""Reads of the trigger engine for pages and the read API (CONTRACT §6 `GET /api/firings/`)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

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
