"""Driving the processor the way production does: store events as the webhooks would, then process."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from events.models import Event
from events.services import MARKETO_TYPE, events_store
from events.store import NewEvent
from linking.marketo import marketo_events_apply
from processing.pipeline import workspace_process
from workspaces.models import Workspace

TRIAL_AT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
PAID_AT = datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC)
_ids = itertools.count(1)


def lifecycle(
    type_: str, *, workspace_id: str = "ws_1", at: datetime | None = None, msg_id: str = "", **data: Any
) -> NewEvent:
    """A signed-webhook event as stored; `data` is the body's data minus the workspace id."""
    at = at or (TRIAL_AT if type_ == "trial.started" else PAID_AT)
    return NewEvent(
        source=Event.Source.PROVISIONING,
        external_id=msg_id or f"msg_{next(_ids):06d}",
        type=type_,
        occurred_at=at,
        workspace_key=workspace_id,
        payload={
            "type": type_,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "data": {"workspace_id": workspace_id, **data},
        },
    )


def trial(email: str = "dana@acme.io", *, workspace_id: str = "ws_1", **data: Any) -> NewEvent:
    defaults = {"first_name": "Dana", "last_name": "Reyes", "company": "Acme"}
    return lifecycle("trial.started", workspace_id=workspace_id, email=email, **{**defaults, **data})


def converted(email: str = "dana@acme.io", *, workspace_id: str = "ws_1", **data: Any) -> NewEvent:
    return lifecycle(
        "subscription.converted", workspace_id=workspace_id, email=email, **{"plan": "team", "mrr": "297.00", **data}
    )


def process(*events: NewEvent, workspace_id: str = "ws_1", force: bool = False) -> Workspace:
    """Store the events (if any), process the workspace synchronously, and return it fresh."""
    if events:
        events_store(list(events))
    outcome = workspace_process(workspace_key=workspace_id, force=force)
    assert not outcome.failed, "processing raised; see the log"
    return Workspace.objects.select_related("lead", "account", "contact").get(workspace_id=workspace_id)


def marketo_lead(lead_id: str, email: str, **fields: str) -> int:
    """Receive a Marketo lead as the webhook stores it, then apply it; return how many were applied."""
    body = {"lead_id": lead_id, "email": email, **fields}
    events_store(
        [
            NewEvent(
                source=Event.Source.MARKETO,
                external_id=lead_id,
                type=MARKETO_TYPE,
                occurred_at=timezone.now(),
                workspace_key="",
                payload=body,
            )
        ]
    )
    return marketo_events_apply()
