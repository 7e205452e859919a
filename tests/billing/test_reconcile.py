"""Billing reconciliation over real HTTP against localstripe, through the stripe library."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import trustme
from django.core.management import CommandError, call_command

from billing.reconcile import billing_reconcile
from billing.stripe_adapter import StripeBillingError, stripe_client
from events.models import Event
from processing.pipeline import workspace_process
from tests.billing.conftest import start_localstripe, stop, wait_for
from tests.billing.helpers import T0, paid_workspace, stripe_subscription
from tests.events.helpers import lifecycle_event, store
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def test_drift_is_reported_then_repaired_through_events_and_a_second_run_stores_nothing(localstripe):
    # given Stripe bills 3 seats, the engine believes in one, and knows no renewal date
    sub = stripe_subscription("ws_recon", quantity=3)
    paid_workspace("ws_recon", sub.id)
    # when
    report = billing_reconcile(repair=False)
    # then
    assert report.subscriptions == 1
    assert report.checked == 1
    drift = {d.field: (d.engine, d.stripe) for d in report.drifts}
    assert drift["mrr"] == ("29.00", "87.00")
    assert drift["renews_at"][0] == ""
    assert set(drift) == {"mrr", "renews_at"}
    assert report.stored == [] and not Event.objects.filter(source="stripe").exists(), "a report changes nothing"

    # when repaired
    repaired = billing_reconcile(repair=True)
    # then corrective events, not patched fields
    assert len(repaired.stored) == 2
    assert Workspace.objects.get(workspace_id="ws_recon").mrr == Decimal("29.00")
    corrections = Event.objects.filter(source="stripe", external_id__startswith=f"reconcile:{sub.id}:")
    assert sorted(corrections.values_list("type", flat=True)) == ["billing.renewal_updated", "subscription.converted"]
    assert set(corrections.values_list("status", flat=True)) == {Event.Status.NEW}

    # when processed
    workspace_process(workspace_key="ws_recon")
    workspace = Workspace.objects.get(workspace_id="ws_recon")
    assert workspace.mrr == Decimal("87.00")
    assert workspace.renews_at == datetime.fromtimestamp(sub["current_period_end"], tz=UTC)  # localstripe: top level
    assert workspace.converted_at == T0.replace(day=15), "the conversion date is kept"
    assert billing_reconcile(repair=True).drifts == []
    assert billing_reconcile(repair=True).stored == []


def test_repeated_repair_before_processing_is_idempotent(localstripe):
    sub = stripe_subscription("ws_twice", quantity=2)
    paid_workspace("ws_twice", sub.id)
    first = billing_reconcile(repair=True)
    second = billing_reconcile(repair=True)
    assert len(first.stored) == 2
    assert second.stored == []
    assert sorted(second.already_stored) == sorted(first.stored)


def test_unknown_workspace_and_missing_subscription_are_listed(localstripe):
    ghost = stripe_subscription("ws_ghost")
    paid_workspace("ws_orphan", "sub_does_not_exist")
    report = billing_reconcile(repair=True)
    assert report.unknown == [(ghost.id, "ws_ghost", "active")]
    assert report.missing == [("ws_orphan", "sub_does_not_exist")]
    assert report.stored == []


def test_cancellation_missed_by_the_engine_is_repaired_as_a_churn(localstripe):
    sub = stripe_subscription("ws_gone")
    paid_workspace("ws_gone", sub.id)
    stripe_client().v1.subscriptions.cancel(sub.id)
    report = billing_reconcile(repair=True)
    assert {d.field for d in report.drifts} == {"status"}
    workspace_process(workspace_key="ws_gone")
    workspace = Workspace.objects.get(workspace_id="ws_gone")
    assert workspace.status == "churned"
    assert billing_reconcile(repair=False).drifts == []


def test_a_missed_conversion_is_repaired(localstripe):
    sub = stripe_subscription("ws_missed")
    store(lifecycle_event("ws_missed_trial", "trial.started", workspace_id="ws_missed", at=T0))
    workspace_process(workspace_key="ws_missed")
    report = billing_reconcile(repair=True)
    assert "status" in {d.field for d in report.drifts}
    workspace_process(workspace_key="ws_missed")
    workspace = Workspace.objects.get(workspace_id="ws_missed")
    assert (workspace.status, workspace.plan, workspace.subscription_id) == ("paid", "team", sub.id)
    assert workspace.lead.converted


def test_command_reports_with_progress_and_repairs(localstripe):
    sub = stripe_subscription("ws_cmd", quantity=3)
    paid_workspace("ws_cmd", sub.id)
    out, err = io.StringIO(), io.StringIO()
    call_command("reconcile_billing", stdout=out, stderr=err)
    assert "1 drifted" in out.getvalue()
    assert "mrr: 1 differ, e.g. ws_cmd (engine 29.00, Stripe 87.00)" in out.getvalue()
    assert "--repair" in out.getvalue()
    assert "1/~1 Stripe subscriptions read, ETA" in err.getvalue()
    out = io.StringIO()
    call_command("reconcile_billing", "--repair", stdout=out, stderr=err)
    assert "Stored 2 corrective event(s)" in out.getvalue()


def test_command_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        call_command("reconcile_billing", "--help")
    assert "--repair" in capsys.readouterr().out


def test_missing_key_is_a_clear_error(settings):
    settings.STRIPE_API_KEY = ""
    with pytest.raises(CommandError, match="STRIPE_API_KEY is not set"):
        call_command("reconcile_billing", stdout=io.StringIO(), stderr=io.StringIO())


def test_refused_key_names_the_setting(localstripe, settings):
    settings.STRIPE_API_KEY = "rk_not_a_secret_key"
    with pytest.raises(CommandError, match="check STRIPE_API_KEY"):
        call_command("reconcile_billing", stdout=io.StringIO(), stderr=io.StringIO())


def test_unreachable_base_names_the_setting(settings):
    settings.STRIPE_API_KEY = "sk_test_x"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    settings.STRIPE_TIMEOUT_SECONDS = 1
    with pytest.raises(CommandError, match="check STRIPE_API_BASE"):
        call_command("reconcile_billing", stdout=io.StringIO(), stderr=io.StringIO())


def test_base_that_is_not_an_address_names_the_setting(settings):
    settings.STRIPE_API_KEY = "sk_test_x"
    settings.STRIPE_API_BASE = "api.stripe.com"
    with pytest.raises(StripeBillingError, match="STRIPE_API_BASE"):
        stripe_client()


def test_https_stand_in_is_trusted_through_requests_ca_bundle(settings, monkeypatch, tmp_path):
    """stripe's HTTP client passes its own CA bundle; REQUESTS_CA_BUNDLE must still decide (CONTRACT §1)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, bundle = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(bundle))
    process, port = start_localstripe("--cert", str(chain), "--key", str(key))
    try:
        wait_for(f"https://127.0.0.1:{port}/v1/customers", verify=str(bundle))
        settings.STRIPE_API_BASE = f"https://127.0.0.1:{port}"
        settings.STRIPE_API_KEY = "sk_test_tls"
        settings.STRIPE_TIMEOUT_SECONDS = 2
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        with pytest.raises(StripeBillingError, match="REQUESTS_CA_BUNDLE"):
            billing_reconcile(repair=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        sub = stripe_subscription("ws_tls")
        report = billing_reconcile(repair=False)
        assert report.unknown == [(sub.id, "ws_tls", "active")]
    finally:
        stop(process)


def test_daily_schedule_is_installed_without_catch_up(settings):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="Stripe billing reconciliation")
    assert (schedule.func, schedule.schedule_type, schedule.repeats) == ("billing.tasks.reconcile_billing", "D", -1)
    assert settings.Q_CLUSTER["catch_up"] is False


def test_task_skips_without_a_key(settings):
    from billing.tasks import reconcile_billing

    settings.STRIPE_API_KEY = ""
    assert reconcile_billing() == {"skipped": "STRIPE_API_KEY is not set"}


def test_task_repairs_and_raises_one_alert_for_what_it_cannot_repair(localstripe):
    from alerts.models import Alert
    from billing.tasks import reconcile_billing

    sub = stripe_subscription("ws_task", quantity=2)
    paid_workspace("ws_task", sub.id)
    ghost = stripe_subscription("ws_nobody")
    summary = reconcile_billing()
    assert summary["drifted"] == ["ws_task"]
    assert summary["unknown"] == [ghost.id]
    assert len(summary["stored"]) == 2
    reconcile_billing()
    assert Alert.objects.filter(rule="billing_drift").count() == 1
