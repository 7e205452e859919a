"""The drainer's claim runs a statement compiled once per shape; "now" must still be the time of each call."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from salesforce import claiming as worker
from salesforce.models import OutboxItem
from salesforce.outbox import outbox_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(settings):
    settings.SALESFORCE_SYNC = "live"


def lead_row(key: str = "lead_1", **fields) -> OutboxItem:
    item = outbox_record(object_type="Lead", external_id=key, payload={"Email": f"{key}@acme.io"})
    OutboxItem.objects.filter(pk=item.pk).update(**fields)
    return item


def test_a_row_not_yet_due_is_claimed_once_it_is_although_the_statement_is_reused(live):
    start = timezone.now()
    lead_row(state=OutboxItem.State.RETRY, next_attempt_at=start + timedelta(seconds=30))
    with time_machine.travel(start, tick=False):
        assert worker.claim_batch("Lead", "w1") == []  # compiles the statement
    with time_machine.travel(start + timedelta(seconds=31), tick=False):
        [claimed] = worker.claim_batch("Lead", "w1")  # the same statement, a later "now"
    assert claimed.lease_owner == "w1"


def test_a_lapsed_lease_is_claimed_by_the_next_drainer(live):
    start = timezone.now()
    lead_row(lease_owner="dead", lease_expires_at=start + timedelta(seconds=60))
    with time_machine.travel(start, tick=False):
        assert worker.claim_batch("Lead", "w2") == []
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        assert [item.lease_owner for item in worker.claim_batch("Lead", "w2")] == ["w2"]


def test_a_workspace_waits_for_its_lead_with_the_compiled_statement(live):
    lead = lead_row()
    outbox_record(
        object_type="Workspace__c",
        external_id="ws_1",
        payload={"Lead__r": {"Lifecycle_Engine_ID__c": "lead_1"}, "Name": "ws"},
    )
    assert worker.claim_batch("Workspace__c", "w") == []  # its lead is not in Salesforce yet
    OutboxItem.objects.filter(pk=lead.pk).update(state=OutboxItem.State.SYNCED, salesforce_id="00Q000000000001")
    assert [item.external_id for item in worker.claim_batch("Workspace__c", "w")] == ["ws_1"]


def test_the_statement_is_built_once_per_shape(live, monkeypatch):
    worker._PLAIN_CLAIMS.clear()
    built = []
    original = worker._plain_candidates
    monkeypatch.setattr(worker, "_plain_candidates", lambda *a: built.append(a[0]) or original(*a))
    for _ in range(3):
        with CaptureQueriesContext(connection):
            worker.claim_batch("Contact", "w")
    assert built == ["Contact", "Contact"]  # the two probes, then only executions


def test_a_row_changed_after_its_lookups_were_checked_is_let_go_not_sent(live, monkeypatch):
    """Its new version may point at a record not in Salesforce yet (INVALID_FIELD): it waits for a new look."""
    lead = lead_row()
    OutboxItem.objects.filter(pk=lead.pk).update(state=OutboxItem.State.SYNCED, salesforce_id="00Q000000000001")
    payload = {"Lead__r": {"Lifecycle_Engine_ID__c": "lead_1"}, "Name": "ws"}
    workspace = outbox_record(object_type="Workspace__c", external_id="ws_1", payload=payload)
    checked = worker._ready_ids_plain

    def then_processing_commits(*args):
        ready = checked(*args)  # checked at version 1; now a conversion gives it a contact not yet sent
        outbox_record(object_type="Contact", external_id="con_1", payload={"Email": "dana@acme.io"})
        outbox_record(
            object_type="Workspace__c",
            external_id="ws_1",
            payload={**payload, "Contact__r": {"Lifecycle_Engine_ID__c": "con_1"}},
        )
        return ready

    monkeypatch.setattr(worker, "_ready_ids_plain", then_processing_commits)
    assert worker.claim_batch("Workspace__c", "w") == []
    workspace.refresh_from_db()
    assert workspace.version == 2 and workspace.lease_owner == "" and workspace.lease_expires_at is None
    monkeypatch.setattr(worker, "_ready_ids_plain", checked)
    assert worker.claim_batch("Workspace__c", "w") == []  # the new version waits for its contact
