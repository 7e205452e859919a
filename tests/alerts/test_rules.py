"""Alert rules over time (time-machine): what fires when, once, with the evidence that made it fire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Group
from django_q.models import Schedule

from alerts.models import Alert, AlertRule, Delivery
from alerts.roles import ADMINS_GROUP
from alerts.services import alert_raise, alerts_evaluate_scheduled, workspace_alerts_evaluate
from processing.pipeline import workspace_process
from tests.alerts.conftest import make_rep
from tests.events.helpers import lifecycle_event, store
from tests.factories import AccountFactory, EventFactory, WorkspaceFactory
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def keys(rule: str) -> list[str]:
    return sorted(Alert.objects.filter(rule=rule).values_list("dedupe_key", flat=True))


def trial(**fields) -> Workspace:
    defaults = {"workspace_id": "ws_t", "company": "Acme", "email": "dana@acme.io", "trial_started_at": T0}
    return WorkspaceFactory(**{**defaults, **fields})


# --- trial expiring / expired -------------------------------------------------------------------


def test_trial_expiring_fires_at_7_3_and_1_days_then_expired():
    # given a trial expiring ten days from now, its trial.started event on record
    trial(trial_expires_at=T0 + timedelta(days=10))
    EventFactory(external_id="msg_start", workspace_key="ws_t", occurred_at=T0)
    # when the schedule runs every few hours for eleven days
    for hours in range(0, 11 * 24, 5):
        with time_machine.travel(T0 + timedelta(hours=hours), tick=False):
            alerts_evaluate_scheduled()
    # then one reminder per offset, then one expiry alert
    assert keys("trial_expiring") == [
        "trial_expiring:ws_t:20261211:1d",
        "trial_expiring:ws_t:20261211:3d",
        "trial_expiring:ws_t:20261211:7d",
    ]
    assert keys("trial_expired") == ["trial_expired:ws_t:20261211"]
    seven = Alert.objects.get(dedupe_key__endswith=":7d")
    assert seven.context["event_ids"] == ["msg_start"]
    assert seven.context["values"]["offset_days"] == 7
    assert seven.created_at == T0 + timedelta(hours=75)  # the first run within seven days of expiry (72 h)


def test_a_schedule_that_was_down_sends_only_the_nearest_reminder():
    trial(trial_expires_at=T0 + timedelta(days=10))
    with time_machine.travel(T0 + timedelta(days=9, hours=12), tick=False):
        alerts_evaluate_scheduled()
    assert keys("trial_expiring") == ["trial_expiring:ws_t:20261211:1d"]


def test_day_offsets_are_configurable_in_the_rule():
    AlertRule.objects.filter(key="trial_expiring").update(days_before="14,2")
    trial(trial_expires_at=T0 + timedelta(days=20))
    for days in (5, 7, 17, 19):
        with time_machine.travel(T0 + timedelta(days=days), tick=False):
            alerts_evaluate_scheduled()
    assert keys("trial_expiring") == ["trial_expiring:ws_t:20261221:14d", "trial_expiring:ws_t:20261221:2d"]


def test_a_converted_trial_gets_no_expiry_alerts():
    trial(trial_expires_at=T0 + timedelta(days=2), status="paid", converted_at=T0, mrr=Decimal("10"))
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        alerts_evaluate_scheduled()
    assert not Alert.objects.filter(rule__in=["trial_expiring", "trial_expired"]).exists()


def test_a_trial_that_expired_long_ago_raises_nothing_when_first_seen():
    trial(trial_expires_at=T0 - timedelta(days=30), trial_started_at=T0 - timedelta(days=60))
    with time_machine.travel(T0, tick=False):
        assert workspace_alerts_evaluate(workspace_key="ws_t") == []


def test_a_disabled_rule_does_not_fire():
    AlertRule.objects.filter(key="trial_expiring").update(enabled=False)
    trial(trial_expires_at=T0 + timedelta(days=2))
    with time_machine.travel(T0, tick=False):
        alerts_evaluate_scheduled()
    assert not Alert.objects.filter(rule="trial_expiring").exists()


# --- state changes --------------------------------------------------------------------------------


@time_machine.travel(T0 + timedelta(hours=1), tick=False)
def test_conversion_alert_names_plan_mrr_and_the_conversion_event():
    # given
    trial(status="paid", plan="team", mrr=Decimal("297.00"), converted_at=T0)
    EventFactory(external_id="msg_trial", workspace_key="ws_t", occurred_at=T0 - timedelta(days=5))
    EventFactory(external_id="msg_paid", type="subscription.converted", workspace_key="ws_t", occurred_at=T0)
    # when
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    # then
    assert alert.rule == "converted"
    assert alert.dedupe_key == "converted:ws_t:20261201T090000"
    assert "297.00" in alert.title and "team" in alert.reason
    assert alert.context == {
        "event_ids": ["msg_paid"],
        "values": {"plan": "team", "mrr": "297.00", "currency": "USD", "converted_at": T0.isoformat()},
    }
    assert workspace_alerts_evaluate(workspace_key="ws_t") == [], "evaluating again raises nothing new"


@time_machine.travel(T0 + timedelta(days=5), tick=False)
def test_an_old_conversion_raises_no_alert_on_replay():
    trial(status="paid", plan="team", mrr=Decimal("297.00"), converted_at=T0)
    assert workspace_alerts_evaluate(workspace_key="ws_t") == []


@time_machine.travel(T0 + timedelta(hours=2), tick=False)
def test_churn_alert_carries_the_mrr_lost():
    trial(status="churned", plan="team", mrr=Decimal("297.00"), churned_at=T0, churn_reason="too expensive")
    EventFactory(external_id="msg_churn", type="workspace.churned", workspace_key="ws_t", occurred_at=T0)
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    assert alert.rule == "churned"
    assert alert.context["values"]["mrr_lost"] == "297.00"
    assert alert.context["event_ids"] == ["msg_churn"]
    assert "297.00 USD MRR lost" in alert.title
    assert "too expensive" in alert.reason


@time_machine.travel(T0 + timedelta(hours=2), tick=False)
def test_payment_failed_cites_the_failed_invoices():
    trial(status="paid", plan="team", mrr=Decimal("99.00"), converted_at=T0 - timedelta(days=40), at_risk=True)
    Workspace.objects.filter(workspace_id="ws_t").update(at_risk_since=T0)
    EventFactory(
        external_id="evt_fail",
        type="billing.payment_failed",
        source="stripe",
        workspace_key="ws_t",
        occurred_at=T0,
        payload={"data": {"workspace_id": "ws_t", "amount_due": "99.00", "attempt_count": 1, "invoice_id": "in_1"}},
    )
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    assert alert.rule == "payment_failed"
    assert alert.context["event_ids"] == ["evt_fail"]
    assert alert.context["values"]["amount_due"] == "99.00"
    assert alert.context["values"]["invoice_id"] == "in_1"


@time_machine.travel(T0 + timedelta(hours=1), tick=False)
def test_a_trial_on_an_existing_account_is_its_own_rule_routed_to_the_owner():
    owner = make_rep("olga").user
    account = AccountFactory(name="Acme", domain="acme.io", owner=owner)
    trial(account=account, trial_expires_at=T0 + timedelta(days=30))
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    assert alert.rule == "existing_account_trial"
    assert alert.recipient == owner
    assert alert.routed_by == "owner"
    assert not Alert.objects.filter(rule="trial_started").exists()


@time_machine.travel(T0 + timedelta(hours=1), tick=False)
def test_a_paying_workspace_starting_a_trial_is_an_existing_account_trial():
    history = [{"event_id": "msg_t2", "started_at": T0.isoformat(), "expires_at": "", "plan": "enterprise"}]
    trial(status="paid", plan="team", mrr=Decimal("50"), converted_at=T0 - timedelta(days=90), trial_history=history)
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    assert alert.rule == "existing_account_trial"
    assert alert.context["event_ids"] == ["msg_t2"]


@time_machine.travel(T0 + timedelta(hours=1), tick=False)
def test_needs_review_goes_to_admins_by_email():
    admin = make_rep("adele").user
    admin.groups.add(Group.objects.get_or_create(name=ADMINS_GROUP)[0])
    trial(needs_review=True, review_reasons=["No trial data on record."], trial_started_at=T0 - timedelta(days=9))
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    assert alert.rule == "needs_review"
    assert alert.audience == "admins" and alert.recipient is None and alert.routed_by == "admins"
    assert list(alert.deliveries.values_list("channel", "recipient")) == [("email", "adele@sales.example")]


def test_existing_callers_of_alert_raise_keep_working():
    alert, created = alert_raise(rule="sync_paused", dedupe_key="sync_paused:1", title="Paused", reason="limits")
    again, created_again = alert_raise(rule="sync_paused", dedupe_key="sync_paused:1", title="Paused", reason="x")
    assert created and not created_again and again.pk == alert.pk
    assert alert.audience == "admins" and alert.routing


# --- the pipeline hook and the schedule -----------------------------------------------------------


def test_processing_a_new_trial_and_its_conversion_raises_both_alerts_with_their_events(settings):
    make_rep("rita")
    now = datetime.now(tz=UTC)
    store(lifecycle_event("e1", "trial.started", email="dana@gmail.com", at=now - timedelta(hours=2)))
    workspace_process(workspace_key="ws_1")
    [started] = Alert.objects.filter(rule="trial_started")
    assert started.context["event_ids"] == ["e1"]
    assert started.recipient.username == "rita" and started.routed_by == "round_robin"
    assert started.deliveries.get().channel == Delivery.Channel.EMAIL

    store(lifecycle_event("e2", "subscription.converted", email="dana@gmail.com", at=now - timedelta(hours=1)))
    workspace_process(workspace_key="ws_1")
    converted = Alert.objects.get(rule="converted")
    assert converted.context["event_ids"] == ["e2"]
    assert converted.context["values"]["mrr"] == "297.00"


def test_a_failing_rule_never_fails_processing(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("rules are broken")

    monkeypatch.setattr("alerts.services.workspace_alerts_evaluate", broken)
    store(lifecycle_event("e1", "trial.started", at=datetime.now(tz=UTC)))
    outcome = workspace_process(workspace_key="ws_1")
    assert not outcome.failed
    assert Workspace.objects.get(workspace_id="ws_1").status == "trial"


def test_the_schedule_reopens_snoozed_alerts_when_their_time_comes():
    alert, _ = alert_raise(rule="sync_paused", dedupe_key="k", title="t", reason="r")
    Alert.objects.filter(pk=alert.pk).update(status="snoozed", snoozed_until=T0)
    with time_machine.travel(T0 - timedelta(minutes=1), tick=False):
        assert alerts_evaluate_scheduled()["unsnoozed"] == 0
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
        assert alerts_evaluate_scheduled()["unsnoozed"] == 1
    alert.refresh_from_db()
    assert alert.status == "open" and alert.snoozed_until is None


def test_the_schedules_are_installed_by_migration():
    funcs = set(Schedule.objects.values_list("func", flat=True))
    assert {"alerts.tasks.deliver_due", "alerts.tasks.evaluate_scheduled", "alerts.tasks.send_digests"} <= funcs
    assert AlertRule.objects.get(key="needs_review").audience == "admins"
    assert AlertRule.objects.get(key="trial_expiring").day_offsets() == [1, 3, 7]
