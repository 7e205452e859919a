"""Processing writes each record once: one INSERT or UPDATE (and one audit entry) per changed record, new
outbox rows inserted together, alerts inserted with their routing, routing tables read once per batch."""

from __future__ import annotations

from datetime import timedelta

import pytest
from auditlog.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.models import Alert, TerritoryRule
from alerts.routing import workspace_route
from alerts.services import alert_raise
from alerts.tables import tables_cached
from processing.pipeline import workspace_process
from processing.tasks import process_workspaces
from salesforce.models import OutboxItem
from salesforce.outbox import NewRows, outbox_record, outbox_record_workspaces
from tests.alerts.conftest import make_rep
from tests.events.helpers import T0, lifecycle_event, store
from tests.factories import WorkspaceFactory
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def entries_for(obj) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(obj).order_by("pk"))


def statements(queries: CaptureQueriesContext, verb: str, table: str) -> int:
    """Statements of this verb on this table (a SELECT counts by its FROM, not by its joins)."""
    target = {"SELECT": f'FROM "{table}"', "INSERT": f'INTO "{table}"', "UPDATE": f'UPDATE "{table}"'}[verb]
    return sum(1 for q in queries.captured_queries if q["sql"].startswith(verb) and target in q["sql"])


def test_a_conversion_updates_the_workspace_once_with_its_state_links_and_review_flag(settings):
    settings.SALESFORCE_SYNC = "dry_run"
    store(lifecycle_event("e1", "trial.started", email="dana@gmail.com"))  # free mail: a review question
    workspace_process(workspace_key="ws_1")
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert workspace.needs_review and len(entries_for(workspace)) == 1  # created with its flag set
    store(lifecycle_event("e2", "subscription.converted", at=T0 + timedelta(days=2)))
    workspace_process(workspace_key="ws_1")
    workspace.refresh_from_db()
    assert workspace.status == "paid" and workspace.contact is not None and workspace.account is not None
    assert not workspace.needs_review  # the new account answers the free-mail question
    update = entries_for(workspace)[1:]
    assert len(update) == 1, [e.changes for e in update]
    assert {"status", "contact", "account", "needs_review"} <= set(update[0].changes_dict)


def test_a_new_workspace_inserts_its_outbox_rows_in_one_statement(settings):
    settings.SALESFORCE_SYNC = "dry_run"
    store(lifecycle_event("e1", "trial.started"))
    with CaptureQueriesContext(connection) as queries:
        workspace_process(workspace_key="ws_1")
    assert statements(queries, "INSERT", "sync_outboxitem") == 1
    assert set(OutboxItem.objects.values_list("object_type", flat=True)) == {"Lead", "Workspace__c"}


def test_new_rows_fall_back_to_one_by_one_when_another_worker_inserted_one_first():
    theirs = outbox_record(object_type="Lead", external_id="lead_1", payload={"Email": "old@acme.io"})
    new_rows = NewRows()
    mine = outbox_record(
        object_type="Lead", external_id="lead_1", payload={"Email": "dana@acme.io"}, existing=None, new_rows=new_rows
    )
    other = outbox_record(
        object_type="Workspace__c", external_id="ws_1", payload={"Name": "ws"}, existing=None, new_rows=new_rows
    )
    new_rows.flush()
    theirs.refresh_from_db()
    assert mine.pk == theirs.pk and theirs.payload == {"Email": "dana@acme.io"} and theirs.version == 2
    assert other.pk is not None and OutboxItem.objects.count() == 2


def test_a_row_that_depends_on_a_new_one_gets_its_id():
    new_rows = NewRows()
    lead = outbox_record(object_type="Lead", external_id="lead_1", payload={}, existing=None, new_rows=new_rows)
    conversion = outbox_record(
        object_type="LeadConversion",
        external_id="lead_1",
        payload={},
        depends_on=lead,
        existing=None,
        new_rows=new_rows,
    )
    new_rows.flush()
    assert lead.pk is not None
    assert OutboxItem.objects.get(pk=conversion.pk).depends_on_id == lead.pk


