"""The processor: flows end to end, the status machine, leases, retries, the sweeper, lost work."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from alerts.models import Alert
from events.models import Event
from processing import pipeline
from processing.claims import events_claim
from processing.pipeline import workspace_process
from processing.retries import retry_delay
from processing.sweeper import events_sweep
from processing.tasks import process_workspaces
from tests.conftest import lifecycle_body
from tests.events.helpers import T0, lifecycle_event, store
from workspaces.models import Lead, ReviewItem, Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple]:
    """What would have gone to the task queue (our own wrapper around django-q2's async_task)."""
    calls: list[tuple] = []
    monkeypatch.setattr("events.services.async_task", lambda func, *args, **kw: calls.append((func, *args)))
    return calls


def statuses() -> dict[str, str]:
    return dict(Event.objects.values_list("external_id", "status"))


# --- flows through the processor ---------------------------------------------------------------


def test_trial_creates_workspace_and_lead_and_completes_the_event():
    store(lifecycle_event("e1", "trial.started"))
    outcome = workspace_process(workspace_key="ws_1")
    assert outcome.claimed == 1 and not outcome.failed
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert workspace.status == "trial"
    assert workspace.lead.email == "dana@acme.io"
    assert workspace.lead.lead_source == Lead.Source.SELF_SERVE_TRIAL
    event = Event.objects.get(external_id="e1")
    assert event.status == Event.Status.COMPLETED
    assert event.completed_at is not None
    assert event.lease_owner == ""


def test_conversion_of_an_existing_trial_makes_it_paid_with_a_contact():
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    store(lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(days=2)))
    workspace_process(workspace_key="ws_1")
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert workspace.status == "paid"
    assert workspace.contact.email == "dana@acme.io"
    assert workspace.account.domain == "acme.io"
    assert workspace.lead.converted


def test_churn_of_an_unknown_workspace_creates_it_churned_and_flags_review():
    store(lifecycle_event("e1", "workspace.churned", email="sam@beta.io", reason="budget"))
    workspace_process(workspace_key="ws_1")
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert workspace.status == "churned"
    assert workspace.needs_review
    kinds = set(ReviewItem.objects.filter(workspace=workspace, status="open").values_list("kind", flat=True))
    assert "no_trial_data" in kinds
    item = ReviewItem.objects.get(workspace=workspace, kind="no_trial_data")
    assert list(item.events.values_list("external_id", flat=True)) == ["e1"]


def test_late_trial_closes_the_no_trial_data_question_by_itself():
    store(lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(days=2), email="dana@acme.io"))
    workspace_process(workspace_key="ws_1")
    assert ReviewItem.objects.get(kind="no_trial_data").status == "open"
    store(lifecycle_event("e1", "trial.started", at=T0))
    workspace_process(workspace_key="ws_1")
    item = ReviewItem.objects.get(kind="no_trial_data")
    assert item.status == "resolved"
    assert "automatically" in item.resolution_note
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert "no trial data" not in " ".join(workspace.review_reasons)


def test_conflicting_owner_email_flags_review_with_a_precise_reason():
    store(
        lifecycle_event("e1", "trial.started"),
        lifecycle_event("e2", "trial.started", at=T0 + timedelta(1), email="x@y.io"),
    )
    workspace_process(workspace_key="ws_1")
    item = ReviewItem.objects.get(kind="conflicting_data")
    assert "x@y.io" in item.reason and "dana@acme.io" in item.reason
    assert set(item.events.values_list("external_id", flat=True)) == {"e1", "e2"}


def test_reprocessing_changes_nothing_and_audits_nothing_new():
    from auditlog.models import LogEntry

    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    entries = LogEntry.objects.count()
    workspace_process(workspace_key="ws_1", force=True)
    assert LogEntry.objects.count() == entries


def test_automated_changes_are_audited_under_the_system_actor():
    from auditlog.models import LogEntry

    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    workspace = Workspace.objects.get(workspace_id="ws_1")
    entry = LogEntry.objects.get_for_object(workspace).first()
    assert entry.actor.username == "lifecycle-engine"


def test_nothing_due_means_no_work():
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    assert workspace_process(workspace_key="ws_1").claimed == 0


def test_usage_events_are_not_claimed_by_the_lifecycle_processor():
    store(lifecycle_event("u1", "usage.recorded"))
    assert workspace_process(workspace_key="ws_1").claimed == 0
    assert statuses() == {"u1": "new"}


# --- failures, backoff, review ---------------------------------------------------------------


@pytest.fixture
def broken_apply(monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(pipeline, "workspace_apply_state", explode)


def test_a_failure_puts_claimed_events_in_error_with_backoff(broken_apply, settings):
    settings.EVENT_RETRY_BASE_SECONDS = 10
    store(lifecycle_event("e1", "trial.started"))
    before = timezone.now()
    outcome = workspace_process(workspace_key="ws_1")
    assert outcome.failed
    event = Event.objects.get(external_id="e1")
    assert event.status == Event.Status.ERROR
    assert event.retry_count == 1
    assert "simulated failure" in event.notes
    assert before + timedelta(seconds=5) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=10)
    assert not Workspace.objects.exists(), "the failed fold rolled back"


def test_error_is_not_retried_before_it_is_due(broken_apply):
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    assert workspace_process(workspace_key="ws_1").claimed == 0


