from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Stripe: the signed webhook, the stripe-library adapter and the daily reconciliation."""

    name = "billing"
    verbose_name = "Billing (Stripe)"
