"""salesforce_drift against the emulator: a repair that converges for converted workspaces, a report that
counts every record the engine means Salesforce to have, and values shown engine against Salesforce."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from failures.models import ErrorKind
from salesforce.drift import DriftReport
from salesforce.models import OutboxItem
from salesforce.repair import drift_repair
from tests.salesforce.test_sync_live import converted, drain_until_quiet, process, trial
from workspaces.models import Account, Contact, Lead

pytestmark = pytest.mark.django_db

EMAILS = {"ws_1": "dana@acme.io", "ws_2": "lee@beta.io", "ws_3": "kim@gamma.io", "ws_4": "sam@delta.io"}


def drift(*args: str) -> str:
    out = io.StringIO()
    call_command("salesforce_drift", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def converted_workspaces(salesforce) -> None:
    """ws_1..ws_3 converted (each its own account and contact), ws_4 a trial; all in Salesforce."""
    process(*(trial(key, email=email) for key, email in EMAILS.items()))
    process(*(converted(key, mrr=49) for key in ("ws_1", "ws_2", "ws_3")))
    drain_until_quiet()
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"synced"}


def key_of(model, **match) -> str:
    """The external id of the engine's record (ids differ between databases: PostgreSQL keeps its sequences)."""
    prefix = {Lead: "lead", Account: "acc", Contact: "con"}[model]
    return f"{prefix}_{model.objects.get(**match).pk}"


def sf_id(object_type: str, key: str, salesforce) -> str:
    return salesforce.store.find_one(object_type, Lifecycle_Engine_ID__c=key)["Id"]


def test_repair_after_deleting_a_contact_an_account_and_a_workspace_of_converted_workspaces_converges(salesforce):
    # given three converted workspaces in Salesforce, then an admin deletes ws_1's contact (and edits its MRR),
    # ws_2's account (which takes its contact with it) and ws_3's Workspace__c
    converted_workspaces(salesforce)
    contact_1 = key_of(Contact, email=EMAILS["ws_1"])
    account_2 = key_of(Account, domain="beta.io")
    salesforce.store.delete("Contact", sf_id("Contact", contact_1, salesforce))
    salesforce.store.update("Workspace__c", sf_id("Workspace__c", "ws_1", salesforce), {"MRR__c": 1})
    salesforce.store.delete("Account", sf_id("Account", account_2, salesforce))
    salesforce.store.delete("Workspace__c", sf_id("Workspace__c", "ws_3", salesforce))
    conversions = salesforce.requests_log.count("convert_lead")
    before = drift()
    assert "Salesforce should hold 14 records: 8 in sync, 6 drifted (of 14 checked), 0 not sent." in before

    # when repaired and drained
    repaired = drift("--repair")
    drain_until_quiet(rounds=8)

    # then everything is back, nothing was refused on the way, and no lead was touched or converted again
    assert "Queued 6 record(s) to be sent again (6 drifted)" in repaired
    after = drift()
    assert "Salesforce should hold 14 records: 14 in sync, 0 drifted (of 14 checked), 0 not sent." in after
    assert "All clear" in after
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"synced"}
    assert not ErrorKind.objects.filter(source="sync").exists(), ErrorKind.objects.values_list("kind", "message")
    assert salesforce.requests_log.count("convert_lead") == conversions
    assert (salesforce.store.count("Account"), salesforce.store.count("Contact")) == (3, 3)
    assert salesforce.store.count("Workspace__c") == 4
    workspace_1 = salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_1")
    assert Decimal(str(workspace_1["MRR__c"])) == Decimal("49")
    assert workspace_1["Contact__c"] == sf_id("Contact", contact_1, salesforce)
    workspace_2 = salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_2")
    assert workspace_2["Account__c"] == sf_id("Account", account_2, salesforce)
    contact_2 = salesforce.store.find_one("Contact", Email=EMAILS["ws_2"])
    assert contact_2["AccountId"] == workspace_2["Account__c"], "the contact re-created onto the new account"


def test_a_deleted_converted_lead_is_reported_and_left_alone(salesforce):
    # given a converted workspace whose converted lead an admin deleted in Salesforce
    converted_workspaces(salesforce)
    lead = key_of(Lead, email=EMAILS["ws_1"])
    salesforce.store.delete("Lead", sf_id("Lead", lead, salesforce))
    # when repaired
    repaired = drift("--repair")
    drain_until_quiet()
    # then the lead is not re-sent (Salesforce would refuse it, or make an unconverted copy)
    assert f"Lead: 1 missing in Salesforce, e.g. {lead}" in repaired
    assert f"Left alone: 1 converted lead(s), e.g. Lead {lead}." in repaired
    assert OutboxItem.objects.get(object_type="Lead", external_id=lead).state == "synced"
    assert not OutboxItem.objects.filter(state="dead").exists()
    assert salesforce.store.find_one("Lead", Lifecycle_Engine_ID__c=lead) is None
    assert "1 drifted" in drift(), "still reported: only a person can restore it"


