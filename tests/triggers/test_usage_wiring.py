"""Usage events and behaviour changes reach the trigger engine: the batch webhook stores them, the rollup
rolls them up and hands what it changed to the engine's hook (usage may not import triggers), which
decides the firings and plans their dispatches in the rollup's own transaction: they commit with it or not
at all. Exactly once: the same evaluation again decides nothing new; a failed evaluation runs again as a
task (`triggers.tasks.evaluate_workspaces`) without holding the rollup back."""

from __future__ import annotations

import importlib
import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import TestCase

from events.models import Event
from failures.models import ErrorKind
from messaging.models import Dispatch
from processing.pipeline import workspace_process
from tests.conftest import signed_headers
from tests.events.helpers import lifecycle_event, store
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, make_trigger
from tests.usage.test_usage_rollup import run_concurrently, usage_event
from triggers import tasks
from triggers.models import Firing, Trigger
from triggers.services import triggers_interest
from usage.definitions import definitions_load, shipped_document
from usage.models import Profile, StagePeriod
from usage.rollups import Batch, RolledUpEvent, usage_rollup
from usage.tasks import sweep_behaviour

pytestmark = pytest.mark.django_db
EMAIL = [{"channel": "email", "template": "welcome"}]
FAILED_EXPORTS = {
    "kind": "count",
    "event": {"type": "usage.recorded", "where": [{"path": "outcome", "op": "==", "value": "error"}]},
    "count": 3,
    "within_seconds": 3600,
}
TASKS = ("usage.tasks.rollup_usage", tasks.EVALUATE_TASK)


def usage_item(n: int, at, **data: Any) -> dict[str, Any]:
    stamp = at.isoformat().replace("+00:00", "Z")
    data = {"workspace_id": "ws_w", "feature": "export", "user_email": "dana@acme.io", **data}
    return {"id": f"evt_wiring_{n}", "type": "usage.recorded", "timestamp": stamp, "data": data}


def send_batch(client, items: list[dict[str, Any]], django_capture_on_commit_callbacks) -> None:
    body = json.dumps({"events": items})
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/webhooks/provisioning/batch/", data=body, content_type="application/json",
            headers=signed_headers(body, msg_id=f"batch_{items[0]['id']}"),
        )  # fmt: skip
    assert answer.status_code == 202, answer.content


def run_queued() -> list[dict[str, Any]]:
    """Run the rollup and evaluation tasks waiting in the ORM broker, as a worker would (their on-commit
    callbacks included), until none is left; return the tasks run."""
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    ran = []
    while rows := [row for row in OrmQ.objects.all() if SignedPackage.loads(row.payload)["func"] in TASKS]:
        OrmQ.objects.filter(pk__in=[row.pk for row in rows]).delete()
        for task in (SignedPackage.loads(row.payload) for row in rows):
            run(task)
            ran.append(task)
    return ran


def run(task: dict[str, Any]) -> Any:
    module, _, name = task["func"].rpartition(".")
    with TestCase.captureOnCommitCallbacks(execute=True):
        return getattr(importlib.import_module(module), name)(*task["args"], **task["kwargs"])


def test_three_failed_exports_sent_in_a_batch_fire_once_and_plan_one_email(client, django_capture_on_commit_callbacks):
    # given: a workspace and a count trigger, and a batch holding three failed exports and a success
    WorkspaceFactory(workspace_id="ws_w", email="owner@acme.io", name="Acme")
    make_trigger("failed_exports", FAILED_EXPORTS, actions=EMAIL)
    with time_machine.travel(T0, tick=False):
        items = [usage_item(n, T0 - timedelta(minutes=10 - n), outcome="error") for n in range(3)]
        send_batch(client, [*items, usage_item(3, T0, outcome="success")], django_capture_on_commit_callbacks)
        # when: the rollup task runs
        ran = run_queued()
        # then: in its transaction, one firing naming the three events, one email planned to the events' user
        assert [task["func"] for task in ran] == ["usage.tasks.rollup_usage"]
        [firing] = Firing.objects.all()
        assert (firing.status, firing.explanation["count"], len(firing.explanation["event_ids"])) == ("fired", 3, 3)
        [row] = Dispatch.objects.all()
        assert (row.source_id, row.channel, row.recipient) == (firing.pk, "email", "dana@acme.io")
        assert row.status == Dispatch.Status.PENDING
        # and: the same events evaluated again (a replayed batch, a retried task) decide nothing new
        ids = sorted(Event.objects.filter(type="usage.recorded").values_list("pk", flat=True))
        assert tasks.evaluate_workspaces(["ws_w"], [], ids) == 0
    assert (Firing.objects.count(), Dispatch.objects.count()) == (1, 1)


