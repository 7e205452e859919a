"""A processing task works on its workspaces together: one claim, one lock statement, one read of their
events, one completion and one transaction for all of them; it takes along workspaces whose events still
wait for their own task; and whatever goes wrong, each workspace ends as if it had been processed alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import Event
from processing import pipeline
from processing.tasks import process_workspaces
from salesforce.models import OutboxItem
from salesforce.outbox import EXTERNAL_ID, key_of
from tests.events.helpers import T0, lifecycle_event, queued_tasks, store
from workspaces.models import Account, Lead, Workspace
from workspaces.services import workspace_apply_state

pytestmark = pytest.mark.django_db


def forced_refolds() -> list[tuple]:
    """The arguments of the forced process_workspaces tasks waiting in the queue."""
    return [task["args"] for task in queued_tasks("processing.tasks.process_workspaces") if task["args"][1]]


def statements(queries: CaptureQueriesContext, start: str) -> int:
    return sum(1 for q in queries.captured_queries if q["sql"].startswith(start))


def trials(*keys: str) -> None:
    for n, key in enumerate(keys):
        store(lifecycle_event(f"t_{key}", "trial.started", workspace_id=key, email=f"owner{n}@acme.io"))


def statuses() -> dict[str, str]:
    return dict(Event.objects.values_list("workspace_key", "status"))


def test_a_task_claims_locks_reads_and_completes_its_workspaces_once_for_all():
    trials("ws_1", "ws_2", "ws_3", "ws_4")
    with CaptureQueriesContext(connection) as queries:  # processing only: alert rules are the task's
        outcomes = pipeline.workspaces_process(workspace_keys=["ws_1", "ws_2", "ws_3", "ws_4"])
    assert [(o.claimed, o.applied, o.failed) for o in outcomes] == [(1, 1, False)] * 4
    assert set(statuses().values()) == {"completed"}
    assert statements(queries, 'INSERT INTO "events_workspacelock"') == 1  # was one per workspace
    assert statements(queries, 'UPDATE "events_event"') == 2  # the claim and the completion
    assert statements(queries, 'SELECT "workspaces_workspace"') == 1  # read together, with their links


def test_one_failing_workspace_fails_alone_and_the_others_complete(monkeypatch):
    trials("ws_1", "ws_2", "ws_3")

    def apply_or_fail(*, state, **kwargs):
        if state.workspace_id == "ws_2":
            raise RuntimeError("simulated failure")
        return workspace_apply_state(state=state, **kwargs)

    monkeypatch.setattr(pipeline, "workspace_apply_state", apply_or_fail)
    outcome = process_workspaces(["ws_1", "ws_2", "ws_3"])
    assert outcome == {"workspaces": 3, "claimed": 3, "failed": 1}
    assert statuses() == {"ws_1": "completed", "ws_2": "error", "ws_3": "completed"}
    assert set(Workspace.objects.values_list("workspace_id", flat=True)) == {"ws_1", "ws_3"}
    failed = Event.objects.get(workspace_key="ws_2")
    assert failed.retry_count == 1 and "simulated failure" in failed.notes


def test_a_conversion_earlier_in_the_task_is_seen_by_a_colleague_later_in_it(settings):
    """ws_2 was read before ws_1's conversion gave it the owner's contact: it must not undo that."""
    settings.SALESFORCE_SYNC = "dry_run"
    for key in ("ws_1", "ws_2"):
        store(lifecycle_event(f"t_{key}", "trial.started", workspace_id=key, email="dana@acme.io"))
    process_workspaces(["ws_1", "ws_2"])
    store(lifecycle_event("c_ws_1", "subscription.converted", workspace_id="ws_1", at=T0 + timedelta(days=3)))
    store(
        lifecycle_event(
            "t2_ws_2", "trial.started", workspace_id="ws_2", email="dana@acme.io", at=T0 + timedelta(days=1)
        )
    )
    process_workspaces(["ws_1", "ws_2"])
    lead = Lead.objects.get(email="dana@acme.io")
    assert lead.converted_contact is not None
    first, second = Workspace.objects.get(workspace_id="ws_1"), Workspace.objects.get(workspace_id="ws_2")
    assert first.contact_id == second.contact_id == lead.converted_contact_id
    assert first.account_id == second.account_id == lead.converted_account_id
    assert set(statuses().values()) == {"completed"}
    # ... and what Salesforce is to hold for ws_2 says so too (not the state read before the conversion).
    payload = OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_2").payload
    assert payload["Contact__r"] == {EXTERNAL_ID: key_of("Contact", lead.converted_contact_id)}


def test_a_task_takes_along_workspaces_still_waiting_for_their_own_task(settings):
    settings.PROCESSING_TASK_MAX_WORKSPACES = 3
    trials("ws_1", "ws_2", "ws_3", "ws_4")
    outcome = process_workspaces(["ws_4"])
    assert outcome["workspaces"] == 3 and outcome["claimed"] == 3
    assert statuses() == {"ws_1": "completed", "ws_2": "completed", "ws_3": "new", "ws_4": "completed"}
    assert process_workspaces(["ws_1"]) == {"workspaces": 2, "claimed": 1, "failed": 0}  # ws_3, the oldest left
    assert set(statuses().values()) == {"completed"}


def test_a_forced_task_and_a_limit_of_zero_take_nothing_along(settings):
    trials("ws_1", "ws_2")
    assert process_workspaces(["ws_2"], force=True)["workspaces"] == 1
    settings.PROCESSING_TASK_MAX_WORKSPACES = 0
    assert process_workspaces(["ws_2"])["workspaces"] == 1
    assert statuses() == {"ws_1": "new", "ws_2": "completed"}


@pytest.mark.parametrize("colleagues", [2, 8])
def test_a_conversion_onto_an_existing_account_does_not_re_record_its_other_workspaces(settings, colleagues):
    """Colleagues on the account it converts onto hold what they held: what it costs does not grow with them."""
    settings.SALESFORCE_SYNC = "dry_run"
    Account.objects.create(name="Acme", domain="acme.io")
    keys = [f"ws_{n}" for n in range(colleagues + 1)]
    trials(*keys)
    process_workspaces(keys)
    assert Workspace.objects.filter(account__domain="acme.io").count() == colleagues + 1
    versions = dict(OutboxItem.objects.filter(object_type="Workspace__c").values_list("external_id", "version"))
    store(lifecycle_event("c_ws_0", "subscription.converted", workspace_id="ws_0", at=T0 + timedelta(days=3)))
    with CaptureQueriesContext(connection) as queries:
        pipeline.workspaces_process(workspace_keys=["ws_0"])
    # Its own read and the lead's other workspaces, however many colleagues (the audit trail reads no
    # old row: workspaces/auditing.py).
    assert statements(queries, 'SELECT "workspaces_workspace"') == 2
    assert statements(queries, 'SELECT "sync_outboxitem"') == 1
    after = dict(OutboxItem.objects.filter(object_type="Workspace__c").values_list("external_id", "version"))
    assert after.pop("ws_0") == versions.pop("ws_0") + 1 and after == versions


def test_a_colleague_adopted_by_a_new_account_earlier_in_the_task_keeps_it(settings):
    """ws_1's payment creates the newco.io account and adopts ws_2, which the task read before that."""
    settings.SALESFORCE_SYNC = "dry_run"
    store(lifecycle_event("t_ws_1", "trial.started", workspace_id="ws_1", email="dana@newco.io"))
    store(lifecycle_event("t_ws_2", "trial.started", workspace_id="ws_2", email="lee@newco.io"))
    process_workspaces(["ws_1", "ws_2"])
    assert not Account.objects.exists()
    store(lifecycle_event("c_ws_1", "subscription.converted", workspace_id="ws_1", at=T0 + timedelta(days=3)))
    store(lifecycle_event("x_ws_2", "workspace.churned", workspace_id="ws_2", at=T0 + timedelta(days=3)))
    process_workspaces(["ws_1", "ws_2"])
    account = Account.objects.get(domain="newco.io")
    adopted = Workspace.objects.get(workspace_id="ws_2")
    assert (adopted.account_id, adopted.status) == (account.pk, "churned")
    payload = OutboxItem.objects.get(object_type="Workspace__c", external_id="ws_2").payload
    assert payload["Account__r"] == {EXTERNAL_ID: key_of("Account", account.pk)}
    assert payload["Self_Serve_Status__c"] == "Churned"


