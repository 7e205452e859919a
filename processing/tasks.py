"""django-q2 task entry points: take ids, load, call a service (STYLE habit 5). All are idempotent."""

from __future__ import annotations

from django.conf import settings

from alerts.services import workspaces_alerts_after_processing
from failures.services import heartbeat_beat
from processing.claims import workspaces_waiting
from processing.housekeeping import task_results_prune
from processing.pipeline import workspaces_process
from processing.sweeper import events_sweep
from salesforce.drain import drain_request
from workspaces.actors import acting_as_system


def process_workspaces(workspace_keys: list[str], force: bool = False) -> dict[str, int]:
    """Fold and apply each workspace; failures are recorded on the event rows, never raised.

    Workspaces whose new events still wait for their own task are taken along, up to
    PROCESSING_TASK_MAX_WORKSPACES: under a backlog a task does more at once, far cheaper per event.
    """
    keys = list(dict.fromkeys(workspace_keys))
    if not force:  # a forced re-fold (an admin, a busy colleague) is about its own workspaces
        keys += workspaces_waiting(besides=keys, limit=settings.PROCESSING_TASK_MAX_WORKSPACES - len(keys))
    with acting_as_system():  # one actor lookup for the task, not one per workspace
        outcomes = workspaces_process(workspace_keys=keys, force=force)
        applied = [outcome.workspace_key for outcome in outcomes if outcome.applied]
        if settings.SALESFORCE_SYNC != "off" and applied:
            drain_request()  # committed: a drainer sends it within moments (one task for a burst)
        # After every commit, outside the locks: the rep-alert triggers' pass (the engine decides, alerts raise;
        # alerts/engine.py), its rules' configuration read once for the task.
        workspaces_alerts_after_processing(workspace_keys=applied)
    return {
        "workspaces": len(outcomes),
        "claimed": sum(o.claimed for o in outcomes),
        "failed": sum(o.failed for o in outcomes),
    }


def process_marketo_leads(event_ids: list[int]) -> int:
    from linking.marketo import marketo_events_apply

    return marketo_events_apply(event_ids=event_ids)


def sweep() -> dict[str, int]:
    """The scheduled sweeper (every minute): re-ring the doorbell for anything the queue lost.

    A finished sweep stamps the sweeper's heartbeat; /healthz turns 503 when it goes stale.
    """
    counts = events_sweep()
    heartbeat_beat(name="sweeper", details=counts)
    return counts


def prune_task_results() -> int:
    """Keep the newest Q_SUCCESS_KEEP successful task results (scheduled every 5 minutes)."""
    return task_results_prune()
