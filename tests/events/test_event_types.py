"""CONTRACT §2's event types: one registry says how each validates and what handles it, and every type the
webhook accepts ends handled (folded or rolled up), never left `new`."""

from __future__ import annotations

import importlib
from datetime import UTC, date, datetime
from typing import Any

import pytest

from events.models import Event
from events.schemas import DATA_SCHEMAS, EVENT_TYPES, ROLLED_UP_TYPES, Handling, types_handled
from tests.conftest import lifecycle_body
from usage.models import PlanLimitDaily, Profile, SupportTicket
from workspaces.lifecycle import FOLDS
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

TRIAL = {"workspace_id": "ws_t", "email": "dana@acme.io"}
#: A valid `data` for every type the webhook accepts (the test below insists on one per type).
EXAMPLES: dict[str, dict[str, Any]] = {
    "trial.started": {**TRIAL, "timezone": "Europe/Berlin", "acquisition_channel": "ads", "campaign": "q4"},
    "subscription.converted": {"workspace_id": "ws_t", "plan": "team", "mrr": "297.00"},
    "workspace.churned": {"workspace_id": "ws_t", "reason": "budget"},
    "usage.recorded": {"workspace_id": "ws_t", "feature": "envelope.send", "product": "esign"},
    "support.ticket_opened": {"workspace_id": "ws_t", "ticket_id": "T-1", "priority": "high", "subject": "Help"},
    "support.ticket_resolved": {"workspace_id": "ws_t", "ticket_id": "T-1", "satisfaction": 4},
    "plan.limit_reached": {"workspace_id": "ws_t", "limit": "seats", "used": 5, "allowed": 5},
}


def drain_queue() -> None:
    """Run the processing and rollup tasks the doorbell queued (ORM broker), as a worker would, with their
    on-commit callbacks, until none is left."""
    from django.test import TestCase
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    while rows := list(OrmQ.objects.all()):
        OrmQ.objects.filter(pk__in=[row.pk for row in rows]).delete()
        for task in (SignedPackage.loads(row.payload) for row in rows):
            if task["func"] in ("processing.tasks.process_workspaces", "usage.tasks.rollup_usage"):
                module, _, name = task["func"].rpartition(".")
                with TestCase.captureOnCommitCallbacks(execute=True):
                    getattr(importlib.import_module(module), name)(*task["args"], **task["kwargs"])


def test_every_type_the_webhook_accepts_is_folded_or_rolled_up():
    for name in DATA_SCHEMAS:
        assert EVENT_TYPES[name].handling in (Handling.FOLDED, Handling.ROLLED_UP), name
    assert set(EXAMPLES) == set(DATA_SCHEMAS), "one example per accepted type"


def test_the_folded_types_are_exactly_the_folds():
    assert set(types_handled(Handling.FOLDED)) == set(FOLDS)


def test_the_new_types_are_rolled_up():
    assert {"support.ticket_opened", "support.ticket_resolved", "plan.limit_reached"} <= set(ROLLED_UP_TYPES)


def test_every_accepted_type_ends_completed(send_webhook, django_capture_on_commit_callbacks):
    # given: one event of each type, in time order
    for minute, (name, data) in enumerate(EXAMPLES.items()):
        with django_capture_on_commit_callbacks(execute=True):
            response = send_webhook(lifecycle_body(name, data, f"2026-11-20T14:{minute:02d}:00Z"), msg_id=f"m_{name}")
        assert response.status_code == 202, response.json()
        assert response.json()["status"] == "accepted"
    # when
    drain_queue()
    # then
    statuses = dict(Event.objects.values_list("type", "status"))
    assert statuses == dict.fromkeys(EXAMPLES, Event.Status.COMPLETED)


