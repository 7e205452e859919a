"""Storing lifecycle events the way the webhook does, for processor tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from events.services import events_store
from events.store import NewEvent

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

DEFAULT_DATA = {
    "trial.started": {"email": "dana@acme.io", "first_name": "Dana", "company": "Acme"},
    "subscription.converted": {"plan": "team", "mrr": "297.00"},
    "workspace.churned": {},
    "usage.recorded": {"feature": "export"},
}


def lifecycle_event(
    external_id: str, type_: str, *, workspace_id: str = "ws_1", at: datetime = T0, **data: Any
) -> NewEvent:
    body_data = {"workspace_id": workspace_id, **DEFAULT_DATA[type_], **data}
    return NewEvent(
        source="provisioning",
        external_id=external_id,
        type=type_,
        occurred_at=at,
        workspace_key=workspace_id,
        payload={"type": type_, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": body_data},
    )


def store(*events: NewEvent) -> list[bool]:
    return events_store(list(events))


def queued_tasks(func: str) -> list[dict[str, Any]]:
    """The tasks for `func` waiting in the ORM broker's queue, decoded."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    tasks = (SignedPackage.loads(row.payload) for row in OrmQ.objects.all())
    return [task for task in tasks if task["func"] == func]
