"""Real webhook delivery: localstripe signs and POSTs its events to the engine's live server."""

from __future__ import annotations

import time

import pytest

from billing.stripe_adapter import stripe_client
from events.models import Event
from tests.billing.conftest import STRIPE_SECRET
from tests.billing.helpers import stripe_subscription

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for_event(**lookup) -> Event:
    """localstripe delivers about a second after the change, from its own event loop."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = Event.objects.filter(source=Event.Source.STRIPE, **lookup).first()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no Stripe event {lookup} arrived; stored: {list(Event.objects.values('type', 'status'))}")


def test_subscription_created_and_deleted_in_localstripe_reach_the_engine(localstripe, engine_server):
    # given localstripe sends its events to the engine
    localstripe.config("webhooks/engine", url=f"{engine_server}/webhooks/stripe/", secret=STRIPE_SECRET)
    # when a subscription is created (localstripe makes it active at once: it has no trials)
    sub = stripe_subscription("ws_live")
    # then the signed delivery was verified, mapped and stored
    converted = wait_for_event(type="subscription.converted", workspace_key="ws_live")
    assert converted.status == Event.Status.NEW
    assert converted.external_id.startswith("evt_")
    assert converted.payload["data"] == {
        "workspace_id": "ws_live",
        "plan": "team",
        "mrr": "29.00",
        "currency": "USD",
        "subscription_id": sub.id,
        "billing_interval": "month",
    }
    assert converted.payload["stripe"]["type"] == "customer.subscription.created"
    # and events the engine does not handle are acknowledged and kept as ignored
    assert wait_for_event(type="customer.created").status == Event.Status.IGNORED

    # when the subscription is canceled
    stripe_client().v1.subscriptions.cancel(sub.id)
    # then
    churned = wait_for_event(type="workspace.churned", workspace_key="ws_live")
    assert churned.payload["stripe"]["type"] == "customer.subscription.deleted"
    assert churned.payload["data"]["churned_at"].endswith("Z")


def test_delivery_signed_with_another_secret_stores_nothing(localstripe, engine_server):
    localstripe.config("webhooks/engine", url=f"{engine_server}/webhooks/stripe/", secret="whsec_not_ours")
    stripe_subscription("ws_forged")
    time.sleep(2.5)  # localstripe waits a second, then delivers every event of the run
    assert not Event.objects.filter(source=Event.Source.STRIPE).exists()