def test_colleagues_are_recorded_with_one_read_of_the_outbox(settings):
    settings.SALESFORCE_SYNC = "dry_run"
    for n in range(1, 4):
        store(lifecycle_event(f"e{n}", "trial.started", workspace_id=f"ws_{n}", email=f"p{n}@acme.io"))
        workspace_process(workspace_key=f"ws_{n}")
    colleagues = list(Workspace.objects.select_related("lead", "account", "contact"))
    with CaptureQueriesContext(connection) as queries:
        outbox_record_workspaces(workspaces=colleagues)
    assert statements(queries, "SELECT", "sync_outboxitem") == 1


def test_an_alert_is_inserted_with_its_routing_in_one_audit_entry():
    rep = make_rep("tess")
    TerritoryRule.objects.create(name="Acme", rep=rep, domains="acme.io")
    workspace = WorkspaceFactory(email="dana@acme.io")
    with CaptureQueriesContext(connection) as queries:
        alert, created = alert_raise(
            rule="trial_started", dedupe_key="k1", title="t", reason="r", audience="rep", workspace=workspace
        )
    assert created and alert.recipient == rep.user and alert.routed_by == "territory"
    assert statements(queries, "UPDATE", "alerts_alert") == 0
    [entry] = entries_for(alert)
    assert entry.changes_dict["routed_by"][1] == "territory"


def test_a_checked_key_taken_meanwhile_returns_the_existing_alert():
    first, _ = alert_raise(rule="event_failed", dedupe_key="k1", title="t", reason="r")
    again, created = alert_raise(rule="event_failed", dedupe_key="k1", title="t", reason="r", checked=True)
    assert (again.pk, created) == (first.pk, False) and Alert.objects.count() == 1


def test_routing_tables_are_read_once_inside_a_batch():
    TerritoryRule.objects.create(name="Acme", rep=make_rep("tess"), domains="acme.io")
    workspaces = [WorkspaceFactory(email=f"p{n}@beta.io") for n in range(6)]  # new customers: no owner yet
    with CaptureQueriesContext(connection) as outside:
        for workspace in workspaces[:3]:
            workspace_route(workspace=workspace)
    with CaptureQueriesContext(connection) as inside, tables_cached():
        for workspace in workspaces[3:]:
            workspace_route(workspace=workspace)
    assert statements(outside, "SELECT", "alerts_territoryrule") == 3
    assert statements(inside, "SELECT", "alerts_territoryrule") == 1
    assert statements(inside, "SELECT", "alerts_rep") == 1


def test_a_task_evaluates_alerts_for_its_workspaces_reading_the_rules_once():
    for n in range(1, 4):
        store(lifecycle_event(f"e{n}", "trial.started", workspace_id=f"ws_{n}", email=f"p{n}@acme.io"))
    with CaptureQueriesContext(connection) as queries:
        process_workspaces(["ws_1", "ws_2", "ws_3"])
    assert statements(queries, "SELECT", "alerts_alertrule") == 1
    assert Alert.objects.filter(workspace__workspace_id__in=["ws_1", "ws_2", "ws_3"]).count() >= 3


def test_a_batch_of_evaluations_reads_workspaces_taken_keys_and_evidence_once_each():
    from alerts.services import workspaces_alerts_evaluate

    keys = [f"ws_{n}" for n in range(1, 5)]
    for n, key in enumerate(keys, start=1):
        store(lifecycle_event(f"e{n}", "trial.started", workspace_id=key, email=f"p{n}@acme.io"))
        workspace_process(workspace_key=key, alerts=False)
    with CaptureQueriesContext(connection) as queries:
        created = workspaces_alerts_evaluate(workspace_keys=keys)
    assert {alert.workspace.workspace_id for alert in created} == set(keys)
    assert statements(queries, "SELECT", "workspaces_workspace") == 1
    assert statements(queries, "SELECT", "alerts_alert") == 1
    assert statements(queries, "SELECT", "events_event") == 1
    assert workspaces_alerts_evaluate(workspace_keys=keys) == []  # idempotent


def test_admin_recipients_are_read_once_inside_a_batch(django_user_model):
    from alerts.roles import admin_recipients

    django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    with CaptureQueriesContext(connection) as inside, tables_cached():
        assert admin_recipients() == admin_recipients()
    with CaptureQueriesContext(connection) as outside:
        admin_recipients()
        admin_recipients()
    assert (statements(inside, "SELECT", "auth_user"), statements(outside, "SELECT", "auth_user")) == (1, 2)