def test_a_cohort_entered_through_usage_fires_the_cohort_trigger(client, settings, django_capture_on_commit_callbacks):
    # given: profiles on, the shipped cohorts, a trigger on entering "feature shallow, frequent"
    settings.BEHAVIOUR_PROFILES = True
    definitions_load(shipped_document())
    WorkspaceFactory(workspace_id="ws_w", email="owner@acme.io")
    when = {"kind": "cohort", "cohort": "feature_shallow_frequent", "change": "entered"}
    make_trigger("shallow", when, actions=EMAIL)
    with time_machine.travel(T0, tick=False):
        # when: one feature used on four of the last seven days, in one batch
        send_batch(client, [usage_item(n, T0 - timedelta(days=n, hours=1)) for n in range(4)],
                   django_capture_on_commit_callbacks)  # fmt: skip
        run_queued()
    # then: the rollup's re-evaluation entered the cohort, and the engine fired on it with its why
    [firing] = Firing.objects.all()
    assert (firing.explanation["kind"], firing.explanation["cohort"]) == ("cohort", "feature_shallow_frequent")
    assert firing.occurrence == f"cohort:{firing.explanation['membership_id']}:entered"
    assert Dispatch.objects.filter(source_id=firing.pk, recipient="owner@acme.io").count() == 1


def test_a_stage_reached_because_time_passed_fires_through_the_sweep(settings, django_capture_on_commit_callbacks):
    # given: profiles on, a workspace last active 13 days ago (evaluated then), a trigger on "dormant"
    settings.BEHAVIOUR_PROFILES = True
    definitions_load(shipped_document())
    WorkspaceFactory(workspace_id="ws_w", email="owner@acme.io")
    make_trigger("dormant", {"kind": "stage", "from": None, "to": "dormant"}, actions=EMAIL)
    with time_machine.travel(T0, tick=False):
        usage_event(T0 - timedelta(days=13), workspace_id="ws_w")
        with django_capture_on_commit_callbacks(execute=True):
            usage_rollup()
        run_queued()
    assert Profile.objects.get(workspace_key="ws_w").stage.key != "dormant"
    assert not Firing.objects.exists()
    # when: two days pass and the every-minute sweep runs
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            sweep_behaviour()
        run_queued()
    # then: the sweep's stage change reached the engine
    [firing] = Firing.objects.all()
    assert (firing.explanation["kind"], firing.explanation["to"]) == ("stage", "dormant")


def test_usage_before_the_workspace_exists_waits_for_the_run_that_creates_it(
    client, settings, django_capture_on_commit_callbacks
):
    # given: profiles on; a count trigger and a stage trigger; failed exports of a workspace not yet known
    settings.BEHAVIOUR_PROFILES = True
    definitions_load(shipped_document())
    make_trigger("failed_exports", FAILED_EXPORTS, actions=EMAIL)
    make_trigger("onboarding", {"kind": "stage", "from": None, "to": "onboarding"}, actions=EMAIL)
    with time_machine.travel(T0, tick=False):
        items = [usage_item(n, T0 - timedelta(minutes=10 - n), outcome="error") for n in range(3)]
        send_batch(client, items, django_capture_on_commit_callbacks)
        run_queued()
        # then: rolled up (its stage opened), and nothing decided for a workspace the engine does not know
        assert StagePeriod.objects.filter(workspace_key="ws_w", exited_at__isnull=True).exists()
        assert not Firing.objects.exists()
        # when: its trial.started arrives and is processed (the run that creates the workspace)
        store(lifecycle_event("t1", "trial.started", workspace_id="ws_w", at=T0 - timedelta(hours=1),
                              email="owner@acme.io"))  # fmt: skip
        workspace_process(workspace_key="ws_w")
        # and again: a later run finds it all decided
        workspace_process(workspace_key="ws_w", force=True)
    # then: the count and the stage it entered meanwhile fired, once each
    fired = dict(Firing.objects.values_list("trigger__key", "status"))
    assert fired == {"failed_exports": "fired", "onboarding": "fired"}
    assert Firing.objects.get(trigger__key="failed_exports").recipient == "email:dana@acme.io"


def test_no_evaluation_is_enqueued_for_what_no_enabled_trigger_reads(client, django_capture_on_commit_callbacks):
    # given: one trigger on another event type, one disabled trigger on usage
    WorkspaceFactory(workspace_id="ws_w")
    make_trigger("tickets", {"kind": "event", "event": {"type": "support.ticket_opened"}}, actions=EMAIL)
    make_trigger("usage_off", {"kind": "event", "event": {"type": "usage.recorded"}}, actions=EMAIL, enabled=False)
    with time_machine.travel(T0, tick=False):
        send_batch(client, [usage_item(0, T0)], django_capture_on_commit_callbacks)
        ran = run_queued()
    # then: the rollup ran, and enqueued no evaluation
    assert [task["func"] for task in ran] == ["usage.tasks.rollup_usage"]


