"""The failure paths feed error tracking: Salesforce refusals over real HTTPS to the emulator, alert
emails refused by a real SMTP server; and the API usage read from Sforce-Limit-Info reaches the ops page."""

from __future__ import annotations

import logging

import pytest

from alerts.delivery import deliveries_send_due
from alerts.error_alerts import error_alerts_raise
from alerts.models import Alert
from failures.models import ErrorKind
from ops.dashboard import ops_overview
from processing.pipeline import workspace_process
from salesforce.models import OutboxItem
from salesforce.worker import outbox_drain
from tests.alerts.conftest import make_rep, smtp  # noqa: F401 (the SMTP server fixture)
from tests.alerts.test_delivery import rep_alert
from tests.events.helpers import lifecycle_event, store
from tests.salesforce.conftest import salesforce  # noqa: F401 (the emulator fixture)
from tests.salesforce.test_sync_live import make_due

pytestmark = pytest.mark.django_db


def process_trial(workspace_id: str, **data) -> None:
    store(lifecycle_event(f"{workspace_id}_trial", "trial.started", workspace_id=workspace_id, **data))
    workspace_process(workspace_key=workspace_id)


def test_a_retried_salesforce_error_is_one_kind_counted_per_record(salesforce, caplog):  # noqa: F811
    # given: Salesforce answers UNABLE_TO_LOCK_ROW to the first collection upsert
    salesforce.faults.unable_to_lock_row(kind="collection_upsert", count=1)
    process_trial("ws_1", email="ann@one.example")
    process_trial("ws_2", email="bo@two.example")

    # when
    with caplog.at_level(logging.WARNING, logger="salesforce"):
        outbox_drain()

    # then: both leads were refused; one kind, one row per failed record, the latest linked
    kind = ErrorKind.objects.get(source="sync")
    leads = list(OutboxItem.objects.filter(object_type="Lead").order_by("pk"))
    assert kind.kind == "UNABLE_TO_LOCK_ROW"
    assert kind.count == len(leads) == 2
    assert kind.last_object_id in {str(lead.pk) for lead in leads}
    error_alerts_raise()
    assert Alert.objects.filter(rule="error_new_kind").count() == 1
    refused = [r for r in caplog.records if r.getMessage().startswith("Salesforce refused Lead")]
    assert sorted(r.workspace_id for r in refused) == ["ws_1", "ws_2"]
    assert {r.outbox_id for r in refused} == {lead.pk for lead in leads}

    make_due()
    outbox_drain()
    assert ErrorKind.objects.get(source="sync").count == 2  # the retry succeeded: nothing new


def test_a_dead_letter_is_recorded_under_salesforces_error_code(salesforce):  # noqa: F811
    salesforce.store.add_validation_rule(
        "Workspace__c", lambda record: record.get("Plan__c") == "forbidden", "Plan not sold in this region", ["Plan__c"]
    )
    process_trial("ws_9", plan="forbidden")

    outbox_drain()

    kind = ErrorKind.objects.get(source="sync")
    assert kind.kind == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "Plan not sold in this region" in kind.message
    assert kind.last_workspace_key == "ws_9"


def test_api_usage_from_the_limit_header_is_on_the_ops_page(salesforce, settings):  # noqa: F811
    settings.SALESFORCE_MAX_API_SHARE = 0.9
    salesforce.set_api_limit(1000, used=100)
    process_trial("ws_3")

    outbox_drain()

    figures = {f.label: f for section in ops_overview() for f in section.figures}
    used = figures["API usage today"].value
    assert used.endswith(" of 1000 (10%; pauses at 90%)") or used.endswith(" of 1000 (11%; pauses at 90%)")
    assert figures["Last successful sync"].value.endswith(" ago")


def test_refused_alert_emails_are_one_delivery_error_kind(smtp):  # noqa: F811
    # given: the mail server refuses every recipient, permanently
    smtp.refuse = (550, "5.1.1 no such user")
    for key in ("k1", "k2"):
        rep_alert(make_rep(f"rep_{key}"), key)

    # when
    deliveries_send_due()

    # then
    kind = ErrorKind.objects.get(source="delivery")
    assert kind.kind == "SMTPRecipientsRefused"
    assert kind.count == 2
    assert "@" not in kind.message and "@" not in kind.last_example
    assert kind.last_object_type.model == "delivery"
    error_alerts_raise()
    assert Alert.objects.filter(rule="error_new_kind").count() == 1
