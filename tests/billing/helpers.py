"""localstripe set-ups made through the stripe library, and engine workspaces to compare them with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billing.stripe_adapter import stripe_client
from processing.pipeline import workspace_process
from tests.events.helpers import lifecycle_event, store

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def stripe_subscription(workspace_id: str, *, quantity: int = 1, amount: int = 2900, plan_id: str = "team-m") -> Any:
    """A paid subscription in localstripe, made through the stripe library like any client would."""
    client = stripe_client()
    plans = {plan.id for plan in client.v1.plans.list()}
    if plan_id not in plans:
        product = client.v1.products.create(params={"name": "Team"})
        client.v1.plans.create(
            params={
                "id": plan_id,
                "amount": amount,
                "currency": "usd",
                "interval": "month",
                "product": product.id,
                "nickname": "team",
            }
        )
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    customer = client.v1.customers.create(
        params={"email": "dana@acme.io", "source": client.v1.tokens.create(params={"card": card}).id}
    )
    return client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"plan": plan_id, "quantity": quantity}],
            "metadata": {"workspace_id": workspace_id},
        }
    )


def paid_workspace(workspace_id: str, subscription_id: str, *, mrr: str = "29.00") -> None:
    store(
        lifecycle_event(f"{workspace_id}_trial", "trial.started", workspace_id=workspace_id, at=T0),
        lifecycle_event(
            f"{workspace_id}_conv",
            "subscription.converted",
            workspace_id=workspace_id,
            at=T0.replace(day=15),
            plan="team",
            mrr=mrr,
            subscription_id=subscription_id,
            billing_interval="month",
        ),
    )
    workspace_process(workspace_key=workspace_id)
