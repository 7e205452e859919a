"""django-q2 task entry points: take ids, load, call a service (STYLE habit 5). All are idempotent."""

from __future__ import annotations

from django.conf import settings

from alerts.services import workspaces_alerts_after_processing
from events.pipeline import workspace_process
from events.sweeper import events_sweep
from ops.services import heartbeat_beat
from sync.drain import drain_request
from workspaces.actors import acting_as_system


def process_workspaces(workspace_keys: list[str], force: bool = False) -> dict[str, int]:
    """Fold and apply each workspace; failures are recorded on the event rows, never raised."""
    with acting_as_system():  # one actor lookup for the task, not one per workspace
        outcomes = [workspace_process(workspace_key=key, force=force, alerts=False) for key in workspace_keys]
        applied = [outcome.workspace_key for outcome in outcomes if outcome.applied]
        if settings.SALESFORCE_SYNC != "off" and applied:
            drain_request()  # committed: a drainer sends it within moments (one task for a burst)
        # After every commit, outside the locks; the rules' configuration is read once for the task.
        workspaces_alerts_after_processing(workspace_keys=applied)
    return {
        "workspaces": len(outcomes),
        "claimed": sum(o.claimed for o in outcomes),
        "failed": sum(o.failed for o in outcomes),
    }


def process_marketo_leads(event_ids: list[int]) -> int:
    from events.marketo import marketo_events_apply

    return marketo_events_apply(event_ids=event_ids)


def sweep() -> dict[str, int]:
    """The scheduled sweeper (every minute): re-ring the doorbell for anything the queue lost.

    A finished sweep stamps the sweeper's heartbeat; /healthz turns 503 when it goes stale.
    """
    counts = events_sweep()
    heartbeat_beat(name="sweeper", details=counts)
    return counts
