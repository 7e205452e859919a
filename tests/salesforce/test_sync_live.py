"""simple-salesforce over HTTPS against the emulator: order, conversion once, every fault policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from alerts.models import Alert
from processing.pipeline import workspace_process
from salesforce.models import OutboxItem, SyncControl
from salesforce.worker import outbox_drain
from tests.events.helpers import T0, lifecycle_event, store
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace

pytestmark = pytest.mark.django_db


def process(*events) -> None:
    store(*events)
    for key in sorted({event.workspace_key for event in events}):
        workspace_process(workspace_key=key)


def trial(workspace_id: str = "ws_1", **data):
    return lifecycle_event(f"{workspace_id}_trial", "trial.started", workspace_id=workspace_id, **data)


def converted(workspace_id: str = "ws_1", **data):
    return lifecycle_event(
        f"{workspace_id}_paid", "subscription.converted", workspace_id=workspace_id, at=T0 + timedelta(days=3), **data
    )


def make_due() -> None:
    """Skip the backoff: every retry is due now, and any pause is over."""
    OutboxItem.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    SyncControl.objects.update(paused_until=None)


def drain_until_quiet(rounds: int = 5) -> None:
    for _ in range(rounds):
        outbox_drain()
        make_due()


def states() -> dict[str, str]:
    return dict(OutboxItem.objects.values_list("object_type", "state"))


# --- the happy path -----------------------------------------------------------------------------


def test_trial_creates_lead_and_workspace_with_lookups(salesforce):
    process(trial(workspace_name="Acme design"))
    report = outbox_drain()
    assert report.failed == 0
    lead = salesforce.store.find_one("Lead", Email="dana@acme.io")
    workspace = salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_1")
    assert lead["LeadSource"] == "Self-Serve Trial"
    assert workspace["Self_Serve_Status__c"] == "Trial"
    assert workspace["Lead__c"] == lead["Id"]
    local = Workspace.objects.get()
    assert (local.salesforce_id, local.salesforce_state) == (workspace["Id"], "synced")
    assert Lead.objects.get().salesforce_id == lead["Id"]


def test_batches_are_sObject_collection_upserts_in_dependency_order(salesforce):
    process(trial(), converted())
    outbox_drain()
    calls = [(entry.kind, entry.object_name) for entry in salesforce.requests_log.api_calls()]
    assert calls == [
        ("collection_upsert", "Lead"),
        ("convert_lead", None),
        # One composite call: the account and contact convertLead made, stamped (a collection update),
        # then the workspace upserted with its lookups as external-id references to them.
        ("composite", None),
    ]
    composite = salesforce.requests_log.api_calls("composite")[0].body["compositeRequest"]
    assert [sub["url"].rpartition("/composite/")[2] for sub in composite] == [
        "sobjects",
        "sobjects/Workspace__c/Lifecycle_Engine_ID__c",
    ]
    assert composite[1]["body"]["records"][0]["Contact__r"] == {
        "Lifecycle_Engine_ID__c": f"con_{Contact.objects.get().pk}"
    }


def test_conversion_without_account_makes_account_and_contact_once_and_stamps_them(salesforce):
    process(trial(), converted())
    drain_until_quiet()
    assert salesforce.requests_log.count("convert_lead") == 1
    assert salesforce.store.count("Account") == 1
    assert salesforce.store.count("Contact") == 1
    lead = salesforce.store.find_one("Lead", Email="dana@acme.io")
    account = Account.objects.get()
    contact = Contact.objects.get()
    assert lead["IsConverted"] is True
    sf_account = salesforce.store.find_one("Account", Lifecycle_Engine_ID__c=f"acc_{account.pk}")
    sf_contact = salesforce.store.find_one("Contact", Lifecycle_Engine_ID__c=f"con_{contact.pk}")
    assert sf_account["Id"] == lead["ConvertedAccountId"]
    assert sf_contact["Id"] == lead["ConvertedContactId"]
    workspace = salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_1")
    assert (workspace["Account__c"], workspace["Contact__c"]) == (sf_account["Id"], sf_contact["Id"])
    assert workspace["Self_Serve_Status__c"] == "Paid"
    assert set(states().values()) == {"synced"}


def test_conversion_onto_an_existing_account_creates_no_account(salesforce):
    Account.objects.create(name="Acme", domain="acme.io")
    process(trial())
    outbox_drain()
    assert salesforce.store.count("Account") == 1
    process(converted())
    drain_until_quiet()
    assert salesforce.store.count("Account") == 1
    lead = salesforce.store.find_one("Lead", Email="dana@acme.io")
    assert lead["ConvertedAccountId"] == salesforce.store.records("Account")[0]["Id"]


def test_double_delivery_of_every_webhook_makes_no_duplicates(salesforce):
    for _ in range(2):
        process(trial("ws_1"), trial("ws_2", email="lee@beta.io"), converted("ws_1"))
        drain_until_quiet()
    for object_name, expected in (("Lead", 2), ("Workspace__c", 2), ("Contact", 1), ("Account", 1)):
        assert salesforce.store.count(object_name) == expected, object_name


# --- faults, by errorCode -------------------------------------------------------------------------


def test_unable_to_lock_row_is_retried_with_backoff(salesforce):
    salesforce.faults.unable_to_lock_row(kind="collection_upsert", count=1)
    process(trial())
    with time_machine.travel(timezone.now(), tick=False):  # the first retry is due within a quarter second
        outbox_drain()
        lead = OutboxItem.objects.get(object_type="Lead")
        assert (lead.state, lead.error_code, lead.attempts) == ("retry", "UNABLE_TO_LOCK_ROW", 1)
        assert timezone.now() < lead.next_attempt_at <= timezone.now() + timedelta(seconds=0.25)
    make_due()
    outbox_drain()
    assert OutboxItem.objects.get(object_type="Lead").state == "synced"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(salesforce, status):
    salesforce.faults.server_error(status, kind="collection_upsert", count=1)
    process(trial())
    with time_machine.travel(timezone.now(), tick=False):  # the retry, due within a quarter second, waits
        outbox_drain()
    assert OutboxItem.objects.get(object_type="Lead").state == "retry"
    drain_until_quiet()
    assert set(states().values()) == {"synced"}


def test_timeouts_are_retried(salesforce):
    salesforce.faults.timeout(kind="collection_upsert", count=1)
    process(trial())
    with time_machine.travel(timezone.now(), tick=False):  # the retry, due within a quarter second, waits
        outbox_drain()
    assert OutboxItem.objects.get(object_type="Lead").error_code == "TIMEOUT"
    drain_until_quiet()
    assert salesforce.store.count("Lead") == 1


def test_commit_then_timeout_on_upsert_leaves_no_duplicate(salesforce):
    salesforce.faults.commit_then_timeout(kind="collection_upsert", count=1)
    process(trial())
    outbox_drain()
    assert salesforce.store.count("Lead") == 1, "the write was applied, the answer lost"
    drain_until_quiet()
    assert salesforce.store.count("Lead") == 1
    assert set(states().values()) == {"synced"}


def test_commit_then_timeout_on_convert_lead_converts_once(salesforce):
    process(trial(), converted())
    salesforce.faults.commit_then_timeout(kind="convert_lead", count=1)
    drain_until_quiet(rounds=6)
    assert_converted_once(salesforce)


def assert_converted_once(salesforce) -> None:
    """One account and one contact in Salesforce, the contact stamped with the engine's id, all synced."""
    assert salesforce.store.count("Contact") == 1
    assert salesforce.store.count("Account") == 1
    assert set(states().values()) == {"synced"}
    contact = Contact.objects.get()
    assert salesforce.store.find_one("Contact", Lifecycle_Engine_ID__c=f"con_{contact.pk}") is not None


