"""django-q2 task entry points: take arguments, call the service (STYLE habit 5)."""

from __future__ import annotations

from django.conf import settings

from usage.rollups import DEFAULT_LIMIT, stage_changes_record, usage_rollup_batch
from usage.services import behaviour_sweep


def sweep_behaviour() -> dict[str, int]:
    """Every minute: re-evaluate the profiles whose windows moved (at most BEHAVIOUR_SWEEP_LIMIT a run;
    the rest are due still and go next minute); stages that moved go to Salesforce."""
    if not settings.BEHAVIOUR_PROFILES:
        return {"visited": 0, "changed": 0}
    result = behaviour_sweep(limit=settings.BEHAVIOUR_SWEEP_LIMIT, on_changes=stage_changes_record)
    return {"visited": result.visited, "changed": result.changed}


def rollup_usage(event_ids: list[int] | None = None) -> int:
    """Roll up these new usage events, or, given None (the sweeper), drain every new one.

    Returns how many events were counted. Safe to run twice or concurrently: the service claims each
    event once, in the same transaction that counts it.
    """
    if event_ids is not None:
        return sum(
            usage_rollup_batch(event_ids=event_ids[start : start + DEFAULT_LIMIT]).rolled_up
            for start in range(0, len(event_ids), DEFAULT_LIMIT)
        )
    total = 0
    while True:
        result = usage_rollup_batch(limit=DEFAULT_LIMIT)
        total += result.rolled_up
        if result.claimed < DEFAULT_LIMIT:
            return total
