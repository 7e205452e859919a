"""The processing run calls the trigger engine in its transaction, with the run's new events and its
behaviour changes; the rollup's path reaches it through `triggers.tasks.evaluate_workspaces`."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import Event
from processing.pipeline import workspace_process, workspaces_process
from tests.events.helpers import lifecycle_event, store
from tests.triggers.conftest import T0, make_trigger, usage
from triggers import tasks
from triggers.models import CapLock, Firing, Timer, Trigger
from triggers.services import triggers_enabled
from usage.services import Change

pytestmark = pytest.mark.django_db


def welcome() -> Trigger:
    return make_trigger("welcome", {"kind": "event", "event": {"type": "trial.started"}})


def test_a_processed_event_fires_once_even_when_the_workspace_is_refolded():
    welcome()
    with time_machine.travel(T0, tick=False):
        store(lifecycle_event("e1", "trial.started", at=T0 - timedelta(minutes=5), email="dana@acme.io"))
        workspace_process(workspace_key="ws_1")
        workspace_process(workspace_key="ws_1", force=True)

    [firing] = Firing.objects.all()
    started = Event.objects.get(external_id="e1")
    assert (firing.workspace_key, firing.occurrence, firing.status) == ("ws_1", f"event:{started.pk}", "fired")
    assert firing.recipient == "email:dana@acme.io"


def test_a_batch_of_workspaces_fires_for_each_new_event_and_not_for_completed_ones():
    welcome()
    make_trigger("converted", {"kind": "event", "event": {"type": "subscription.converted"}})
    with time_machine.travel(T0, tick=False):
        store(lifecycle_event("a1", "trial.started", workspace_id="ws_a", at=T0 - timedelta(days=2)))
        workspaces_process(workspace_keys=["ws_a"])
        store(
            lifecycle_event("a2", "subscription.converted", workspace_id="ws_a", at=T0 - timedelta(hours=1)),
            lifecycle_event("b1", "trial.started", workspace_id="ws_b", at=T0 - timedelta(hours=1)),
        )
        workspaces_process(workspace_keys=["ws_a", "ws_b"])

    fired = sorted(Firing.objects.values_list("trigger__key", "workspace_key"))
    assert fired == [("converted", "ws_a"), ("welcome", "ws_a"), ("welcome", "ws_b")]


def test_a_stage_change_of_the_run_fires_a_stage_trigger(settings):
    settings.BEHAVIOUR_PROFILES = True
    make_trigger("onboarding_hello", {"kind": "stage", "from": None, "to": "onboarding"})
    with time_machine.travel(T0, tick=False):
        store(lifecycle_event("e1", "trial.started", at=T0 - timedelta(minutes=5)))
        workspace_process(workspace_key="ws_1")

    [firing] = Firing.objects.filter(trigger__key="onboarding_hello")
    assert (firing.explanation["kind"], firing.explanation["to"]) == ("stage", "onboarding")


def test_with_no_trigger_enabled_the_run_reads_no_trigger_table():
    make_trigger("off", {"kind": "event", "event": {"type": "trial.started"}}, enabled=False)
    assert triggers_enabled() == []  # cached now, as a worker's first run would leave it
    with time_machine.travel(T0, tick=False):
        store(lifecycle_event("e1", "trial.started", at=T0 - timedelta(minutes=5)))
        with CaptureQueriesContext(connection) as queries:
            workspace_process(workspace_key="ws_1")

    engine = [
        model._meta.db_table for model in (Trigger, Firing, Timer, CapLock)
    ]  # the rollups' tables share the prefix
    assert not [q["sql"] for q in queries.captured_queries if any(table in q["sql"] for table in engine)]
    assert not Firing.objects.exists()


def test_saving_a_trigger_refreshes_the_cached_list():
    assert triggers_enabled() == []
    trigger = welcome()
    assert triggers_enabled() == [trigger]


def test_a_failing_evaluation_fails_the_run_and_leaves_nothing_half_done(monkeypatch):
    welcome()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("processing.pipeline.triggers_evaluate_many", broken)
    with time_machine.travel(T0, tick=False):
        store(lifecycle_event("e1", "trial.started", at=T0 - timedelta(minutes=5)))
        outcome = workspace_process(workspace_key="ws_1")

    assert outcome.failed
    assert Event.objects.get(external_id="e1").status == Event.Status.ERROR
    assert not Firing.objects.exists()


def test_the_rollup_task_evaluates_usage_events_and_changes_given_as_plain_data():
    make_trigger("sends", {"kind": "count", "event": {"type": "usage.recorded"}, "count": 2, "within_seconds": 3600})
    make_trigger("activated", {"kind": "stage", "from": "onboarding", "to": "activated"})
    from tests.factories import WorkspaceFactory

    WorkspaceFactory(workspace_id="ws_u", email="o@acme.io")
    ids = [usage("ws_u", T0 - timedelta(minutes=m)).pk for m in (10, 5)]
    change = asdict(Change("ws_u", stage_from="onboarding", stage_to="activated"))
    with time_machine.travel(T0, tick=False):
        assert tasks.evaluate_workspaces(["ws_u"], [change], ids) == 1  # no stage period: the stage fires nothing
        assert tasks.evaluate_workspaces(["ws_u"], [change], ids) == 0

    [firing] = Firing.objects.all()
    assert (firing.trigger.key, firing.explanation["count"]) == ("sends", 2)