def test_request_limit_exceeded_pauses_alerts_and_resumes(salesforce):
    salesforce.faults.request_limit_exceeded(kind="collection_upsert", count=1)
    process(trial())
    report = outbox_drain()
    assert report.paused == "REQUEST_LIMIT_EXCEEDED"
    control = SyncControl.objects.get()
    assert control.paused_until > timezone.now()
    assert Alert.objects.filter(rule="sync_paused").count() == 1
    calls = len(salesforce.requests_log.api_calls())
    assert outbox_drain().paused, "still paused"
    assert len(salesforce.requests_log.api_calls()) == calls, "no calls while paused"
    SyncControl.objects.update(paused_until=timezone.now() - timedelta(seconds=1))
    outbox_drain()
    assert OutboxItem.objects.get(object_type="Lead").state == "synced"


def test_expired_session_is_refreshed_once(salesforce):
    process(trial())
    outbox_drain()
    salesforce.expire_tokens()
    process(converted())
    drain_until_quiet()
    assert len(salesforce.requests_log.token_requests()) == 2
    assert set(states().values()) == {"synced"}


def test_duplicate_value_is_reread_and_retried_once(salesforce):
    """A concurrent insert won the race: the upsert is sent again at once and now updates that record."""
    salesforce.faults.duplicate_value(kind="collection_upsert", count=1)
    process(trial())
    outbox_drain()
    lead_upserts = [e for e in salesforce.requests_log.api_calls(kind="collection_upsert") if e.object_name == "Lead"]
    assert len(lead_upserts) == 2
    assert OutboxItem.objects.get(object_type="Lead").state == "synced"
    assert salesforce.store.count("Lead") == 1