def test_the_report_counts_rows_the_repair_left_unsynced(salesforce):
    # given a deleted contact, queued by a repair but not sent yet
    converted_workspaces(salesforce)
    salesforce.store.delete("Contact", sf_id("Contact", key_of(Contact, email=EMAILS["ws_1"]), salesforce))
    drift("--repair")
    # when the report runs before the drainer
    text = drift()
    # then the two queued records are counted as pending, not left out of an all-clear
    assert "Salesforce should hold 14 records: 12 in sync, 0 drifted (of 12 checked), 2 not sent (2 pending)." in text
    assert "pending (waiting to be sent, or retried): 2, e.g." in text
    assert "All clear" not in text


def test_the_report_counts_held_and_failed_records(salesforce, settings):
    # given a pilot that holds some workspaces (ws_3 and ws_5 of these are in it), and a lead Salesforce refuses
    settings.SALESFORCE_PILOT_PERCENT = 50
    salesforce.store.add_validation_rule("Lead", lambda record: record.get("Email") == "pat@eps.io", "No Pat")
    emails = {**EMAILS, "ws_5": "pat@eps.io", "ws_6": "ron@zeta.io"}
    process(*(trial(key, email=email) for key, email in emails.items()))
    drain_until_quiet()
    states = list(OutboxItem.objects.values_list("state", flat=True))
    held, dead, synced = states.count("held"), states.count("dead"), states.count("synced")
    pending = states.count("pending") + states.count("retry")
    assert held and dead and synced, states
    # when
    text = drift()
    # then every record is counted, and the held and failed ones named
    not_sent = ", ".join(f"{n} {name}" for n, name in ((held, "held"), (pending, "pending"), (dead, "failed")) if n)
    assert (
        f"Salesforce should hold {len(states)} records: {synced} in sync, 0 drifted (of {synced} checked), "
        f"{held + pending + dead} not sent ({not_sent})."
    ) in text
    lead = OutboxItem.objects.get(object_type="Lead", workspace_key="ws_5").external_id
    assert f"failed (dead letters): {dead}, e.g. Lead {lead} (FIELD_CUSTOM_VALIDATION_EXCEPTION)" in text
    assert f"held (outside the pilot): {held}, e.g." in text
    assert "All clear" not in text


def test_values_are_shown_engine_against_salesforce(salesforce):
    # given a workspace whose MRR and plan an admin changed, and whose contact was deleted
    converted_workspaces(salesforce)
    workspace = sf_id("Workspace__c", "ws_1", salesforce)
    salesforce.store.update("Workspace__c", workspace, {"MRR__c": 1, "Plan__c": "tampered"})
    key = key_of(Contact, email=EMAILS["ws_1"])
    contact = sf_id("Contact", key, salesforce)
    salesforce.store.delete("Contact", contact)
    # when
    text = drift()
    # then
    assert "Workspace__c.MRR__c: 1 differ, e.g. ws_1 (engine 49.00, Salesforce 1" in text
    assert "Workspace__c.Plan__c: 1 differ, e.g. ws_1 (engine team, Salesforce tampered)" in text
    assert f"Workspace__c.Contact__c: 1 differ, e.g. ws_1 (engine {key} ({contact}), Salesforce -)" in text


def test_repair_queues_what_looks_up_a_record_being_recreated_and_says_why():
    # given a synced lead Salesforce lost, a workspace looking it up, and a converted lead that drifted
    lead = OutboxItem.objects.create(object_type="Lead", external_id="lead_2", payload={}, state="synced")
    lookup = {"Lead__r": {"Lifecycle_Engine_ID__c": "lead_2"}, "Account__c": None}
    workspace = OutboxItem.objects.create(
        object_type="Workspace__c", external_id="ws_2", payload=lookup, state="synced", salesforce_id="a00x"
    )
    old = OutboxItem.objects.create(
        object_type="Lead", external_id="lead_1", payload={}, state="synced", salesforce_id="00Qold"
    )
    lead.salesforce_id = "00Qgone"
    lead.save()
    report = DriftReport(item_ids={lead.pk, old.pk}, converted={old.pk})
    report.missing_keys = {("Lead", "lead_2"), ("Lead", "lead_1")}
    # when
    plan = drift_repair(report=report)
    # then
    assert plan.drifted == [lead.pk]
    assert plan.dependents == {workspace.pk: "Workspace__c ws_2 looks up Lead lead_2"}
    assert plan.converted == ["Lead lead_1"]
    assert plan.queued == 2
    lead.refresh_from_db()
    old.refresh_from_db()
    assert (lead.state, lead.salesforce_id) == ("pending", ""), "the workspace waits for the new lead's id"
    assert (old.state, old.salesforce_id) == ("synced", "00Qold")


def test_help_says_what_the_report_counts_and_what_a_repair_does(capsys):
    with pytest.raises(SystemExit):
        call_command("salesforce_drift", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "held outside the pilot, pending or failed" in text
    assert "converted leads are left alone" in text
    assert "--show" in text and "--repair" in text
