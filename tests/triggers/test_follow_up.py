"""Follow-up: a goal within T settles the firing; missed with activity at zero, it escalates once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User

from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger, usage
from triggers.models import Firing, Timer
from triggers.services import triggers_evaluate
from triggers.timers import timers_fire_due
from usage.models import Profile

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
FOLLOW_UP = {
    "goal": {"event": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "envelope.send"}]}},
    "within_seconds": 3 * 86400,
    "escalate": [{"channel": "slack", "template": "csm_call"}],
}


@pytest.fixture
def fired() -> Firing:
    rep = User.objects.create_user("rep", email="rep@example.com")
    WorkspaceFactory(workspace_id="ws_f", email="o@acme.io", owner=rep)
    make_trigger("first_send_nudge", {"kind": "event", "event": {"type": "trial.started"}}, follow_up=FOLLOW_UP)
    [firing] = triggers_evaluate(workspace_key="ws_f", new_events=[event("ws_f", "trial.started", T0)], now=T0)
    return firing


def test_the_goal_reached_in_time_settles_it_and_cancels_the_timer(fired):
    send = usage("ws_f", T0 + DAY)

    triggers_evaluate(workspace_key="ws_f", new_events=[send], now=T0 + DAY)

    fired.refresh_from_db()
    assert (fired.goal, fired.goal_event_id) == ("reached", send.pk)
    assert Timer.objects.get(kind="follow_up").status == "cancelled"
    assert timers_fire_due(now=T0 + 4 * DAY) == []


def test_missed_with_no_activity_escalates_once_to_the_owner_rep(fired):
    [escalation] = timers_fire_due(now=T0 + 3 * DAY)

    fired.refresh_from_db()
    assert fired.goal == "escalated"
    assert (escalation.escalation_of, escalation.occurrence, escalation.audience) == (
        fired,
        f"escalation:{fired.pk}",
        "owner_rep",
    )
    assert escalation.actions == [{"channel": "slack", "template": "csm_call", "status": "planned"}]
    assert escalation.explanation["activity_since_firing"] == 0
    assert escalation.explanation["original"]["event_ids"] == fired.explanation["event_ids"]
    assert timers_fire_due(now=T0 + 5 * DAY) == []


def test_missed_with_some_activity_is_recorded_without_escalating(fired):
    usage("ws_f", T0 + DAY, "templates.browse")

    assert timers_fire_due(now=T0 + 3 * DAY) == []

    fired.refresh_from_db()
    assert fired.goal == "missed"
    assert Timer.objects.get(kind="follow_up").outcome == "goal missed; 1 activity events since"


def test_a_metric_goal_is_read_from_the_profile():
    WorkspaceFactory(workspace_id="ws_m", email="o@acme.io")
    follow_up = {"goal": {"condition": {"metric": "active_days_7d", "op": ">=", "value": 3}}, "within_seconds": 86400}
    make_trigger("habit", {"kind": "event", "event": {"type": "trial.started"}}, follow_up=follow_up)
    [firing] = triggers_evaluate(workspace_key="ws_m", new_events=[event("ws_m", "trial.started", T0)], now=T0)
    Profile.objects.create(workspace_key="ws_m", metrics={"active_days_7d": 4}, day=T0.date(), evaluated_at=T0)

    timers_fire_due(now=T0 + DAY)

    firing.refresh_from_db()
    assert firing.goal == "reached"
