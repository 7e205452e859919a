"""The seams later work plugs into: the API's firing document, planned actions, the sweep task, date backfill."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger, usage
from triggers import tasks
from triggers.definitions import triggers_load
from triggers.models import Firing, Timer
from triggers.selectors import firing_document, firings_list
from triggers.services import firing_planned_actions, triggers_evaluate

pytestmark = pytest.mark.django_db


def test_a_firing_reads_in_the_apis_shape_with_its_planned_actions():
    WorkspaceFactory(workspace_id="ws_a", email="o@acme.io")
    actions = [{"channel": "email", "template": "welcome"}, {"channel": "slack", "template": "heads_up"}]
    make_trigger("welcome", {"kind": "event", "event": {"type": "trial.started"}}, actions=actions)
    started = event("ws_a", "trial.started", T0)
    [firing] = triggers_evaluate(workspace_key="ws_a", new_events=[started], now=T0)

    document = firing_document(firings_list(workspace_key="ws_a", trigger_key="welcome").get())

    assert document == {
        "id": firing.pk, "trigger": "welcome", "trigger_version": 1, "workspace_id": "ws_a",
        "fired_at": "2026-11-23T12:00:00Z", "status": "fired", "reason": None, "arm": None,
        "actions": [{"channel": "email", "status": "planned"}, {"channel": "slack", "status": "planned"}],
        "explanation": firing.explanation,
    }  # fmt: skip
    assert [(a.channel, a.template, a.recipient, a.key) for a in firing_planned_actions(firing)] == [
        ("email", "welcome", "email:o@acme.io", f"firing-{firing.pk}-email-0"),
        ("slack", "heads_up", "email:o@acme.io", f"firing-{firing.pk}-slack-1"),
    ]
    assert not firings_list(trigger_key="other").exists()


def test_the_task_sweeps_in_batches_until_nothing_is_due(monkeypatch):
    monkeypatch.setattr(tasks, "BATCH", 2)
    make_trigger("gone_quiet", {"kind": "silence", "for_seconds": 60})
    past = timezone.now() - timedelta(hours=1)
    for i in range(5):
        WorkspaceFactory(workspace_id=f"ws_b{i}", email=f"o{i}@acme.io")
        triggers_evaluate(workspace_key=f"ws_b{i}", new_events=[usage(f"ws_b{i}", past)], now=past)

    assert tasks.fire_due_timers() == 5
    assert tasks.fire_due_timers() == 0
    assert Firing.objects.count() == 5


def test_loading_a_date_trigger_sets_timers_for_workspaces_without_new_events():
    soon, later = timezone.now() + timedelta(days=5), timezone.now() + timedelta(days=20)
    WorkspaceFactory(workspace_id="ws_d1", trial_expires_at=soon)
    WorkspaceFactory(workspace_id="ws_d2", trial_expires_at=later)
    WorkspaceFactory(workspace_id="ws_d3", trial_expires_at=later, status="paid")

    triggers_load({"format": 1, "triggers": [{
        "key": "trial_ending", "name": "Trial ending", "when": {"kind": "date", "field": "trial_expires_at",
        "days_before": 3}, "actions": [{"channel": "email", "template": "trial_ending"}],
    }]})  # fmt: skip

    due = dict(Timer.objects.values_list("workspace_key", "due_at"))
    assert due == {"ws_d1": soon - timedelta(days=3), "ws_d2": later - timedelta(days=3)}


def test_the_timer_sweep_is_scheduled_every_minute():
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="triggers.tasks.fire_due_timers")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)
