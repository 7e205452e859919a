"""Zero duplicate Salesforce records, and no write before the records it points at: regressions found by
the Salesforce benchmark (bench/salesforce_sync.py), each reproduced here against the emulator over HTTPS."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from processing.pipeline import workspace_process
from salesforce.models import OutboxItem, SyncControl
from salesforce.worker import outbox_drain
from tests.events.helpers import T0, lifecycle_event, store
from workspaces.models import Account, Contact, Lead

pytestmark = pytest.mark.django_db


def process(*events) -> None:
    store(*events)
    for key in sorted({event.workspace_key for event in events}):
        workspace_process(workspace_key=key)


def trial(workspace_id: str, email: str):
    return lifecycle_event(f"{workspace_id}_trial", "trial.started", workspace_id=workspace_id, email=email)


def converted(workspace_id: str, email: str):
    return lifecycle_event(
        f"{workspace_id}_paid",
        "subscription.converted",
        workspace_id=workspace_id,
        email=email,
        at=T0 + timedelta(days=3),
    )


def drain_until_quiet(rounds: int = 8) -> None:
    """Drain, skipping every backoff, until nothing is open (or `rounds` drains)."""
    for _ in range(rounds):
        outbox_drain()
        OutboxItem.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        SyncControl.objects.update(paused_until=None)
        if not OutboxItem.objects.exclude(state="synced").exists():
            return


def record_errors(salesforce) -> list[str]:
    """Per-record error codes Salesforce answered (e.g. INVALID_FIELD: a lookup to a record not there yet)."""
    return [code for entry in salesforce.requests_log.api_calls() for code in entry.record_errors()]


def records_per_collection(entry) -> list[int]:
    """Records in each collection a call sent (a composite call carries several)."""
    return [len(records) for _, records, _ in entry.collections()] or [entry.record_count]


def assert_every_record_stamped_once(salesforce) -> None:
    """One Salesforce record per engine record, each carrying the engine's external id."""
    for object_name, model, prefix in (
        ("Account", Account, "acc"),
        ("Contact", Contact, "con"),
        ("Lead", Lead, "lead"),
    ):
        records = salesforce.store.records(object_name)
        assert len(records) == model.objects.count(), f"{object_name}: {len(records)} in Salesforce"
        assert sorted(r.get("Lifecycle_Engine_ID__c") or "" for r in records) == sorted(
            f"{prefix}_{pk}" for pk in model.objects.values_list("pk", flat=True)
        ), f"{object_name}: a record without the engine's id (made by convertLead, never stamped)"
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"synced"}


def test_more_conversions_than_one_stamp_call_takes_are_stamped(salesforce):
    """101 conversions onto new accounts make 202 records to stamp: more than a collection takes (200).
    The stamp was one call, refused whole with EXCEEDED_ID_LIMIT, again on every retry."""
    people = [(f"ws_{n:03d}", f"person{n}@gmail.com") for n in range(101)]
    process(*(trial(ws, email) for ws, email in people))
    outbox_drain()
    process(*(converted(ws, email) for ws, email in people))
    drain_until_quiet()
    calls = salesforce.requests_log.api_calls()
    assert [e.status for e in calls if e.status != 200] == []
    assert max(n for entry in calls for n in records_per_collection(entry)) <= 200
    assert salesforce.requests_log.count("convert_lead") == 1, "one convertLead call for the 101 leads"
    assert_every_record_stamped_once(salesforce)


def test_a_contact_whose_stamp_fails_is_stamped_later_never_created_again(salesforce):
    """convertLead made the contact; stamping it failed for that record alone. It was then upserted by
    external id, which matched nothing and created a second contact (and likewise a second account)."""
    process(trial("ws_1", "dana@gmail.com"))
    outbox_drain()
    process(converted("ws_1", "dana@gmail.com"))
    # every record of the call that stamps them (and of the workspace upsert riding in it)
    locked = salesforce.faults.unable_to_lock_row(kind="composite", count=1)
    drain_until_quiet()
    assert locked.hits == 1
    assert salesforce.store.count("Contact") == 1
    assert salesforce.store.count("Account") == 1
    assert_every_record_stamped_once(salesforce)


