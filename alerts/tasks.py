"""django-q2 entry points of alerts: take ids, call a service, return a summary. All idempotent."""

from __future__ import annotations

from dataclasses import asdict

from alerts.delivery import deliveries_send_due, digests_send_due
from alerts.error_alerts import error_alerts_raise
from alerts.services import alerts_evaluate_scheduled, workspaces_alerts_evaluate
from alerts.sla import sla_evaluate


def deliver_alerts(alert_ids: list[int]) -> dict:
    """Enqueued on commit of new alerts (one task for a batch of them): send their instant deliveries now."""
    return asdict(deliveries_send_due(alert_ids=alert_ids))


def deliver_alert(alert_id: int) -> dict:
    """One alert's instant deliveries: kept for the tasks queued before deliver_alerts replaced it."""
    return asdict(deliveries_send_due(alert_id=alert_id))


def deliver_due() -> dict:
    """Every minute: first attempts a lost task left behind, and retries whose time has come."""
    return asdict(deliveries_send_due())


def send_digests() -> dict:
    """Every 15 minutes: daily digests whose time has come (and digest retries)."""
    return asdict(digests_send_due())


def evaluate_scheduled() -> dict:
    """Every 10 minutes: trial expiry windows, snoozes ending, catch-up for recent changes."""
    return alerts_evaluate_scheduled()


def evaluate_workspaces(workspace_keys: list[str]) -> int:
    return len(workspaces_alerts_evaluate(workspace_keys=workspace_keys))


def evaluate_slas() -> dict[str, int]:
    """Every 5 minutes: the SLA checks (alerts/sla.py)."""
    return sla_evaluate()


def raise_error_alerts() -> int:
    """Every minute: alerts for the error kinds the failure ledger marked (alerts/error_alerts.py)."""
    return error_alerts_raise()
