"""Stripe and provisioning describe the same conversion: through the real processor, in either arrival
order, the workspace converts once, its lead converts once, and nobody is asked to review anything."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

import linking.services
from events.models import Event
from processing.pipeline import workspace_process
from tests.billing.conftest import fixture
from tests.events.helpers import lifecycle_event, store
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace

pytestmark = pytest.mark.django_db

WS = "ws_stripe_1"
TRIAL_AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PROVISIONING_CONVERTED_AT = datetime(2026, 11, 15, 12, 0, 3, tzinfo=UTC)
STRIPE_CONVERTED_AT = datetime(2026, 11, 15, 12, 0, 5, tzinfo=UTC)


@pytest.fixture
def conversions(monkeypatch) -> list[str]:
    """Every lead conversion that really happens (not the no-op repeats)."""
    real = linking.services.lead_convert
    seen: list[str] = []

    def spy(*, lead: Lead, **kwargs):
        if lead.converted_at is None:
            seen.append(lead.email)
        return real(lead=lead, **kwargs)

    monkeypatch.setattr(linking.services, "lead_convert", spy)
    return seen


def provisioning_conversion():
    return lifecycle_event(
        "msg_conv",
        "subscription.converted",
        workspace_id=WS,
        at=PROVISIONING_CONVERTED_AT,
        plan="team",
        mrr="29.00",
        email="dana@acme.io",
    )


def deliver(kind: str, send_stripe) -> None:
    if kind == "provisioning":
        store(provisioning_conversion())
    elif kind == "stripe-subscription":
        assert send_stripe(fixture("customer.subscription.updated.trial_to_active")).status_code == 202
    else:
        assert send_stripe(fixture("invoice.paid.subscription_cycle")).status_code == 202
    workspace_process(workspace_key=WS)


@pytest.mark.parametrize(
    "order",
    [
        ("provisioning", "stripe-subscription", "stripe-invoice"),
        ("stripe-subscription", "stripe-invoice", "provisioning"),
        ("stripe-invoice", "provisioning", "stripe-subscription"),
    ],
    ids=["provisioning-first", "stripe-first", "interleaved"],
)
def test_provisioning_and_stripe_conversions_converge_to_one(send_stripe, conversions, order):
    # given a trial known to both systems
    store(lifecycle_event("msg_trial", "trial.started", workspace_id=WS, at=TRIAL_AT, email="dana@acme.io"))
    assert send_stripe(fixture("customer.subscription.created.trialing")).status_code == 202
    workspace_process(workspace_key=WS)
    # when the conversion arrives from both, in this order
    for kind in order:
        deliver(kind, send_stripe)
    # then
    workspace = Workspace.objects.get(workspace_id=WS)
    assert workspace.status == "paid"
    assert workspace.plan == "team"
    assert workspace.mrr == Decimal("29.00")
    assert workspace.converted_at == PROVISIONING_CONVERTED_AT, "the earliest conversion is the conversion"
    assert workspace.subscription_id == "sub_1SZx4kT8vZ2mYb1xQ9rL0aBc"
    assert workspace.needs_review is False
    assert not ReviewItem.objects.filter(status="open").exists()
    assert conversions == ["dana@acme.io"], "the lead converts exactly once"
    assert Lead.objects.get(email="dana@acme.io").converted
    assert Contact.objects.count() == 1
    assert Account.objects.count() == 1
    assert not Event.objects.exclude(status=Event.Status.COMPLETED).exists()


def test_stripe_alone_converts_a_provisioned_trial(send_stripe, conversions):
    store(lifecycle_event("msg_trial", "trial.started", workspace_id=WS, at=TRIAL_AT, email="dana@acme.io"))
    workspace_process(workspace_key=WS)
    deliver("stripe-subscription", send_stripe)
    workspace = Workspace.objects.get(workspace_id=WS)
    assert (workspace.status, workspace.converted_at) == ("paid", STRIPE_CONVERTED_AT)
    assert conversions == ["dana@acme.io"]


def test_payment_failure_marks_at_risk_and_recovery_clears_it_through_the_processor(send_stripe):
    # given a paid workspace
    store(lifecycle_event("msg_trial", "trial.started", workspace_id=WS, at=TRIAL_AT, email="dana@acme.io"))
    deliver("stripe-subscription", send_stripe)
    # when a renewal payment fails
    assert send_stripe(fixture("invoice.payment_failed")).status_code == 202
    workspace_process(workspace_key=WS)
    # then
    workspace = Workspace.objects.get(workspace_id=WS)
    assert workspace.at_risk is True
    assert workspace.at_risk_since == datetime(2026, 12, 15, 13, 0, 7, tzinfo=UTC)
    # when the subscription is paid again (past_due → active, later)
    recovered = fixture("customer.subscription.updated.trial_to_active")
    recovered["id"] = "evt_recovered"
    recovered["created"] = int(datetime(2026, 12, 18, 13, 0, 9, tzinfo=UTC).timestamp())
    recovered["data"]["previous_attributes"] = {"status": "past_due"}
    assert send_stripe(recovered).status_code == 202
    workspace_process(workspace_key=WS)
    # then
    workspace.refresh_from_db()
    assert (workspace.at_risk, workspace.at_risk_since) == (False, None)
    assert workspace.converted_at == STRIPE_CONVERTED_AT


def test_renewal_and_churn_through_the_processor(send_stripe):
    store(lifecycle_event("msg_trial", "trial.started", workspace_id=WS, at=TRIAL_AT, email="dana@acme.io"))
    deliver("stripe-subscription", send_stripe)
    assert send_stripe(fixture("customer.subscription.updated.renewal")).status_code == 202
    workspace_process(workspace_key=WS)
    assert Workspace.objects.get(workspace_id=WS).renews_at == datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
    assert send_stripe(fixture("customer.subscription.deleted")).status_code == 202
    workspace_process(workspace_key=WS)
    workspace = Workspace.objects.get(workspace_id=WS)
    assert workspace.status == "churned"
    assert workspace.churned_at == datetime(2027, 1, 10, 9, 30, tzinfo=UTC)
    assert workspace.churn_reason.startswith("cancellation_requested: switched_service")
    assert workspace.renews_at is None


def test_trial_will_end_completes_without_changing_the_workspace(send_stripe):
    store(lifecycle_event("msg_trial", "trial.started", workspace_id=WS, at=TRIAL_AT, email="dana@acme.io"))
    workspace_process(workspace_key=WS)
    before = Workspace.objects.values("status", "trial_expires_at", "at_risk").get(workspace_id=WS)
    assert send_stripe(fixture("customer.subscription.trial_will_end")).status_code == 202
    workspace_process(workspace_key=WS)
    assert Workspace.objects.values("status", "trial_expires_at", "at_risk").get(workspace_id=WS) == before
    assert Event.objects.get(type="billing.trial_will_end").status == Event.Status.COMPLETED
