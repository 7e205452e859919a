"""The drift report against the emulator, and the outbox admin."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from salesforce.models import OutboxItem
from salesforce.worker import outbox_drain
from tests.salesforce.test_sync_live import converted, make_due, process, trial

pytestmark = pytest.mark.django_db


def test_drift_finds_a_changed_field_and_a_deleted_record_and_repairs(salesforce):
    process(trial("ws_1"), trial("ws_2", email="lee@beta.io"), converted("ws_1"))
    for _ in range(3):
        outbox_drain()
        make_due()
    workspace = salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_1")
    salesforce.store.update("Workspace__c", workspace["Id"], {"Plan__c": "tampered"})
    lead = salesforce.store.find_one("Lead", Email="lee@beta.io")
    salesforce.store.delete("Lead", lead["Id"])

    out = io.StringIO()
    call_command("salesforce_drift", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "3 drifted" in text, "ws_2 too: deleting the lead cleared its Lead__c, as Salesforce does"
    assert "Workspace__c.Plan__c: 1 differ, e.g. ws_1" in text
    assert "Workspace__c.Lead__c: 1 differ, e.g. ws_2" in text
    assert "Lead: 1 missing in Salesforce" in text

    repaired = io.StringIO()
    call_command("salesforce_drift", "--repair", stdout=repaired, stderr=io.StringIO())
    assert "Queued 3 record(s)" in repaired.getvalue(), "the lead, and ws_2 that points at it, and ws_1"
    outbox_drain()
    out = io.StringIO()
    call_command("salesforce_drift", stdout=out, stderr=io.StringIO())
    assert "Salesforce should hold 6 records: 6 in sync, 0 drifted" in out.getvalue()


def test_drift_explains_an_unreachable_salesforce(settings):
    from django.core.management import CommandError

    settings.SALESFORCE_SYNC = "live"
    settings.SALESFORCE_INSTANCE_URL = "https://127.0.0.1:9"
    settings.SALESFORCE_LOGIN_URL = ""
    settings.SALESFORCE_ACCESS_TOKEN = "x"
    OutboxItem.objects.create(object_type="Lead", external_id="lead_1", payload={}, state="synced")
    with pytest.raises(CommandError, match="Check SALESFORCE_INSTANCE_URL"):
        call_command("salesforce_drift", stdout=io.StringIO(), stderr=io.StringIO())


def test_outbox_admin_filters_and_actions(admin_client):
    dead = OutboxItem.objects.create(
        object_type="Workspace__c",
        external_id="ws_1",
        payload={"Plan__c": "x"},
        state="dead",
        error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
    )
    OutboxItem.objects.create(
        object_type="Lead", external_id="lead_1", payload={}, state="retry", error_code="UNABLE_TO_LOCK_ROW"
    )
    page = admin_client.get("/admin/sync/outboxitem/?error_code=FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert page.status_code == 200
    assert b"ws_1" in page.content and b"lead_1" not in page.content
    assert b"Outbox" in page.content  # the health summary
    detail = admin_client.get(f"/admin/sync/outboxitem/{dead.pk}/change/")
    assert b"&quot;Plan__c&quot;: &quot;x&quot;" in detail.content
    admin_client.post("/admin/sync/outboxitem/", {"action": "retry_items", "_selected_action": [dead.pk]})
    dead.refresh_from_db()
    assert dead.state == "pending"
    admin_client.post("/admin/sync/outboxitem/", {"action": "dead_letter_items", "_selected_action": [dead.pk]})
    dead.refresh_from_db()
    assert dead.state == "dead"
