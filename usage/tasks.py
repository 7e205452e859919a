"""django-q2 task entry points: take arguments, call the service (STYLE habit 5)."""

from __future__ import annotations

from django.conf import settings

from usage.rollups import Batch, after_batch, stage_changes_record, usage_rollup_drain
from usage.services import Change, behaviour_sweep


def sweep_behaviour() -> dict[str, int]:
    """Every minute: re-evaluate the profiles whose windows moved (at most BEHAVIOUR_SWEEP_LIMIT a run;
    the rest are due still and go next minute); stages that moved go to Salesforce, and every change to
    the hooks (the trigger engine: a cohort entered because time passed)."""
    if not settings.BEHAVIOUR_PROFILES:
        return {"visited": 0, "changed": 0}
    result = behaviour_sweep(limit=settings.BEHAVIOUR_SWEEP_LIMIT, on_changes=_sweep_changes)
    return {"visited": result.visited, "changed": result.changed}


def _sweep_changes(changes: list[Change]) -> None:
    stage_changes_record(changes)
    after_batch(Batch(changes=tuple(changes)))


def rollup_usage(event_ids: list[int] | None = None) -> int:
    """Roll up every new telemetry event, oldest first, in batches of DEFAULT_LIMIT per partition of the
    workspaces (`usage.rollups.usage_rollup_drain`: two workers roll up disjoint workspaces side by side);
    return how many were counted. `event_ids` (the events whose commit rang the doorbell) are among them, or
    already taken.

    Each task drains the backlog instead of only its own ids: when tasks queue up behind a busy cluster,
    the first takes everything that arrived meanwhile in one batch, so each workspace is re-evaluated
    once for all its events of that batch (not once per webhook batch), and the tasks behind it find
    nothing left. Idle, a task finds just its own events, as before. Safe to run twice or concurrently:
    the service claims each event once (PostgreSQL: skipping rows another worker holds), in the same
    transaction that counts it.
    """
    return usage_rollup_drain()