def test_trial_started_keeps_zone_channel_and_campaign_on_the_workspace(
    send_webhook, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        send_webhook(lifecycle_body("trial.started", EXAMPLES["trial.started"]))
    drain_queue()
    workspace = Workspace.objects.get(workspace_id="ws_t")
    assert (workspace.timezone, workspace.acquisition_channel, workspace.campaign) == ("Europe/Berlin", "ads", "q4")


def test_a_later_trial_without_them_keeps_them(send_webhook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        send_webhook(lifecycle_body("trial.started", EXAMPLES["trial.started"], "2026-11-20T14:00:00Z"))
        send_webhook(lifecycle_body("trial.started", TRIAL, "2026-11-21T14:00:00Z"))
    drain_queue()
    assert Workspace.objects.get(workspace_id="ws_t").timezone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("trial.started", {**TRIAL, "timezone": "Mars/Olympus"}, "data.timezone"),
        ("trial.started", {**TRIAL, "timezone": "../../etc/passwd"}, "data.timezone"),
        ("trial.started", {**TRIAL, "timezone": 5}, "data.timezone"),
        ("trial.started", {**TRIAL, "campaign": "x" * 129}, "data.campaign"),
        ("support.ticket_opened", {"workspace_id": "w"}, "data.ticket_id"),
        ("support.ticket_opened", {"workspace_id": "w", "ticket_id": "t", "priority": "p1"}, "data.priority"),
        ("support.ticket_opened", {"workspace_id": "w", "ticket_id": "t", "user_email": "nope"}, "data.user_email"),
        ("support.ticket_resolved", {"workspace_id": "w", "ticket_id": "t", "satisfaction": 6}, "data.satisfaction"),
        ("support.ticket_resolved", {"workspace_id": "w", "ticket_id": "t", "satisfaction": 0}, "data.satisfaction"),
        ("support.ticket_resolved", {"ticket_id": "t"}, "data.workspace_id"),
        ("plan.limit_reached", {"workspace_id": "w"}, "data.limit"),
        ("plan.limit_reached", {"workspace_id": "w", "limit": "seats", "used": -1}, "data.used"),
        ("plan.limit_reached", {"workspace_id": "w", "limit": "seats", "allowed": 1.5}, "data.allowed"),
    ],
)
def test_new_fields_are_validated(send_webhook, event_type, data, field):
    response = send_webhook(lifecycle_body(event_type, data), msg_id="msg_bad")
    assert response.status_code == 422
    assert field in response.json()["fields"]
    assert Event.objects.get(external_id="msg_bad").status == Event.Status.REJECTED


def test_tickets_and_limits_are_rolled_up_with_the_behaviour_refreshed(
    send_webhook, django_capture_on_commit_callbacks, settings
):
    settings.BEHAVIOUR_PROFILES = True
    berlin_late = "2026-11-20T23:30:00Z"  # 00:30 on the 21st in Berlin
    with django_capture_on_commit_callbacks(execute=True):
        send_webhook(lifecycle_body("trial.started", EXAMPLES["trial.started"], "2026-11-20T10:00:00Z"))
    drain_queue()
    with django_capture_on_commit_callbacks(execute=True):
        send_webhook(lifecycle_body("support.ticket_resolved", EXAMPLES["support.ticket_resolved"], berlin_late))
        send_webhook(lifecycle_body("support.ticket_opened", EXAMPLES["support.ticket_opened"], "2026-11-20T12:00:00Z"))
        send_webhook(lifecycle_body("plan.limit_reached", EXAMPLES["plan.limit_reached"], berlin_late))
        send_webhook(lifecycle_body("plan.limit_reached", EXAMPLES["plan.limit_reached"], berlin_late))
    drain_queue()
    ticket = SupportTicket.objects.get(workspace_key="ws_t", ticket_id="T-1")
    assert (ticket.priority, ticket.satisfaction) == ("high", 4)
    assert ticket.opened_at == datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert ticket.resolved_at == datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    limits = PlanLimitDaily.objects.get(workspace_key="ws_t", limit="seats")
    assert (limits.day, limits.hits) == (date(2026, 11, 21), 2), "counted on the workspace's local day"
    assert Profile.objects.filter(workspace_key="ws_t").exists()
    assert not Event.objects.exclude(status=Event.Status.COMPLETED).exists()


def test_an_unreadable_stored_ticket_goes_to_review_and_the_rest_roll_up(django_capture_on_commit_callbacks):
    from tests.factories import EventFactory
    from usage.rollups import usage_rollup

    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    bad = EventFactory(
        type="support.ticket_opened", occurred_at=at, workspace_key="ws_t", payload={"data": {"workspace_id": "ws_t"}}
    )
    good = EventFactory(
        type="plan.limit_reached",
        occurred_at=at,
        workspace_key="ws_t",
        payload={"data": EXAMPLES["plan.limit_reached"]},
    )
    assert usage_rollup() == 1
    bad.refresh_from_db()
    good.refresh_from_db()
    assert (bad.status, good.status) == (Event.Status.REVIEW, Event.Status.COMPLETED)
    assert "data.ticket_id" in bad.notes
