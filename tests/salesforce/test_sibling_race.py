"""A conversion re-records its colleagues' workspaces without overwriting a concurrent run of theirs."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django_q.models import OrmQ

from processing.pipeline import workspace_process
from salesforce.models import OutboxItem
from tests.events.helpers import T0, lifecycle_event, queued_tasks, store
from workspaces.models import WorkspaceLock

pytestmark = pytest.mark.django_db(transaction=True)


def _queued_forced() -> list[list[str]]:
    return [task["args"][0] for task in queued_tasks("processing.tasks.process_workspaces") if task["args"][1]]


@pytest.fixture
def colleagues_in_trial(settings) -> None:
    """Two colleagues on a company domain with no account yet, both processed in trial; then ws_a's
    conversion is stored (not processed) and the queue emptied."""
    settings.SALESFORCE_SYNC = "dry_run"
    store(
        lifecycle_event("ws_a_trial", "trial.started", workspace_id="ws_a", email="dana@newco.io"),
        lifecycle_event("ws_b_trial", "trial.started", workspace_id="ws_b", email="lee@newco.io"),
    )
    workspace_process(workspace_key="ws_a")
    workspace_process(workspace_key="ws_b")
    store(
        lifecycle_event(
            "ws_a_paid", "subscription.converted", workspace_id="ws_a", email="dana@newco.io", at=T0 + timedelta(days=3)
        )
    )
    OrmQ.objects.all().delete()


def test_a_colleague_being_processed_is_reprocessed_after_the_commit_not_overwritten(colleagues_in_trial):
    if connection.vendor != "postgresql":
        pytest.skip("row locks between connections: PostgreSQL")
    before = OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_b")
    # when ws_b's lock is held by another worker while ws_a converts (and makes the account ws_b adopts)
    held, release = threading.Event(), threading.Event()

    def other_worker() -> None:
        try:
            with transaction.atomic():
                WorkspaceLock.objects.select_for_update().get(workspace_key="ws_b")
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_worker)
    thread.start()
    assert held.wait(10)
    try:
        workspace_process(workspace_key="ws_a")
    finally:
        release.set()
        thread.join(10)
    # then ws_a's run left ws_b's outbox row alone and asked for ws_b to be processed again
    after = OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_b")
    assert after.version == before.version
    assert _queued_forced() == [["ws_b"]]
    # and that run records ws_b's current state, on the account ws_a's conversion made
    workspace_process(workspace_key="ws_b", force=True)
    after = OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_b")
    assert after.payload["Account__r"] is not None


def test_a_free_colleague_is_re_recorded_at_once(colleagues_in_trial):
    workspace_process(workspace_key="ws_a")
    row = OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_b")
    assert row.payload["Account__r"] is not None
    assert _queued_forced() == []
