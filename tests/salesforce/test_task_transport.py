"""The `salesforce_task` channel end to end against the emulator over HTTPS: a trigger's action becomes a
Task for the owner rep (OwnerId their Salesforce user, WhatId the account, WhoId the contact, Subject and
Description with the behavioural context), written through the outbox, upserted by Lifecycle_Engine_ID__c."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from messaging.delivery import dispatch_retry, dispatch_send
from messaging.models import Dispatch
from salesforce.activities import OWNER_EMAIL, OWNER_MISSING, TASK, task_key
from salesforce.models import OutboxItem
from salesforce.outbox import key_of, outbox_record_workspace
from salesforce.worker import outbox_drain
from tests.factories import AccountFactory, ContactFactory, LeadFactory, WorkspaceFactory
from tests.triggers.conftest import event, make_trigger
from triggers.services import ENABLED_CACHE_KEY, triggers_evaluate
from workspaces.models import ReviewItem

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def plain(settings) -> None:
    settings.TRIGGERS_QUIET_HOURS = None
    settings.TRIGGERS_WORKSPACE_CAP = None
    settings.TRIGGERS_PERSON_CAP = None
    cache.delete(ENABLED_CACHE_KEY)


@pytest.fixture
def rep():
    return get_user_model().objects.create_user("rita", email="Rita.Rep@engine.example")


def customer(rep, *, account: bool = True, contact: bool = True, lead: bool = False, key: str = "ws_task"):
    """A paying workspace owned by `rep` through its account, its records recorded in the outbox."""
    fields = {"workspace_id": key, "name": "Acme design", "email": "dana@acme.io", "status": "paid", "plan": "team"}
    if account:
        fields["account"] = AccountFactory(name="Acme", domain="acme.io", owner=rep)
    if contact and account:
        fields["contact"] = ContactFactory(email="dana@acme.io", last_name="Reyes", account=fields["account"])
    if lead:
        fields["lead"] = LeadFactory(email="dana@acme.io", company="Acme")
    workspace = WorkspaceFactory(**fields)
    outbox_record_workspace(workspace=workspace)
    return workspace


def fire(workspace) -> Dispatch:
    """An owner-rep trigger with one salesforce_task action fires; its dispatch is sent (recorded) now."""
    make_trigger(
        "upgrade_call_test",
        {"kind": "event", "event": {"type": "plan.limit_reached"}},
        audience="owner_rep",
        transactional=True,
        actions=[{"channel": "salesforce_task", "template": "upgrade_call"}],
    )
    now = timezone.now()
    new = [event(workspace.workspace_id, "plan.limit_reached", now - timedelta(minutes=5), limit="envelopes",
                 used=100, allowed=100)]  # fmt: skip
    [firing] = triggers_evaluate(workspace_key=workspace.workspace_id, new_events=new, now=now)
    row = Dispatch.objects.get(source_id=firing.pk)
    assert dispatch_send(row.pk) == Dispatch.Status.SENT
    row.refresh_from_db()
    return row


def test_an_upgrade_call_is_a_task_for_the_owner_on_the_account_and_contact(salesforce, rep):
    # given
    owner_id = salesforce.store.seed("User", Username="rita@acme-sales.example", Email="rita.rep@engine.example",
                                     LastName="Rep", IsActive=True)  # fmt: skip
    salesforce.store.seed("User", Username="old@acme-sales.example", Email="someone@else.example", LastName="Old")
    workspace = customer(rep)

    # when
    row = fire(workspace)
    report = outbox_drain()

    # then
    assert report.failed == 0
    item = OutboxItem.objects.get(object_type=TASK)
    assert (item.external_id, item.state) == (task_key(row.key), OutboxItem.State.SYNCED)
    [task] = salesforce.store.records("Task")
    account = salesforce.store.find_one("Account", Lifecycle_Engine_ID__c=key_of("Account", workspace.account_id))
    contact = salesforce.store.find_one("Contact", Lifecycle_Engine_ID__c=key_of("Contact", workspace.contact_id))
    assert (task["OwnerId"], task["WhatId"], task["WhoId"]) == (owner_id, account["Id"], contact["Id"])
    assert task["Lifecycle_Engine_ID__c"] == task_key(row.key) and task["Status"] == "Not Started"
    assert task["Subject"] == "Upgrade call: Acme design keeps hitting its plan limits"
    assert "Latest limits reached:" in task["Description"] and "envelopes (100 of 100)" in task["Description"]
    assert OWNER_EMAIL not in task and item.salesforce_id == task["Id"]
    calls = [(entry.kind, entry.object_name) for entry in salesforce.requests_log.api_calls()]
    assert calls[-2:] == [("query", "User"), ("collection_upsert", "Task")]


def test_sending_again_changes_nothing_the_rep_may_have_closed(salesforce, rep):
    # given
    salesforce.store.seed("User", Username="rita@acme-sales.example", Email="rita.rep@engine.example", LastName="R")
    row = fire(customer(rep))
    outbox_drain()
    [task] = salesforce.store.records("Task")
    salesforce.store.update("Task", task["Id"], {"Status": "Completed"})

    # when: an admin retries the dispatch (a lost answer, say)
    dispatch_retry(dispatch=row)
    dispatch_send(row.pk)
    outbox_drain()

    # then
    item = OutboxItem.objects.get(object_type=TASK)
    assert (item.version, item.state) == (1, OutboxItem.State.SYNCED)
    assert [t["Status"] for t in salesforce.store.records("Task")] == ["Completed"]


def test_a_workspace_without_an_account_gets_the_task_on_its_lead(salesforce, rep):
    salesforce.store.seed("User", Username="rita@acme-sales.example", Email="rita.rep@engine.example", LastName="R")
    workspace = customer(rep, account=False, lead=True)
    workspace.owner = rep
    workspace.save(update_fields=["owner"])

    fire(workspace)
    outbox_drain()

    [task] = salesforce.store.records("Task")
    lead = salesforce.store.find_one("Lead", Lifecycle_Engine_ID__c=key_of("Lead", workspace.lead_id))
    assert (task["WhoId"], task["WhatId"]) == (lead["Id"], None)


def test_an_owner_with_no_salesforce_user_is_a_dead_letter_naming_the_email(salesforce, rep):
    workspace = customer(rep)

    fire(workspace)
    outbox_drain()

    item = OutboxItem.objects.get(object_type=TASK)
    assert (item.state, item.error_code) == (OutboxItem.State.DEAD, OWNER_MISSING)
    assert "'rita.rep@engine.example'" in item.error_message
    assert ReviewItem.objects.filter(kind=ReviewItem.Kind.SYNC_FAILED, workspace=workspace).exists()
    assert salesforce.store.records("Task") == []


def test_nothing_to_attach_the_task_to_is_a_dead_dispatch_with_the_reason(settings, rep):
    settings.SALESFORCE_SYNC = "dry_run"
    workspace = WorkspaceFactory(workspace_id="ws_bare", name="Bare", status="paid", owner=rep)
    action = {"channel": "salesforce_task", "template": "upgrade_call"}
    make_trigger("upgrade_call_test", {"kind": "event", "event": {"type": "plan.limit_reached"}},
                 audience="owner_rep", actions=[action])  # fmt: skip
    now = timezone.now()
    [firing] = triggers_evaluate(workspace_key="ws_bare", new_events=[
        event("ws_bare", "plan.limit_reached", now, limit="seats")], now=now)  # fmt: skip
    row = Dispatch.objects.get(source_id=firing.pk)

    assert dispatch_send(row.pk) == Dispatch.Status.DEAD
    row.refresh_from_db()
    assert "has neither an account nor a lead" in row.last_error
    assert not OutboxItem.objects.filter(object_type=TASK).exists() and workspace.pk


def test_the_channel_is_off_when_salesforce_sync_is_off(settings, rep):
    settings.SALESFORCE_SYNC = "off"
    row = Dispatch.objects.create(key="k-1", source="firing", source_id=1, channel="salesforce_task",
                                  recipient="rita.rep@engine.example", subject="s", text="t",
                                  data={"workspace_id": "ws_x"}, next_attempt_at=timezone.now())  # fmt: skip

    assert dispatch_send(row.pk) == Dispatch.Status.SKIPPED
    row.refresh_from_db()
    assert row.last_error == "Salesforce task channel off: SALESFORCE_SYNC is off"


def test_the_emulator_wants_a_polymorphic_reference_to_name_its_object(salesforce):
    from salesforce.adapter import shared_client

    account = salesforce.store.seed("Account", Name="Acme", Lifecycle_Engine_ID__c="acc_1")
    client = shared_client()
    good = {"Lifecycle_Engine_ID__c": "task_a", "Subject": "s",
            "What": {"attributes": {"type": "Account"}, "Lifecycle_Engine_ID__c": "acc_1"}}  # fmt: skip
    bad = {"Lifecycle_Engine_ID__c": "task_b", "Subject": "s", "What": {"Lifecycle_Engine_ID__c": "acc_1"}}

    [made] = client.upsert_collection(TASK, "Lifecycle_Engine_ID__c", [good])
    with pytest.raises(Exception, match=r"attributes\.type"):
        client.upsert_collection(TASK, "Lifecycle_Engine_ID__c", [bad])

    assert made.success and salesforce.store.get("Task", made.salesforce_id)["WhatId"] == account
