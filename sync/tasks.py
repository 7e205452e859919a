"""django-q2 entry points of the Salesforce sync and the Stripe billing reconciliation."""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.utils import timezone

from alerts.services import alert_raise
from sync.billing import billing_reconcile
from sync.drain import drain_request, drain_run
from sync.pilot import pilot_release


def drain_outbox() -> dict:
    """Send everything due, as the one drainer, until idle (sync/drain.py). Enqueued by `drain_request()`
    after processing commits outbox rows, and every minute by schedule as a safety net."""
    return asdict(drain_run())


def release_pilot() -> dict:
    """Every minute, by schedule: release the held rows a widened or ended pilot now takes in, at most
    SALESFORCE_PILOT_RELEASE_PER_MINUTE (sync/pilot.py), and ring the drainer to send them."""
    report = pilot_release()
    if report.released:
        drain_request()
    return asdict(report)


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
        alert_raise(
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
