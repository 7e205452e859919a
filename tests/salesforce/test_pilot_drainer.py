"""The pilot in the drainer itself (its stages are threads on PostgreSQL): a released record goes at once."""

from __future__ import annotations

import pytest
from django.db import connections

from salesforce import drain
from salesforce.drain import drain_run
from salesforce.models import OutboxItem
from tests.salesforce.test_pilot import workspace_key
from tests.salesforce.test_sync_live import converted, process, trial
from workspaces.models import Account

# The drainer's stages are threads with their own connections: they must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_drainer_sends_a_held_account_a_pilot_workspace_needs_without_waiting(salesforce, settings, monkeypatch):
    # given an account held with the customer outside the pilot who made it, and a colleague in the pilot
    settings.SALESFORCE_PILOT_PERCENT = 50
    outside, inside = workspace_key(50, inside=False), workspace_key(50, inside=True)
    process(trial(outside), converted(outside))
    assert drain_run(budget=30).ended == "idle"
    process(trial(inside, email="lee@acme.io"))
    # a stage that is not woken looks again only after this: longer than the drainer stays idle
    monkeypatch.setattr(drain, "LANE_POLL_SECONDS", 60.0)
    monkeypatch.setattr(drain, "IDLE_SECONDS", 1.0)

    # when the drainer runs
    run = drain_run(budget=30)
    connections.close_all()

    # then the workspace stage released the account, the account stage was woken and sent it, and then
    # the workspace went
    account = salesforce.store.find_one("Account", Lifecycle_Engine_ID__c=f"acc_{Account.objects.get().pk}")
    workspace = salesforce.store.find_one("Workspace__c", Workspace_ID__c=inside)
    assert run.ended == "idle" and run.report.released == 1
    assert workspace is not None and workspace["Account__c"] == account["Id"]
    assert not OutboxItem.objects.exclude(error_code="").exists()
