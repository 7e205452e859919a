"""A workspace's lifecycle events as evidence for its alerts (read-only use of the event cache)."""

from __future__ import annotations

from collections.abc import Sequence

from events.models import Event
from workspaces.lifecycle import LIFECYCLE_TYPES, LifecycleEvent

#: Events that count towards the workspace's state (the same statuses the pipeline folds).
COUNTED = ("new", "processing", "completed", "error", "review")


def workspaces_events(*, workspace_keys: Sequence[str]) -> dict[str, list[LifecycleEvent]]:
    """Each workspace's lifecycle events (the fold's input), for several workspaces in one query."""
    rows = Event.objects.filter(
        workspace_key__in=list(workspace_keys), type__in=LIFECYCLE_TYPES, status__in=COUNTED
    ).only("workspace_key", "external_id", "type", "occurred_at", "payload", "source")
    events: dict[str, list[LifecycleEvent]] = {}
    for row in rows:
        data = row.payload.get("data") if isinstance(row.payload, dict) else None
        event = LifecycleEvent(row.external_id, row.type, row.occurred_at, data or {}, row.source)
        events.setdefault(row.workspace_key, []).append(event)
    return {key: sorted(found, key=lambda event: event.sort_key) for key, found in events.items()}