def test_backoff_grows_exponentially_and_is_capped(settings):
    settings.EVENT_RETRY_BASE_SECONDS = 10
    settings.EVENT_RETRY_MAX_SECONDS = 300
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (6, 300), (20, 300)]:
        delays = {retry_delay(attempt).total_seconds() for _ in range(50)}
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jittered"


def test_after_max_attempts_events_go_to_review_with_exactly_one_alert(broken_apply, settings):
    settings.EVENT_MAX_ATTEMPTS = 3
    store(lifecycle_event("e1", "trial.started"), lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(1)))
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(5):
            workspace_process(workspace_key="ws_1")
            clock.shift(timedelta(hours=2))
    assert statuses() == {"e1": "review", "e2": "review"}
    assert Event.objects.get(external_id="e1").retry_count == 3
    assert Alert.objects.filter(rule="event_failed").count() == 1
    alert = Alert.objects.get(rule="event_failed")  # ops also alerts on the new error kind
    assert alert.workspace_key == "ws_1"
    assert set(alert.context["event_ids"]) == {"e1", "e2"}
    item = ReviewItem.objects.get(kind="processing_failed")
    assert item.events.count() == 2


def test_retry_from_review_then_success_completes(broken_apply, settings, monkeypatch):
    from events.services import events_retry
    from workspaces.services import workspace_apply_state

    settings.EVENT_MAX_ATTEMPTS = 1
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    assert statuses() == {"e1": "review"}
    monkeypatch.setattr(pipeline, "workspace_apply_state", workspace_apply_state)
    assert events_retry(event_ids=list(Event.objects.values_list("pk", flat=True))) == 1
    workspace_process(workspace_key="ws_1")
    assert statuses() == {"e1": "completed"}


# --- leases and the sweeper -------------------------------------------------------------------


def test_a_live_lease_keeps_other_workers_off(settings):
    store(lifecycle_event("e1", "trial.started"))
    assert events_claim(workspace_key="ws_1", worker="dead-worker") != []
    assert workspace_process(workspace_key="ws_1").claimed == 0
    assert statuses() == {"e1": "processing"}


def test_an_expired_lease_is_reclaimed_by_the_sweeper_and_processed(settings, enqueued):
    settings.EVENT_LEASE_SECONDS = 60
    store(lifecycle_event("e1", "trial.started"))
    enqueued.clear()
    events_claim(workspace_key="ws_1", worker="worker-killed-mid-task")
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        counts = events_sweep()
        assert counts["expired_leases"] == 1
        assert enqueued == [("processing.tasks.process_workspaces", ["ws_1"], False)]
        process_workspaces(["ws_1"])
    assert statuses() == {"e1": "completed"}


def test_task_lost_by_the_broker_is_recovered_by_the_sweeper(enqueued):
    store(lifecycle_event("e1", "trial.started"))
    enqueued.clear()  # the broker lost it
    assert events_sweep()["enqueued"] == 0, "a fresh event is left to its own task for a minute"
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        assert events_sweep()["new"] == 1
        assert enqueued == [("processing.tasks.process_workspaces", ["ws_1"], False)]
        process_workspaces(["ws_1"])
    assert statuses() == {"e1": "completed"}


def test_sweeper_does_not_re_enqueue_a_backlog_every_minute(enqueued, settings):
    settings.EVENT_LEASE_SECONDS = 300
    store(lifecycle_event("e1", "trial.started"))
    enqueued.clear()
    with time_machine.travel(timezone.now() + timedelta(seconds=61), tick=False) as clock:
        events_sweep()
        clock.shift(timedelta(seconds=60))
        events_sweep()
        assert len(enqueued) == 1
        clock.shift(timedelta(seconds=300))
        events_sweep()
        assert len(enqueued) == 2


def test_sweeper_re_enqueues_due_retries(broken_apply, enqueued):
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    enqueued.clear()
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert events_sweep()["due_retries"] == 1
    assert enqueued == [("processing.tasks.process_workspaces", ["ws_1"], False)]


def test_sweeper_routes_usage_to_the_rollup(enqueued):
    store(lifecycle_event("u1", "usage.recorded"))
    enqueued.clear()
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        events_sweep()
    assert enqueued[0][0] == "usage.tasks.rollup_usage"


def test_enqueue_failing_after_commit_loses_nothing(send_webhook, monkeypatch, django_capture_on_commit_callbacks):
    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("events.services.async_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = send_webhook(lifecycle_body("trial.started", {"workspace_id": "ws_9", "email": "a@acme.io"}))
    assert response.status_code == 202
    assert Event.objects.get().status == Event.Status.NEW
    calls: list = []
    monkeypatch.setattr("events.services.async_task", lambda func, *args, **kw: calls.append((func, *args)))
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        events_sweep()
    assert calls == [("processing.tasks.process_workspaces", ["ws_9"], False)]
    process_workspaces(["ws_9"])
    assert Event.objects.get().status == Event.Status.COMPLETED


def test_the_sweeper_schedule_is_installed_without_catch_up(settings):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(func="processing.tasks.sweep")
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1
    assert settings.Q_CLUSTER["catch_up"] is False
    assert settings.Q_CLUSTER["retry"] > settings.Q_CLUSTER["timeout"]
