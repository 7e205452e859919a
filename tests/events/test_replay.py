"""`manage.py replay`: re-folding from the cache finds drift and can queue the repair."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command

from processing.pipeline import workspace_process
from processing.replay import replay
from tests.events.helpers import T0, lifecycle_event, store
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def processed() -> None:
    for workspace_id in ("ws_1", "ws_2"):
        store(
            lifecycle_event(f"{workspace_id}_t", "trial.started", workspace_id=workspace_id),
            lifecycle_event(
                f"{workspace_id}_c", "subscription.converted", workspace_id=workspace_id, at=T0 + timedelta(1)
            ),
        )
        workspace_process(workspace_key=workspace_id)


def test_replay_of_a_consistent_cache_finds_no_drift(processed):
    report = replay()
    assert (report.events, report.workspaces, report.drifted) == (4, 2, [])


def test_replay_reports_a_tampered_field(processed):
    Workspace.objects.filter(workspace_id="ws_2").update(plan="hacked")
    report = replay()
    assert report.drifted == ["ws_2"]
    assert report.mismatches["ws_2"] == {"plan": ("hacked", "team")}


def test_replay_reports_a_missing_workspace(processed):
    Workspace.objects.filter(workspace_id="ws_1").delete()
    assert replay().missing == ["ws_1"]


def test_replay_command_repairs_through_the_queue(processed, monkeypatch):
    queued = []
    monkeypatch.setattr("events.services.async_task", lambda func, *args, **kw: queued.append((func, *args)))
    Workspace.objects.filter(workspace_id="ws_1").update(status="churned")
    out = io.StringIO()
    call_command("replay", "--repair", stdout=out, stderr=io.StringIO())
    assert "1 differ" in out.getvalue()
    assert "ws_1: status: stored 'churned' ≠ folded 'paid'" in out.getvalue()
    assert queued == [("processing.tasks.process_workspaces", ["ws_1"], True)]
    workspace_process(workspace_key="ws_1", force=True)
    assert replay().drifted == []


def test_replay_of_one_workspace(processed):
    assert replay(workspace_key="ws_1").workspaces == 1
