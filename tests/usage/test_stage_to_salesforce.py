"""The lifecycle stage goes to Salesforce as Workspace__c.Lifecycle_Stage__c: set by the processing run,
and re-recorded (by a forced run) when usage or time alone moves the stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from processing.pipeline import workspace_process
from processing.tasks import process_workspaces
from salesforce.models import OutboxItem
from tests.events.helpers import lifecycle_event, queued_tasks, store
from tests.usage.test_behaviour import FEATURES, usage
from usage.rollups import usage_rollup
from usage.tasks import sweep_behaviour

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def stage_sent(workspace: str = "ws_1") -> str | None:
    return OutboxItem.objects.get(object_type="Workspace__c", external_id=workspace).payload["Lifecycle_Stage__c"]


def forced_runs() -> list[list[str]]:
    return [task["args"][0] for task in queued_tasks("processing.tasks.process_workspaces") if task["args"][1]]


@pytest.fixture
def workspace(settings, django_capture_on_commit_callbacks):
    settings.SALESFORCE_SYNC = "dry_run"
    with time_machine.travel(NOW, tick=False):
        store(lifecycle_event("e1", "trial.started", at=NOW - timedelta(days=10), email="dana@acme.io"))
        workspace_process(workspace_key="ws_1")
    return "ws_1"


def test_a_new_workspace_goes_to_salesforce_onboarding(workspace):
    assert stage_sent() == "onboarding"


def test_usage_that_moves_the_stage_has_it_re_recorded(workspace, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        for day in range(4):
            usage("ws_1", NOW - timedelta(days=day, hours=1), FEATURES[day % 2])
        with django_capture_on_commit_callbacks(execute=True):
            usage_rollup()
        assert forced_runs() == [["ws_1"]]
        process_workspaces(["ws_1"], True)
    assert stage_sent() == "activated"


def test_usage_that_leaves_the_stage_alone_queues_nothing(workspace, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        usage("ws_1", NOW - timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=True):
            usage_rollup()
    assert forced_runs() == []


def test_time_alone_moving_the_stage_reaches_salesforce(workspace, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW + timedelta(days=5), tick=False):  # trial day 15, never active: dormant
        with django_capture_on_commit_callbacks(execute=True):
            assert sweep_behaviour()["changed"] == 1
        assert forced_runs() == [["ws_1"]]
        process_workspaces(["ws_1"], True)
    assert stage_sent() == "dormant"
