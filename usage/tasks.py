"""django-q2 task entry points: take arguments, call the service (STYLE habit 5)."""

from __future__ import annotations

from django.conf import settings

from triggers.services import stage_changes_record
from usage.services import behaviour_sweep


def sweep_behaviour() -> dict[str, int]:
    """Every minute: re-evaluate the profiles whose windows moved (at most BEHAVIOUR_SWEEP_LIMIT a run;
    the rest are due still and go next minute); stages that moved go to Salesforce."""
    if not settings.BEHAVIOUR_PROFILES:
        return {"visited": 0, "changed": 0}
    result = behaviour_sweep(limit=settings.BEHAVIOUR_SWEEP_LIMIT, on_changes=stage_changes_record)
    return {"visited": result.visited, "changed": result.changed}
