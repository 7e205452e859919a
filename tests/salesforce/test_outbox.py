"""Outbox rows are written with the change that needs them, coalesced, in dependency shape."""

from __future__ import annotations

from datetime import timedelta

import pytest

from processing.pipeline import workspace_process
from salesforce.models import OutboxItem
from salesforce.outbox import outbox_record
from tests.events.helpers import T0, lifecycle_event, store
from workspaces.models import Account

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def dry_run(settings):
    settings.SALESFORCE_SYNC = "dry_run"


def rows() -> dict[tuple[str, str], OutboxItem]:
    return {(item.object_type, item.external_id): item for item in OutboxItem.objects.all()}


def test_off_writes_nothing(settings):
    settings.SALESFORCE_SYNC = "off"
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    assert not OutboxItem.objects.exists()


def test_trial_records_lead_and_workspace_with_external_id_references():
    store(lifecycle_event("e1", "trial.started", workspace_name="Acme"))
    workspace_process(workspace_key="ws_1")
    outbox = rows()
    lead = next(item for (kind, _), item in outbox.items() if kind == "Lead")
    workspace = outbox[("Workspace__c", "ws_1")]
    assert lead.payload["Email"] == "dana@acme.io"
    assert lead.payload["LeadSource"] == "Self-Serve Trial"
    assert workspace.payload["Self_Serve_Status__c"] == "Trial"
    assert workspace.payload["Workspace_ID__c"] == "ws_1"
    assert workspace.payload["Trial_Expiration_Date__c"] == (T0 + timedelta(days=30)).date().isoformat()
    assert workspace.payload["Lead__r"] == {"Lifecycle_Engine_ID__c": lead.external_id}
    assert workspace.payload["Account__c"] is None, "an empty lookup is cleared through its field"


def test_many_changes_coalesce_into_one_row_per_object():
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    store(lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(days=3)))
    workspace_process(workspace_key="ws_1")
    store(lifecycle_event("e3", "workspace.churned", at=T0 + timedelta(days=9), reason="budget"))
    workspace_process(workspace_key="ws_1")
    workspace = rows()[("Workspace__c", "ws_1")]
    assert OutboxItem.objects.filter(object_type="Workspace__c").count() == 1
    assert workspace.version == 3
    assert workspace.payload["Self_Serve_Status__c"] == "Churned"
    assert workspace.payload["Churn_Reason__c"] == "budget"
    assert workspace.payload["MRR__c"] == "297.00"


def test_unchanged_state_writes_nothing():
    store(lifecycle_event("e1", "trial.started"))
    workspace_process(workspace_key="ws_1")
    versions = {key: item.version for key, item in rows().items()}
    workspace_process(workspace_key="ws_1", force=True)
    assert {key: item.version for key, item in rows().items()} == versions


def test_conversion_on_a_new_account_waits_for_convert_lead():
    store(lifecycle_event("e1", "trial.started"), lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(1)))
    workspace_process(workspace_key="ws_1")
    outbox = rows()
    conversion = next(item for (kind, _), item in outbox.items() if kind == "LeadConversion")
    account = next(item for (kind, _), item in outbox.items() if kind == "Account")
    contact = next(item for (kind, _), item in outbox.items() if kind == "Contact")
    assert conversion.depends_on.object_type == "Lead"
    assert account.depends_on == conversion, "convertLead creates the account, then it is stamped"
    assert contact.depends_on == conversion
    assert contact.payload["Account"] == {"Lifecycle_Engine_ID__c": account.external_id}


def test_conversion_on_an_existing_synced_account_converts_onto_it():
    existing = Account.objects.create(name="Acme", domain="acme.io")
    OutboxItem.objects.create(
        object_type="Account", external_id=f"acc_{existing.pk}", payload={}, state="synced", salesforce_id="001A"
    )
    store(lifecycle_event("e1", "trial.started"), lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(1)))
    workspace_process(workspace_key="ws_1")
    account = rows()[("Account", f"acc_{existing.pk}")]
    assert account.depends_on is None


def test_a_changed_payload_bumps_the_version_and_requeues():
    item = outbox_record(object_type="Lead", external_id="lead_1", payload={"Email": "a@b.io"})
    OutboxItem.objects.filter(pk=item.pk).update(state="synced", sent_version=1)
    again = outbox_record(object_type="Lead", external_id="lead_1", payload={"Email": "c@b.io"})
    assert (again.version, again.state) == (2, "pending")