def test_after_a_conversion_only_the_workspaces_it_changed_are_read_again(settings):
    """A payment earlier in the task does not make unrelated workspaces after it read themselves again."""
    settings.SALESFORCE_SYNC = "dry_run"
    emails = {"ws_1": "dana@acme.io", "ws_2": "kim@other.io", "ws_3": "lee@third.io"}
    for key, email in emails.items():
        store(lifecycle_event(f"t_{key}", "trial.started", workspace_id=key, email=email))
    process_workspaces(list(emails))
    later = T0 + timedelta(days=3)
    store(lifecycle_event("c_ws_1", "subscription.converted", workspace_id="ws_1", at=later))
    for key in ("ws_2", "ws_3"):
        store(lifecycle_event(f"x_{key}", "workspace.churned", workspace_id=key, at=later))
    with CaptureQueriesContext(connection) as queries:
        pipeline.workspaces_process(workspace_keys=list(emails))
    # The task's read of all three, and the conversion's looks for the lead's other workspaces and for
    # workspaces its new acme.io account adopts: ws_2 and ws_3 are not read again.
    assert statements(queries, 'SELECT "workspaces_workspace"') == 3
    assert dict(Workspace.objects.values_list("workspace_id", "status")) == {
        "ws_1": "paid",
        "ws_2": "churned",
        "ws_3": "churned",
    }


