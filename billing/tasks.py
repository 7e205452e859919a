"""django-q2 entry point of the Stripe billing reconciliation (daily, by schedule)."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from billing.reconcile import billing_reconcile
from failures.notices import notice_raise


def reconcile_billing() -> dict:
    """Daily, by schedule: compare Stripe with the engine and store the corrective events.

    Repairing unattended is safe: corrections are events the fold applies like any other, under ids
    that make a second run over the same drift store nothing. What no event can repair (subscriptions
    naming a workspace the engine does not know, workspaces pointing at a subscription Stripe does not
    have) raises one admin alert a day.
    """
    if not settings.STRIPE_API_KEY:
        return {"skipped": "STRIPE_API_KEY is not set"}
    report = billing_reconcile(repair=True)
    summary = report.summary()
    if report.unknown or report.missing:
        notice_raise(
            rule="billing_drift",
            dedupe_key=f"billing_drift:{timezone.now():%Y-%m-%d}",
            title="Stripe and the engine disagree on subscriptions",
            reason=(
                f"{len(report.unknown)} Stripe subscription(s) name a workspace the engine does not know; "
                f"{len(report.missing)} workspace(s) point at a subscription Stripe does not have. "
                "Run `python manage.py reconcile_billing` for the list."
            ),
            context={"unknown": summary["unknown"], "missing": summary["missing"]},
        )
    return summary
