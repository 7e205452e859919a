"""A workspace's lifecycle events as evidence for its alerts (read-only use of the event cache)."""

from __future__ import annotations

from events.models import Event
from workspaces.lifecycle import LIFECYCLE_TYPES, LifecycleEvent

#: Events that count towards the workspace's state (the same statuses the pipeline folds).
COUNTED = ("new", "processing", "completed", "error", "review")


def workspace_events(*, workspace_key: str) -> list[LifecycleEvent]:
    """The workspace's lifecycle events in fold order, with their payload data (unvalidated)."""
    rows = Event.objects.filter(workspace_key=workspace_key, type__in=LIFECYCLE_TYPES, status__in=COUNTED).only(
        "external_id", "type", "occurred_at", "payload", "source"
    )
    events = []
    for row in rows:
        data = row.payload.get("data") if isinstance(row.payload, dict) else None
        events.append(LifecycleEvent(row.external_id, row.type, row.occurred_at, data or {}, row.source))
    return sorted(events, key=lambda event: event.sort_key)