def test_a_task_reads_and_inserts_the_outbox_rows_of_its_workspaces_together(settings):
    settings.SALESFORCE_SYNC = "dry_run"
    trials("ws_1", "ws_2", "ws_3", "ws_4")
    with CaptureQueriesContext(connection) as queries:
        pipeline.workspaces_process(workspace_keys=["ws_1", "ws_2", "ws_3", "ws_4"])
    assert statements(queries, 'SELECT "sync_outboxitem"') == 1
    assert statements(queries, 'INSERT INTO "sync_outboxitem"') == 1  # was one per workspace
    rows = OutboxItem.objects.values_list("object_type", "workspace_key")
    assert sorted(rows) == sorted(
        [("Lead", f"ws_{n}") for n in range(1, 5)] + [("Workspace__c", f"ws_{n}") for n in range(1, 5)]
    )


def test_a_trial_that_missed_a_colleagues_new_account_is_linked_after_its_commit(
    monkeypatch, django_capture_on_commit_callbacks
):
    """The race: a new trial on a domain is committed while a colleague's payment creates the domain's
    account; neither sees the other. Simulated by hiding the account from the trial's link."""
    store(lifecycle_event("t_ws_2", "trial.started", workspace_id="ws_2", email="lee@newco.io"))
    account = Account.objects.create(name="Newco", domain="newco.io")  # committed by the other worker

    hidden = Account.objects.none()
    real_filter = Account.objects.filter
    monkeypatch.setattr(
        Account.objects, "filter", lambda *a, **kw: hidden if kw == {"domain": "newco.io"} else real_filter(*a, **kw)
    )
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.workspaces_process(workspace_keys=["ws_2"])
    monkeypatch.undo()
    assert Workspace.objects.get(workspace_id="ws_2").account_id is None
    assert forced_refolds() == [(["ws_2"], True)]
    process_workspaces(["ws_2"], force=True)
    assert Workspace.objects.get(workspace_id="ws_2").account_id == account.pk


def test_a_payment_whose_new_account_missed_a_colleague_re_processes_it_after_its_commit(
    monkeypatch, django_capture_on_commit_callbacks
):
    """The other side of the race: the colleague's trial commits while the payment's adoption runs."""
    from linking import services as linking

    for key, email in (("ws_1", "dana@newco.io"), ("ws_2", "lee@newco.io")):
        store(lifecycle_event(f"t_{key}", "trial.started", workspace_id=key, email=email))
    process_workspaces(["ws_1", "ws_2"])
    store(lifecycle_event("c_ws_1", "subscription.converted", workspace_id="ws_1", at=T0 + timedelta(days=3)))
    monkeypatch.setattr(linking, "account_adopt_workspaces", lambda **kwargs: [])  # ws_2 not yet visible to it
    with django_capture_on_commit_callbacks(execute=True):
        pipeline.workspaces_process(workspace_keys=["ws_1"])
    monkeypatch.undo()
    assert Workspace.objects.get(workspace_id="ws_2").account_id is None
    assert forced_refolds() == [(["ws_2"], True)]
    process_workspaces(["ws_2"], force=True)
    assert Workspace.objects.get(workspace_id="ws_2").account == Account.objects.get(domain="newco.io")


def test_nothing_is_re_processed_when_links_are_whole(django_capture_on_commit_callbacks):
    for key, email in (("ws_1", "dana@newco.io"), ("ws_2", "lee@newco.io"), ("ws_3", "kim@gmail.com")):
        store(lifecycle_event(f"t_{key}", "trial.started", workspace_id=key, email=email))
    with django_capture_on_commit_callbacks(execute=True):
        process_workspaces(["ws_1", "ws_2", "ws_3"])
    store(lifecycle_event("c_ws_1", "subscription.converted", workspace_id="ws_1", at=T0 + timedelta(days=3)))
    with django_capture_on_commit_callbacks(execute=True):
        process_workspaces(["ws_1"])
    assert not forced_refolds()
    assert Workspace.objects.get(workspace_id="ws_2").account is not None  # adopted in the payment's transaction