def test_conversion_waits_for_its_account_whose_upsert_answer_was_lost(salesforce):
    """The account's upsert was applied but its answer lost, so its row waits for a retry without a
    Salesforce id. The conversion meanwhile must not let convertLead make a second account: it waits,
    then converts onto the one Salesforce has."""
    Account.objects.create(name="Acme", domain="acme.io")
    process(trial("ws_1", "dana@acme.io"))
    salesforce.faults.commit_then_timeout(kind="collection_upsert", count=1)  # the Account upsert goes first
    with time_machine.travel(timezone.now(), tick=False):  # its retry, due within a quarter second, waits
        outbox_drain()
    assert OutboxItem.objects.get(object_type="Account").state == "retry"
    process(converted("ws_1", "dana@acme.io"))
    drain_until_quiet()
    assert salesforce.store.count("Account") == 1
    lead = salesforce.store.find_one("Lead", Email="dana@acme.io")
    assert lead["ConvertedAccountId"] == salesforce.store.records("Account")[0]["Id"]
    assert_every_record_stamped_once(salesforce)


def test_colleague_converting_while_the_first_conversion_awaits_its_retry_shares_the_account(salesforce):
    """The first colleague's convertLead made the new account but its answer was lost. The second colleague
    paid meanwhile: their conversion must wait for that account, not make another one."""
    process(trial("ws_1", "dana@acme.io"), trial("ws_2", "lee@acme.io"))
    outbox_drain()
    process(converted("ws_1", "dana@acme.io"))
    salesforce.faults.commit_then_timeout(kind="convert_lead", count=1)
    outbox_drain()
    assert salesforce.store.count("Account") == 1, "applied in Salesforce, the answer lost"
    process(converted("ws_2", "lee@acme.io"))
    drain_until_quiet()
    assert salesforce.store.count("Account") == 1
    assert salesforce.store.count("Contact") == 2
    assert_every_record_stamped_once(salesforce)


def test_a_workspace_is_not_sent_before_the_records_it_points_at(salesforce):
    """The conversion failed (503) and waits for its retry: the workspace, pointing at a contact that is
    not in Salesforce yet, went anyway and came back INVALID_FIELD (a wasted call, then a backoff that
    delays it further)."""
    process(trial("ws_1", "dana@gmail.com"))
    outbox_drain()
    process(converted("ws_1", "dana@gmail.com"))
    salesforce.faults.server_error(503, kind="convert_lead", count=1)
    outbox_drain()
    assert OutboxItem.objects.get(object_type="Workspace__c").state == "pending", "waits for its contact"
    drain_until_quiet()
    assert record_errors(salesforce) == []
    assert_every_record_stamped_once(salesforce)


def test_colleagues_converting_at_once_need_no_second_drain(salesforce):
    """The second colleague's conversion waits for the account the first one makes, within the same drain;
    nothing is refused on the way."""
    process(trial("ws_1", "dana@acme.io"), trial("ws_2", "lee@acme.io"))
    outbox_drain()
    process(converted("ws_1", "dana@acme.io"), converted("ws_2", "lee@acme.io"))
    outbox_drain()
    assert record_errors(salesforce) == []
    assert salesforce.requests_log.count("convert_lead") == 2
    assert_every_record_stamped_once(salesforce)


def test_a_dead_conversion_leaves_its_new_account_to_the_next_colleague_then_converts_onto_it(salesforce):
    """The conversion meant to make the new account was refused for good; a colleague's conversion makes
    it instead, and once an admin retries the first, it goes onto that account: one account in all."""
    from salesforce.worker import outbox_retry

    process(trial("ws_1", "dana@acme.io"), trial("ws_2", "lee@acme.io"))
    outbox_drain()
    process(converted("ws_1", "dana@acme.io"))
    salesforce.faults.record_error("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Not in this region", kind="convert_lead")
    outbox_drain()
    first = OutboxItem.objects.get(
        object_type="LeadConversion", external_id__endswith=f"_{Lead.objects.get(email='dana@acme.io').pk}"
    )
    assert first.state == "dead"
    process(converted("ws_2", "lee@acme.io"))
    drain_until_quiet()
    assert salesforce.store.count("Account") == 1
    outbox_retry(item_ids=[first.pk])
    drain_until_quiet()
    assert salesforce.store.count("Account") == 1
    assert salesforce.store.count("Contact") == 2
    assert_every_record_stamped_once(salesforce)


# --- a converted workspace rides in the call that stamps its contact --------------------------------


def _contact_stamps(body: dict) -> bool:
    return body.get("attributes", {}).get("type") == "Contact"


