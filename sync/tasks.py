"""django-q2 entry points of the Salesforce sync."""

from __future__ import annotations

from dataclasses import asdict

from sync.worker import outbox_drain


def drain_outbox() -> dict:
    """Send everything due. Enqueued after processing and every minute by schedule (for retries)."""
    return asdict(outbox_drain())
