"""Each handled Stripe event, mapped into the lifecycle event it means, stored in the processor's shape."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing.stripe_objects import Subscription, interval_from_period
from events.models import Event
from processing.pipeline import lifecycle_event
from tests.billing.conftest import fixture

pytestmark = pytest.mark.django_db

ACTIVE = "customer.subscription.updated.trial_to_active"


def stored(send_stripe, event: dict) -> Event:
    response = send_stripe(event)
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "accepted"
    row = Event.objects.get(source=Event.Source.STRIPE, external_id=event["id"])
    # what the processor will read must validate
    lifecycle_event(row.external_id, row.type, row.occurred_at, row.payload, row.source)
    return row


def test_trialing_subscription_created_is_a_trial_started(send_stripe):
    event = fixture("customer.subscription.created.trialing")
    row = stored(send_stripe, event)
    assert row.type == "trial.started"
    assert row.payload == {
        "type": "trial.started",
        "timestamp": "2026-11-01T12:00:00Z",
        "data": {
            "workspace_id": "ws_stripe_1",
            "email": "dana@acme.io",
            "plan": "team",
            "trial_expires_at": "2026-11-15T12:00:00Z",
        },
        "stripe": {
            "event_id": event["id"],
            "type": "customer.subscription.created",
            "object_id": event["data"]["object"]["id"],
        },
    }


def test_trial_email_comes_from_an_expanded_customer(send_stripe):
    event = fixture("customer.subscription.created.trialing")
    obj = event["data"]["object"]
    del obj["metadata"]["email"]
    obj["customer"] = {"id": obj["customer"], "object": "customer", "email": "Lee@Acme.io", "metadata": {}}
    assert stored(send_stripe, event).payload["data"]["email"] == "Lee@Acme.io"


def test_trial_without_any_email_is_stored_ignored_not_rejected(send_stripe):
    event = fixture("customer.subscription.created.trialing")
    del event["data"]["object"]["metadata"]["email"]
    response = send_stripe(event)
    assert response.json()["status"] == "ignored"
    assert "owner email" in Event.objects.get(external_id=event["id"]).notes


def test_subscription_going_active_from_trialing_is_a_conversion(send_stripe):
    event = fixture(ACTIVE)
    row = stored(send_stripe, event)
    assert row.type == "subscription.converted"
    assert row.occurred_at == datetime(2026, 11, 15, 12, 0, 5, tzinfo=UTC)
    assert row.payload["data"] == {
        "workspace_id": "ws_stripe_1",
        "plan": "team",
        "mrr": "29.00",
        "currency": "USD",
        "subscription_id": "sub_1SZx4kT8vZ2mYb1xQ9rL0aBc",
        "billing_interval": "month",
        "email": "dana@acme.io",
    }
    assert row.payload["stripe"]["type"] == "customer.subscription.updated"


def _price(event: dict) -> dict:
    return event["data"]["object"]["items"]["data"][0]["price"]


@pytest.mark.parametrize(
    ("unit_amount", "currency", "interval", "interval_count", "quantity", "mrr"),
    [
        (2900, "usd", "month", 1, 1, "29.00"),  # monthly
        (29000, "usd", "year", 1, 1, "24.17"),  # yearly ÷ 12
        (2900, "usd", "month", 1, 3, "87.00"),  # quantity 3
        (4900, "eur", "month", 1, 1, "49.00"),  # EUR
        (3000, "jpy", "month", 1, 1, "3000.00"),  # JPY has no minor unit
        (36000, "jpy", "year", 1, 2, "6000.00"),
        (9000, "usd", "month", 3, 1, "30.00"),  # quarterly
        (1000, "usd", "week", 1, 1, "43.33"),  # × 52/12
        (100, "usd", "day", 1, 1, "30.42"),  # × 365/12
        (12345, "kwd", "month", 1, 1, "12.35"),  # three-decimal currency, rounded half up
    ],
)
def test_conversion_mrr_is_normalised_to_a_month(
    send_stripe, unit_amount, currency, interval, interval_count, quantity, mrr
):
    event = fixture(ACTIVE)
    obj = event["data"]["object"]
    obj["currency"] = currency
    obj["items"]["data"][0]["quantity"] = quantity
    _price(event).update(
        unit_amount=unit_amount,
        unit_amount_decimal=str(unit_amount),
        currency=currency,
        recurring={"interval": interval, "interval_count": interval_count, "usage_type": "licensed"},
    )
    data = stored(send_stripe, event).payload["data"]
    assert data["mrr"] == mrr
    assert data["currency"] == currency.upper()
    assert data["billing_interval"] == interval


def test_plan_name_prefers_lookup_key_then_product_metadata_then_nickname_then_product():
    event = fixture(ACTIVE)
    obj = event["data"]["object"]
    del obj["metadata"]["email"]
    price = _price(event)
    assert Subscription.parse(obj).plan == "team"
    price["lookup_key"] = None
    price["product"] = {"id": "prod_X", "object": "product", "metadata": {"plan": "business"}}
    assert Subscription.parse(obj).plan == "business"
    price["product"] = "prod_X"
    assert Subscription.parse(obj).plan == "Team monthly"
    price["nickname"] = None
    assert Subscription.parse(obj).plan == "prod_X"
    obj["metadata"]["plan"] = "enterprise"
    assert Subscription.parse(obj).plan == "enterprise", "the subscription's own metadata.plan wins"


def test_tiered_price_without_unit_amount_is_ignored_rather_than_a_made_up_mrr(send_stripe):
    event = fixture(ACTIVE)
    _price(event).update(unit_amount=None, unit_amount_decimal=None, billing_scheme="tiered")
    event["data"]["object"]["items"]["data"][0]["plan"].update(amount=None, amount_decimal=None)
    assert send_stripe(event).json()["status"] == "ignored"


def test_paid_period_invoice_is_a_conversion(send_stripe):
    event = fixture("invoice.paid.subscription_cycle")
    row = stored(send_stripe, event)
    assert row.type == "subscription.converted"
    assert row.payload["data"] == {
        "workspace_id": "ws_stripe_1",
        "plan": "team",
        "mrr": "29.00",
        "currency": "USD",
        "subscription_id": "sub_1SZx4kT8vZ2mYb1xQ9rL0aBc",
        "billing_interval": "month",
        "email": "dana@acme.io",
    }


def test_invoice_that_cannot_name_its_plan_is_not_applied(send_stripe):
    """Current API versions put only a price id on invoice lines: without metadata.plan the invoice
    would name the plan differently from the subscription events and flag a false plan conflict."""
    event = fixture("invoice.paid.subscription_cycle")
    del event["data"]["object"]["parent"]["subscription_details"]["metadata"]["plan"]
    response = send_stripe(event)
    assert response.json()["status"] == "ignored"
    assert "cannot name its plan" in Event.objects.get(external_id=event["id"]).notes


def test_legacy_invoice_with_an_expanded_price_names_the_plan(send_stripe):
    event = fixture("invoice.paid.subscription_cycle")
    invoice = event["data"]["object"]
    invoice["parent"]["subscription_details"]["metadata"] = {"workspace_id": "ws_stripe_1"}
    line = invoice["lines"]["data"][0]
    line["pricing"]["price_details"]["price"] = fixture(ACTIVE)["data"]["object"]["items"]["data"][0]["price"]
    assert stored(send_stripe, event).payload["data"]["plan"] == "team"


def test_invoice_mrr_without_an_expanded_price_comes_from_the_line_period():
    assert interval_from_period(datetime(2026, 11, 15, tzinfo=UTC), datetime(2026, 12, 15, tzinfo=UTC)) == ("month", 1)
    assert interval_from_period(datetime(2027, 1, 31, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC)) == ("month", 1)
    assert interval_from_period(datetime(2026, 1, 15, tzinfo=UTC), datetime(2027, 1, 15, tzinfo=UTC)) == ("year", 1)
    assert interval_from_period(datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 4, 15, tzinfo=UTC)) == ("month", 3)
    assert interval_from_period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 15, tzinfo=UTC)) == ("week", 2)
    assert interval_from_period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)) == ("day", 1)


def test_zero_trial_invoice_is_not_a_conversion(send_stripe):
    event = fixture("invoice.paid.subscription_cycle")
    event["data"]["object"].update(billing_reason="subscription_create", amount_paid=0, amount_due=0)
    assert send_stripe(event).json()["status"] == "ignored"


def test_invoice_without_a_subscription_is_ignored(send_stripe):
    event = fixture("invoice.paid.subscription_cycle")
    event["data"]["object"]["parent"] = None
    assert send_stripe(event).json()["status"] == "ignored"


def test_deleted_subscription_is_a_churn_with_the_reason(send_stripe):
    row = stored(send_stripe, fixture("customer.subscription.deleted"))
    assert row.type == "workspace.churned"
    assert row.payload["data"] == {
        "workspace_id": "ws_stripe_1",
        "churned_at": "2027-01-10T09:30:00Z",
        "reason": "cancellation_requested: switched_service - Moving to a tool our parent company uses.",
    }


def test_subscription_updated_to_canceled_is_a_churn(send_stripe):
    event = fixture(ACTIVE)
    obj = event["data"]["object"]
    obj.update(status="canceled", ended_at=1799000000, cancellation_details={"reason": "payment_failed"})
    event["data"]["previous_attributes"] = {"status": "past_due"}
    row = stored(send_stripe, event)
    assert row.type == "workspace.churned"
    assert row.payload["data"]["reason"] == "payment_failed"


def test_subscription_back_to_active_from_past_due_is_a_conversion(send_stripe):
    event = fixture(ACTIVE)
    event["data"]["previous_attributes"] = {"status": "past_due"}
    assert stored(send_stripe, event).type == "subscription.converted"


def test_renewal_is_stored_as_renewal_updated(send_stripe):
    row = stored(send_stripe, fixture("customer.subscription.updated.renewal"))
    assert row.type == "billing.renewal_updated"
    assert row.payload["data"] == {
        "workspace_id": "ws_stripe_1",
        "subscription_id": "sub_1SZx4kT8vZ2mYb1xQ9rL0aBc",
        "renews_at": "2027-01-15T12:00:00Z",
    }


def test_trial_will_end_is_stored_for_alerts(send_stripe):
    row = stored(send_stripe, fixture("customer.subscription.trial_will_end"))
    assert row.type == "billing.trial_will_end"
    assert row.status == Event.Status.NEW
    assert row.payload["data"] == {
        "workspace_id": "ws_stripe_1",
        "subscription_id": "sub_1SZx4kT8vZ2mYb1xQ9rL0aBc",
        "trial_end": "2026-11-15T12:00:00Z",
        "email": "dana@acme.io",
    }


def test_payment_failed_is_stored_for_alerts_and_at_risk(send_stripe):
    row = stored(send_stripe, fixture("invoice.payment_failed"))
    assert row.type == "billing.payment_failed"
    assert row.payload["data"] == {
        "workspace_id": "ws_stripe_1",
        "subscription_id": "sub_1SZx4kT8vZ2mYb1xQ9rL0aBc",
        "invoice_id": "in_1SmN7aT8vZ2mYb1xCycle02",
        "amount_due": "29.00",
        "currency": "USD",
        "attempt_count": 1,
        "next_payment_attempt": "2026-12-18T13:00:07Z",
        "billing_reason": "subscription_cycle",
        "email": "billing@acme.io",
    }


def test_subscription_mrr_sums_items_and_renews_at_the_earliest_item_period():
    obj = fixture(ACTIVE)["data"]["object"]
    second = {**obj["items"]["data"][0], "id": "si_2", "quantity": 2, "current_period_end": 1790000000}
    obj["items"]["data"].append(second)
    sub = Subscription.parse(obj)
    assert sub.mrr == Decimal("87.00")
    assert sub.renews_at == datetime.fromtimestamp(1790000000, tz=UTC)