def test_a_failed_contact_stamp_lets_its_riding_workspace_go_without_spending_an_attempt(salesforce):
    """The workspace upsert ran right after the stamp it looks up, which failed: Salesforce refused it
    (INVALID_FIELD, no contact with that external id). Not the workspace's fault: it waits, unleased and
    with no attempt counted, and goes once the retried conversion has stamped the contact."""
    process(trial("ws_1", "dana@gmail.com"))
    outbox_drain()
    process(converted("ws_1", "dana@gmail.com"))
    locked = salesforce.faults.unable_to_lock_row(kind="composite", where=_contact_stamps, count=1)
    with time_machine.travel(timezone.now(), tick=False):  # the conversion's retry stays due later
        outbox_drain()
    assert locked.hits == 1
    assert record_errors(salesforce) == ["UNABLE_TO_LOCK_ROW", "INVALID_FIELD"]
    workspace = OutboxItem.objects.get(object_type="Workspace__c")
    assert (workspace.state, workspace.attempts, workspace.lease_owner) == ("pending", 0, "")
    assert OutboxItem.objects.get(object_type="LeadConversion").state == "retry"
    drain_until_quiet()
    assert salesforce.store.count("Contact") == 1
    assert_every_record_stamped_once(salesforce)
    sf_workspace = salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_1")
    assert sf_workspace["Contact__c"] == salesforce.store.records("Contact")[0]["Id"]


def test_a_riding_workspace_refused_for_its_own_reason_is_dead_lettered_and_the_conversion_stands(salesforce):
    salesforce.store.add_validation_rule(
        "Workspace__c",
        lambda record: record.get("Self_Serve_Status__c") == "Paid",
        "Paid workspaces need a signed order form",
    )
    process(trial("ws_1", "dana@gmail.com"))
    outbox_drain()
    process(converted("ws_1", "dana@gmail.com"))
    drain_until_quiet()
    states = dict(OutboxItem.objects.values_list("object_type", "state"))
    assert states == {
        "Lead": "synced",
        "LeadConversion": "synced",
        "Account": "synced",
        "Contact": "synced",
        "Workspace__c": "dead",
    }
    assert OutboxItem.objects.get(object_type="Workspace__c").error_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert salesforce.requests_log.count("convert_lead") == 1


def test_a_lost_answer_to_the_stamps_and_their_rider_makes_no_duplicate(salesforce):
    """Stamps and workspace upsert applied, the answer lost: the conversion is retried (its lead re-read,
    not converted again), the stamps and the workspace sent again by Id and external id: still one each."""
    process(trial("ws_1", "dana@gmail.com"))
    outbox_drain()
    process(converted("ws_1", "dana@gmail.com"))
    lost = salesforce.faults.commit_then_timeout(kind="composite", count=1, sleep=2.0)
    drain_until_quiet()
    assert lost.hits == 1
    assert salesforce.requests_log.count("convert_lead") == 1
    assert salesforce.store.count("Workspace__c") == 1
    assert_every_record_stamped_once(salesforce)


def test_a_colleague_waiting_for_the_account_a_conversion_makes_rides_in_its_stamps_call(salesforce):
    process(trial("ws_1", "dana@acme.io"), trial("ws_2", "lee@acme.io"))
    outbox_drain()
    process(converted("ws_1", "dana@acme.io"))
    colleague = OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_2")
    account = Account.objects.get()
    assert (
        colleague.state == "pending"
        and colleague.payload["Account__r"]["Lifecycle_Engine_ID__c"] == f"acc_{account.pk}"
    )
    salesforce.requests_log.clear()
    outbox_drain()
    assert [e.kind for e in salesforce.requests_log.api_calls()] == ["convert_lead", "composite"]
    riders = salesforce.requests_log.api_calls("composite")[0].collections()[1][1]
    assert sorted(r["Workspace_ID__c"] for r in riders) == ["ws_1", "ws_2"]
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"synced"}
    sf_account = salesforce.store.find_one("Account", Lifecycle_Engine_ID__c=f"acc_{account.pk}")
    assert salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_2")["Account__c"] == sf_account["Id"]


def test_conversions_whose_stamps_failed_in_one_call_are_retried_together(salesforce):
    people = [(f"ws_{n}", f"person{n}@gmail.com") for n in range(3)]
    process(*(trial(ws, email) for ws, email in people))
    outbox_drain()
    process(*(converted(ws, email) for ws, email in people))
    salesforce.faults.server_error(503, kind="composite", count=1)
    with time_machine.travel(timezone.now(), tick=False):
        outbox_drain()
    conversions = OutboxItem.objects.filter(object_type="LeadConversion")
    assert set(conversions.values_list("state", flat=True)) == {"retry"}
    assert len(set(conversions.values_list("next_attempt_at", flat=True))) == 1, "one retry, not three"
    salesforce.requests_log.clear()
    with time_machine.travel(timezone.now() + timedelta(seconds=0.3), tick=False):
        outbox_drain()
    assert [e.kind for e in salesforce.requests_log.api_calls()] == ["query", "composite"]
    assert_every_record_stamped_once(salesforce)