def test_duplicate_value_twice_in_a_row_backs_off():
    from salesforce.policy import Action, action_for

    assert action_for("DUPLICATE_VALUE") is Action.REREAD_ONCE
    assert action_for("DUPLICATE_VALUE", previous_code="DUPLICATE_VALUE") is Action.RETRY


def test_validation_error_is_dead_lettered_to_review_with_salesforce_message(salesforce):
    salesforce.store.add_validation_rule(
        "Workspace__c", lambda record: record.get("Plan__c") == "forbidden", "Plan not sold in this region", ["Plan__c"]
    )
    process(trial(plan="forbidden"))
    drain_until_quiet()
    item = OutboxItem.objects.get(object_type="Workspace__c")
    assert (item.state, item.error_code) == ("dead", "FIELD_CUSTOM_VALIDATION_EXCEPTION")
    review = ReviewItem.objects.get(kind="sync_failed")
    assert "Plan not sold in this region" in review.reason
    assert Alert.objects.filter(rule="sync_dead_letter").count() == 1
    assert Workspace.objects.get().salesforce_state == "dead"


def test_multiple_matches_are_dead_lettered(salesforce):
    process(trial())
    lead = Lead.objects.get()
    for _ in range(2):
        salesforce.store.seed("Lead", LastName="Dup", Company="Acme", Lifecycle_Engine_ID__c=f"lead_{lead.pk}")
    drain_until_quiet()
    assert OutboxItem.objects.get(object_type="Lead").state == "dead"


# --- modes, pilot, limits -------------------------------------------------------------------------


def test_dry_run_records_every_write_and_sends_none(salesforce, settings):
    settings.SALESFORCE_SYNC = "dry_run"
    process(trial(), converted())
    outbox_drain()
    assert salesforce.requests_log.api_calls() == []
    assert set(states().values()) == {"dry_run"}
    assert OutboxItem.objects.get(object_type="Workspace__c").payload["Self_Serve_Status__c"] == "Paid"
    settings.SALESFORCE_SYNC = "live"
    drain_until_quiet()
    rows = list(OutboxItem.objects.values_list("object_type", "state", "error_code", "depends_on__state"))
    assert {state for _, state, _, _ in rows} == {"synced"}, f"going live sends what the dry run recorded: {rows}"


def test_pilot_percentage_holds_workspaces_outside_it(salesforce, settings):
    settings.SALESFORCE_PILOT_PERCENT = 0
    process(trial())
    outbox_drain()
    assert set(states().values()) == {"held"}
    assert salesforce.requests_log.api_calls() == []


def test_pilot_by_rep_sends_only_their_accounts(salesforce, settings, django_user_model):
    rep = django_user_model.objects.create(username="rep_ann")
    Account.objects.create(name="Acme", domain="acme.io", owner=rep)
    settings.SALESFORCE_PILOT_REPS = ["rep_ann"]
    process(trial("ws_1"), trial("ws_2", email="lee@beta.io"))
    outbox_drain()
    assert OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_1").state == "synced"
    assert OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_2").state == "held"


def test_api_usage_is_tracked_and_throttled_below_the_share(salesforce, settings):
    settings.SALESFORCE_MAX_API_SHARE = 0.5
    salesforce.set_api_limit(100, used=49)
    process(trial())
    outbox_drain()
    control = SyncControl.objects.get()
    assert control.api_max == 100 and control.api_used >= 50
    assert control.paused_until > timezone.now()
    assert "API usage" in control.pause_reason


def test_colleagues_converting_at_once_share_one_new_account(salesforce):
    process(
        trial("ws_1"), trial("ws_2", email="lee@acme.io"), converted("ws_1"), converted("ws_2", email="lee@acme.io")
    )
    drain_until_quiet()
    assert salesforce.store.count("Account") == 1
    assert salesforce.store.count("Contact") == 2
    assert set(states().values()) == {"synced"}