def test_the_hook_evaluates_a_chunk_of_workspaces_at_a_time_with_their_own_events(monkeypatch):
    make_trigger("any_usage", {"kind": "event", "event": {"type": "usage.recorded"}}, actions=EMAIL)
    monkeypatch.setattr(tasks, "EVALUATE_CHUNK", 2)
    events = tuple(RolledUpEvent(n, "usage.recorded", f"ws_{n % 3}") for n in range(6))
    events += (RolledUpEvent(99, "plan.limit_reached", "ws_9"),)  # no trigger reads it
    evaluated = []
    monkeypatch.setattr(tasks, "_evaluate", lambda keys, changes, ids, enabled: evaluated.append((keys, ids)) or 0)
    tasks.usage_batch_evaluate(Batch(events=events))
    assert evaluated == [(["ws_0", "ws_1"], [0, 3, 1, 4]), (["ws_2"], [2, 5])]


def test_a_failed_evaluation_lets_the_rollup_commit_and_runs_again_as_a_task(
    client, monkeypatch, django_capture_on_commit_callbacks
):
    # given: the engine fails once on the batch's workspace
    WorkspaceFactory(workspace_id="ws_w", email="owner@acme.io")
    make_trigger("failed_exports", FAILED_EXPORTS, actions=EMAIL)
    real, calls = tasks.triggers_evaluate_many, []

    def fails_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("a bug in a trigger")
        return real(**kwargs)

    monkeypatch.setattr(tasks, "triggers_evaluate_many", fails_once)
    with time_machine.travel(T0, tick=False):
        items = [usage_item(n, T0 - timedelta(minutes=10 - n), outcome="error") for n in range(3)]
        send_batch(client, items, django_capture_on_commit_callbacks)
        # when
        ran = run_queued()
    # then: the events were rolled up all the same, the failure recorded, and the task that ran again fired
    assert [task["func"] for task in ran] == list(TASKS)
    assert not Event.objects.filter(type="usage.recorded").exclude(status="completed").exists()
    assert ErrorKind.objects.filter(kind="trigger evaluation: RuntimeError").exists()
    assert Firing.objects.get().explanation["count"] == 3


def test_a_rollup_killed_after_the_evaluation_leaves_no_firing_and_its_rerun_fires_once(monkeypatch):
    # given: three failed exports stored, and a worker that dies after the evaluation, before the commit
    from usage import rollups

    WorkspaceFactory(workspace_id="ws_w", email="owner@acme.io")
    make_trigger("failed_exports", FAILED_EXPORTS, actions=EMAIL)
    for m in (3, 2, 1):
        usage_event(T0 - timedelta(minutes=m), workspace_id="ws_w", outcome="error")
    real = rollups.after_batch

    def dies_after(batch):
        real(batch)
        raise SystemExit("worker killed")

    monkeypatch.setattr(rollups, "after_batch", dies_after)
    with time_machine.travel(T0, tick=False), pytest.raises(SystemExit):
        usage_rollup()
    # then: nothing of it committed: the events are new (the sweeper rings for them), no firing
    assert Event.objects.filter(status="new").count() == 3
    assert not Firing.objects.exists()
    # when: the rollup runs again
    monkeypatch.setattr(rollups, "after_batch", real)
    with time_machine.travel(T0, tick=False):
        usage_rollup()
    assert (Firing.objects.count(), Dispatch.objects.count()) == (1, 1)


def test_what_each_kind_reads():
    def trigger(when: dict[str, Any], **fields: Any) -> Trigger:
        return Trigger(key="t", when=when, **fields)

    goal = {"goal": {"event": {"type": "document.completed"}}, "within_seconds": 60}
    interest = triggers_interest([
        trigger({"kind": "count", **{k: v for k, v in FAILED_EXPORTS.items() if k != "kind"}}),
        trigger({"kind": "stall", "start": {"type": "a.started"}, "finish": {"type": "a.done"}, "within_seconds": 9}),
        trigger({"kind": "silence", "for_seconds": 60}, follow_up=goal),
        trigger({"kind": "date", "field": "trial_expires_at", "days_before": 3}),
    ])  # fmt: skip
    assert interest.types == {"usage.recorded", "a.started", "a.done", "document.completed"}
    assert not interest.changes
    assert triggers_interest([trigger({"kind": "stage", "from": None, "to": "dormant"})]).changes
    assert triggers_interest([trigger({"kind": "a_kind_not_taught"})]).types is None


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises writers; PostgreSQL proves it")
@pytest.mark.django_db(transaction=True)
def test_workers_evaluating_the_same_events_at_once_make_one_firing_and_one_dispatch():
    # given: three failed exports rolled up, and their evaluation task delivered several times
    WorkspaceFactory(workspace_id="ws_w", email="owner@acme.io")
    make_trigger("failed_exports", FAILED_EXPORTS, actions=EMAIL)
    ids = [usage_event(T0 - timedelta(minutes=m), workspace_id="ws_w", outcome="error").pk for m in (3, 2, 1)]
    # when: four workers run it at the same moment
    with time_machine.travel(T0, tick=False):
        made = run_concurrently(lambda: tasks.evaluate_workspaces(["ws_w"], [], ids))
    # then: one decided it, the other found it decided
    assert sorted(made) == [0, 0, 0, 1]
    assert (Firing.objects.count(), Dispatch.objects.count()) == (1, 1)
